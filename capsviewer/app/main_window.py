"""The main window: an input dock on the left, the views as tabs, menus, a status bar.

It owns the app state, a controller that keeps the state's results current in the
background, and a session that loads models and data into the state. Each view binds to the
state itself; the window only lays them out and reports.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QApplication, QDockWidget, QMainWindow, QMessageBox, QTabWidget,
)

from capsviewer.app import theme
from capsviewer.app.actions import build_menus, window_actions
from capsviewer.app.controller import Controller
from capsviewer.app.export import export_views
from capsviewer.app.overlap_session import OverlapSession
from capsviewer.app.session import ModelSession
from capsviewer.app.state import AppState
from capsviewer.app.status_bar import NO_MODEL, StatusBar
from capsviewer.app.settings import user_settings
from capsviewer.app.training_runner import TrainingRunner
from capsviewer.app.views.common import FORMULAS
from capsviewer.app.views.input_view import InputView
from capsviewer.app.views.overlap_view import OverlapView
from capsviewer.app.views.pose_view import PoseView
from capsviewer.app.views.prediction_view import PredictionView
from capsviewer.app.views.rotation_view import RotationView
from capsviewer.app.views.routing_lab_view import RoutingLabView
from capsviewer.app.views.routing_view import RoutingView
from capsviewer.app.views.training_view import TrainingView
from capsviewer.data import DATASET_TITLES
from capsviewer.training import DeviceUnavailable
from capsviewer.training.model_files import SHIPPED_MODELS, dataset_of, find_models

class MainWindow(QMainWindow):
    analysis_shown = Signal(object)  # the state's analysis, once computed for the input

    def __init__(self, models: dict[str, Path] | None = None, data_root: str | None = None,
                 device: str = "auto", settings: QSettings | None = None,
                 download: bool = True, show_errors: bool = True,
                 predict_test_set: bool = True):
        super().__init__()
        self.setWindowIcon(theme.app_icon())
        self.settings = settings or user_settings()
        self.show_errors = show_errors  # tests record errors instead of opening dialogs
        self.errors: list[tuple[str, str]] = []
        self.state = AppState(dataset=dataset_of(models or {}))
        self.controller = Controller(self.state, self, predict_test_set)
        self.session = ModelSession(self.state, self.controller.lanes["loading"], device,
                                    data_root, self)
        self.overlap_session = OverlapSession(self.state, self.controller.lanes["loading"],
                                              data_root, self)
        self.runner = TrainingRunner(self, download=download)
        self._build_views(data_root)
        self.menu_actions = build_menus(self, window_actions(self))
        self.setStatusBar(StatusBar(self.state, self.controller, self))
        bar = self.statusBar()
        self.status_text, self.model_label = bar.status_text, bar.model_label
        self.device_label, self.data_label = bar.device_label, bar.data_label
        self.download_action = self.menu_actions["&File/&Download the full test set"]
        self.export_progress, self.export_cancel = bar.export_progress, bar.export_cancel
        self._connect()
        self._restore_layout()
        self._dataset_changed(self.state.dataset)
        self.session.load_test_set(self.state.dataset)  # the sample when MNIST is not here
        self.overlap_session.start()
        for path in (models or {}).values():
            self.session.load_checkpoint(path)
        if not models:
            self.status_text.setText(f"No model found: {NO_MODEL}")
            self.tabs.setCurrentWidget(self.training_view)

    # -- construction -----------------------------------------------------------------------
    def _build_views(self, data_root) -> None:
        self.input_view = InputView(show_errors=False)  # the window reports errors
        self.prediction_view = PredictionView()
        self.routing_view = RoutingView()
        self.pose_view = PoseView()
        self.rotation_view = RotationView()
        self.overlap_view = OverlapView()
        self.lab_view = RoutingLabView(self.state)
        self.training_view = TrainingView()
        self.training_view.set_data_root(data_root)
        self.training_view.connect_runner(self.runner)
        for view in (self.input_view, self.prediction_view, self.routing_view, self.pose_view,
                     self.rotation_view, self.overlap_view):
            view.bind(self.state)

        dock = self.input_dock = QDockWidget("Input", self)
        dock.setObjectName("input-dock")
        dock.setWidget(self.input_view)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for view, title, tip in (
            (self.prediction_view, "Prediction", FORMULAS["squash"] + "\n" + FORMULAS["margin"]),
            (self.routing_view, "Routing", FORMULAS["routing"] + "\n" + FORMULAS["coupling"]),
            (self.pose_view, "Pose", FORMULAS["reconstruction"]),
            (self.rotation_view, "Rotation", "CNN probability vs capsule length under rotation"),
            (self.overlap_view, "Overlap", "Two overlapping digits (MultiMNIST): both "
             "reconstructions, and which winner each primary capsule routes to"),
            (self.lab_view, "Routing lab", FORMULAS["routing"] + "\n" + FORMULAS["em_routing"]),
            (self.training_view, "Training", FORMULAS["margin"]),
        ):
            self.tabs.setTabToolTip(self.tabs.addTab(view, title), tip)
        self.setCentralWidget(self.tabs)

    def _connect(self) -> None:
        events = self.state.events
        events.dataset.connect(self._dataset_changed)
        events.test_set.connect(lambda images: self.download_action.setEnabled(
            images is None or images.is_sample))
        self.session.download_progress.connect(self._download_progress)
        events.analysis.connect(lambda r: r.ready and self.analysis_shown.emit(r.value))
        self.session.error.connect(self.report_error)
        self.session.status.connect(self.status_text.setText)
        self.session.pair_model_loaded.connect(self.overlap_session.use_model)
        self.overlap_session.error.connect(self.report_error)
        self.overlap_session.status.connect(self.status_text.setText)
        self.controller.failed.connect(self.report_error)
        self.input_view.error.connect(lambda message: self.report_error("Cannot use image", message))
        self.training_view.use_model.connect(self.session.load_checkpoint)

    # -- what the state says ------------------------------------------------------------------
    def _dataset_changed(self, name: str) -> None:
        self.menu_actions[f"&Model/Data&set/{DATASET_TITLES.get(name, name)}"].setChecked(True)
        title = DATASET_TITLES.get(name, name)
        self.setWindowTitle("capsviewer" if name == "mnist" else f"capsviewer · {title}")
        self.training_view.set_dataset(name)

    @Slot(object)
    def _download_progress(self, progress) -> None:
        done, total, name = progress
        of = f" of {total / 1e6:.1f}" if total else ""
        self.status_text.setText(f"Downloading {name}: {done / 1e6:.1f}{of} MB…")

    # -- actions -----------------------------------------------------------------------------
    def on_routing_tab(self) -> RoutingView:
        self.tabs.setCurrentWidget(self.routing_view)
        return self.routing_view

    def set_dataset(self, name: str) -> None:
        """Work on dataset ``name``: its test set and the newest models found for it."""
        if name == self.state.dataset:
            return
        self.session.switch_dataset(name)
        found = find_models(name)
        for path in found.values():
            self.session.load_checkpoint(path)
        if not found:
            self.status_text.setText(f"No {DATASET_TITLES.get(name, name)} model found: {NO_MODEL}")

    def use_shipped_models(self) -> None:
        for path in find_models("mnist", [Path(SHIPPED_MODELS)]).values():
            self.session.load_checkpoint(path)

    def set_device(self, name: str) -> None:
        try:
            self.session.set_device(name)
        except DeviceUnavailable as error:
            self.report_error("Device unavailable", str(error))

    def export_targets(self, current: bool) -> list:
        tabs = [self.tabs.widget(i) for i in range(self.tabs.count())]
        return [self.tabs.currentWidget()] if current else [self.input_view, *tabs]

    def export_views(self, views, folder: str | Path) -> list[Path]:
        """Export now, on this thread (``capsviewer export``, without a window on screen)."""
        try:
            written = export_views(views, folder)
        except OSError as error:
            self.report_error("Export failed", str(error))
            return []
        self.status_text.setText(f"Exported {len(written)} files to {folder}")
        return written

    def set_theme(self, name: str) -> None:
        self.settings.setValue("theme", name)
        theme.apply_theme(QApplication.instance(), name)

    @Slot(str, str)
    def report_error(self, title: str, message: str) -> None:
        self.errors.append((title, message))
        self.status_text.setText(f"{title}: {message.splitlines()[0]}")
        if self.show_errors:  # window-modal, not blocking
            box = QMessageBox(QMessageBox.Icon.Warning, title, message,
                              QMessageBox.StandardButton.Ok, self)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()

    # -- for tests, benchmarks and `capsviewer export` ----------------------------------------
    @property
    def image(self):
        return self.state.image

    @property
    def inspection(self):
        return self.state.inspection

    def is_idle(self) -> bool:
        return self.controller.is_idle()

    def lanes(self):
        return tuple(self.controller.lanes.values())

    # -- layout persistence and shutdown ------------------------------------------------------
    def _restore_layout(self) -> None:
        geometry = self.settings.value("geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        state = self.settings.value("window_state")
        self._fit_dock = not (isinstance(state, QByteArray) and self.restoreState(state))
        self.tabs.setCurrentIndex(int(self.settings.value("tab", 0)))

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._fit_dock:  # first run: a narrow input column, the views get the rest
            self._fit_dock = False
            self.resizeDocks([self.input_dock], [300], Qt.Orientation.Horizontal)

    def closeEvent(self, event) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        self.settings.setValue("tab", self.tabs.currentIndex())
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop training and the compute lanes; the window can then be deleted safely."""
        if self.runner.is_running():
            self.runner.cancel()
            self.runner.wait(5000)
        self.controller.shutdown()


def default_models() -> dict[str, Path]:
    return find_models("mnist")


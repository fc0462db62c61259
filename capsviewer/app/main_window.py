"""The main window: an input dock on the left, the views as tabs, menus, a status bar.

It owns the app state, a controller that keeps the state's results current in the
background, and a session that loads models and data into the state. Each view binds to the
state itself; the window only lays them out and reports.

It comes up in two steps, so that it is on screen before torch is loaded (importing torch
alone takes over a second): the frame (the input dock with the test-set browser, the drawing
canvas and image files; the tabs, menus and status bar) needs no torch; :meth:`start` then
puts in place the parts in :mod:`capsviewer.app.workbench`. ``MainWindow(models)`` does both
at once; ``capsviewer`` shows the frame, reads the test set and imports the workbench on a
thread (:meth:`start_in_background`), and builds each view when it is first needed: its tab
is shown, it is asked for, or nothing the user waits for is being computed.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QSignalBlocker, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QApplication, QDockWidget, QLabel, QMainWindow, QMessageBox, QTabWidget,
)

from capsviewer.app import theme
from capsviewer.app.actions import build_menus, device_actions, window_actions
from capsviewer.app.compute import ComputeLane
from capsviewer.app.errors import explain
from capsviewer.app.settings import user_settings
from capsviewer.app.status_bar import NO_MODEL, StatusBar
from capsviewer.app.views.common import FORMULAS, render_tooltips
from capsviewer.app.views.common import tip as rendered_tip
from capsviewer.app.views.input_view import InputView
from capsviewer.data import DATASET_TITLES, DATASETS, read_test_set

TABS = (  # the window attribute of each tab's view, its title and tooltip
    ("prediction_view", "Prediction", FORMULAS["squash"] + "\n" + FORMULAS["margin"]),
    ("routing_view", "Routing", FORMULAS["routing"] + "\n" + FORMULAS["coupling"]),
    ("pose_view", "Pose", FORMULAS["reconstruction"]),
    ("rotation_view", "Rotation", "CNN probability vs capsule length under rotation"),
    ("overlap_view", "Overlap", "Two overlapping digits (MultiMNIST): both reconstructions, and "
     "which winner each primary capsule routes to"),
    ("lab_view", "Routing lab", FORMULAS["routing"] + "\n" + FORMULAS["em_routing"]),
    ("training_view", "Training", FORMULAS["margin"]),
)
IDLE_BUILD_MS = 40  # how often a started window looks for a quiet moment to build a view


class _View:
    """A tab's view as a window attribute: built on first access (:meth:`MainWindow.view`)."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, window, owner=None):
        return self if window is None else window.view(self.name)


class MainWindow(QMainWindow):
    analysis_shown = Signal(object)  # the state's analysis, once computed for the input
    started = Signal()  # the state, controller, session and runner are in place

    prediction_view = _View()
    routing_view = _View()
    pose_view = _View()
    rotation_view = _View()
    overlap_view = _View()
    lab_view = _View()
    training_view = _View()

    def __init__(self, models: dict[str, Path] | None = None, data_root: str | None = None,
                 device: str = "auto", settings: QSettings | None = None,
                 download: bool = True, show_errors: bool = True,
                 predict_test_set: bool = True, start: bool = True):
        super().__init__()
        self.setWindowIcon(theme.app_icon())
        self.settings = settings or user_settings()
        self.show_errors = show_errors  # tests record errors instead of opening dialogs
        self.errors: list[tuple[str, str]] = []
        self.error_box: QMessageBox | None = None  # the last one shown
        self.skipped_label: QLabel | None = None  # set when model files were skipped
        self.data_root = data_root
        self.state = self.controller = self.session = self.runner = None  # start() sets them
        self.overlap_session = None
        self._views: dict[str, object] = {}
        self._test_arrays = None  # (dataset, images, labels, is_sample) read before start()
        self._startup: ComputeLane | None = None
        self._idle_builder: QTimer | None = None
        self._on_demand = False  # views built when first needed, drawn while on screen
        self._closed = False
        self._build_frame()
        if start:
            self.start(models or {}, device, download, predict_test_set)

    # -- the frame: no torch ------------------------------------------------------------------
    def _build_frame(self) -> None:
        self.input_view = InputView(show_errors=False)  # the window reports errors
        self.input_view.error.connect(lambda message: self.report_error("Cannot use image", message))
        dock = self.input_dock = QDockWidget("Input", self)
        dock.setObjectName("input-dock")
        dock.setWidget(self.input_view)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for _, title, tip in TABS:
            placeholder = QLabel("Loading PyTorch and the models…")
            placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.tabs.setTabToolTip(self.tabs.addTab(placeholder, title), tip)
        self.tabs.currentChanged.connect(self._tab_shown)
        self.setCentralWidget(self.tabs)
        self._menus: dict = {}
        self.menu_actions = build_menus(self, window_actions(self), self._menus)
        self.setStatusBar(StatusBar(self))
        bar = self.statusBar()
        self.status_text, self.model_label = bar.status_text, bar.model_label
        self.device_label, self.data_label = bar.device_label, bar.data_label
        self.download_action = self.menu_actions["&File/&Download the full test set"]
        self.export_progress, self.export_cancel = bar.export_progress, bar.export_cancel
        render_tooltips(self)  # the paper's notation with sub- and superscripts
        self._restore_layout()
        self._dataset_changed("mnist")

    def show_test_arrays(self, arrays: tuple) -> None:
        """Browse a test set read before the window started: (images, labels, is_sample) of
        MNIST, from :func:`capsviewer.data.read_test_set`."""
        if self._closed or self.state is not None:
            return
        images, labels, is_sample = arrays
        self._test_arrays = ("mnist", images, labels, is_sample)
        self.input_view.set_test_set(images, labels, DATASETS["mnist"].classes)
        self.statusBar().show_data("mnist", len(labels), is_sample)

    def start_in_background(self, models: list[Path] | None = None, device: str = "auto",
                            download: bool = True) -> None:
        """On a thread: read the test set (shown at once), then import torch and the workbench
        and find the models; then :meth:`start` with them (and ``models``, from --model)."""
        lane = self._startup = ComputeLane("startup", self)
        self.status_text.setText("Loading PyTorch and the models…")

        def import_workbench(_=None) -> None:  # once the browser is drawn: torch takes the GIL
            if self._closed:
                return
            lane.submit("workbench", _import_workbench, models or [],
                        on_done=lambda found: self._started_in_background(found, device,
                                                                          download),
                        on_error=lambda error: self.report_error(
                            "capsviewer could not start", *explain(error, "starting")))

        def read(arrays) -> None:
            self.show_test_arrays(arrays)
            QTimer.singleShot(0, import_workbench)

        # A test set that cannot be read is reported once the session tries it again.
        lane.submit("test-set", read_test_set, "mnist", self.data_root, on_done=read,
                    on_error=import_workbench)

    def _started_in_background(self, found, device: str, download: bool) -> None:
        models, problems = found
        if self._closed:
            return
        for problem in problems:
            self.report_error("Could not load model", problem)
        self.start(models, device, download, on_demand=True)
        self._startup.shutdown()

    # -- the workbench: state, controller, session, runner, views ------------------------------
    def start(self, models: dict[str, Path], device: str = "auto", download: bool = True,
              predict_test_set: bool = True, on_demand: bool = False) -> None:
        """Put the model side in place and load ``models``; every view now, or (``on_demand``)
        each when first needed, and drawing the state's changes while on screen only."""
        from capsviewer.app import workbench

        self._on_demand = on_demand
        dataset = workbench.dataset_of(models)
        test_set = None
        if self._test_arrays is not None and self._test_arrays[0] == dataset:
            name, images, labels, is_sample = self._test_arrays
            test_set = workbench.image_set(name, False, images, labels, is_sample)
        self.state = workbench.AppState(dataset=dataset, test_set=test_set)
        self.controller = workbench.Controller(self.state, self, predict_test_set)
        self.session = workbench.ModelSession(self.state, self.controller.lanes["loading"],
                                              device, self.data_root, self)
        # The Overlap tab's MultiMNIST CapsNet and MNIST digits: loaded with its view.
        self.overlap_session = workbench.OverlapSession(
            self.state, self.controller.lanes["loading"], self.data_root, self)
        self.runner = workbench.TrainingRunner(self, download=download)
        self.statusBar().bind(self.state, self.controller)
        self.menu_actions.update(build_menus(self, device_actions(self), self._menus))
        for action in self.menu_actions.values():
            action.setEnabled(True)
        self.download_action.setEnabled(test_set is None or test_set.is_sample)
        self._connect()
        self._dataset_changed(dataset)
        if test_set is None:
            self.session.load_test_set(dataset)  # the sample when MNIST is not here
        for path in models.values():
            self.session.load_checkpoint(path)
        self.input_view.decode_lane = self.controller.lanes["loading"]  # files off the UI thread
        self.input_view.bind(self.state)
        if not models:
            self.status_text.setText(f"No model found: {NO_MODEL}")
            self.tabs.setCurrentIndex(self._tab_of("training_view"))
        self._show_skipped(models)
        self._tab_shown(self.tabs.currentIndex())
        if on_demand:
            self._idle_builder = QTimer(self)
            self._idle_builder.setInterval(IDLE_BUILD_MS)
            self._idle_builder.timeout.connect(self._build_a_view_if_quiet)
            self._idle_builder.start()
        else:
            self._build_every_view()
        self.started.emit()

    @Slot(str)
    def _overlap_status(self, text: str) -> None:
        """The Overlap tab's news (its model loaded in the background…): said while that tab
        is on screen, not over what the user is looking at elsewhere."""
        if self.tabs.currentIndex() == self._tab_of("overlap_view"):
            self.status_text.setText(text)

    def _show_skipped(self, models) -> None:
        """Unreadable files in the model folders: said in the status bar, not fatal."""
        from capsviewer.app.workbench import skipped_note

        note = skipped_note(models)
        if note:
            self.skipped_label = QLabel(f"⚠ {len(models.skipped)} model file(s) skipped")
            self.skipped_label.setToolTip("\n".join(reason for _, reason in models.skipped))
            self.statusBar().insertPermanentWidget(0, self.skipped_label)
            self.status_text.setText(note)

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
        self.overlap_session.status.connect(self._overlap_status)
        self.controller.failed.connect(self.report_error)

    @property
    def is_started(self) -> bool:
        return self.state is not None

    def view(self, name: str):
        """The view of tab attribute ``name`` ("routing_view", …), built now if it is not yet."""
        view = self._views.get(name)
        if view is not None:
            return view
        if self.state is None:
            raise RuntimeError(f"the window has not started: its {name} is not built yet")
        from capsviewer.app.workbench import build_view

        view = self._views[name] = build_view(self, name, when_shown=self._on_demand)
        index, (_, title, tip) = self._tab_of(name), TABS[self._tab_of(name)]
        placeholder, current = self.tabs.widget(index), self.tabs.currentIndex()
        with QSignalBlocker(self.tabs):
            self.tabs.removeTab(index)
            self.tabs.insertTab(index, view, title)
            self.tabs.setTabToolTip(index, rendered_tip(tip))
            self.tabs.setCurrentIndex(current)
        render_tooltips(view)
        placeholder.deleteLater()
        return view

    def views_built(self) -> list[str]:
        return [name for name, *_ in TABS if name in self._views]

    @staticmethod
    def _tab_of(name: str) -> int:
        return next(i for i, (attribute, *_) in enumerate(TABS) if attribute == name)

    def _tab_shown(self, index: int) -> None:
        if self.state is not None and 0 <= index < len(TABS):
            self.view(TABS[index][0])

    def _build_every_view(self) -> None:
        for name, *_ in TABS:
            self.view(name)

    def _build_a_view_if_quiet(self) -> None:
        """One view, while no model is loading and no input is being analysed."""
        lanes = self.controller.lanes
        if lanes["loading"].pending() or lanes["interactive"].pending():
            return
        missing = [name for name, *_ in TABS if name not in self._views]
        if missing:
            self.view(missing[0])
        if len(missing) <= 1:
            self._idle_builder.stop()

    # -- what the state says ------------------------------------------------------------------
    @property
    def dataset(self) -> str:
        return self.state.dataset if self.state is not None else "mnist"

    def _dataset_changed(self, name: str) -> None:
        self.menu_actions[f"&Model/Data&set/{DATASET_TITLES.get(name, name)}"].setChecked(True)
        title = DATASET_TITLES.get(name, name)
        self.setWindowTitle("capsviewer" if name == "mnist" else f"capsviewer · {title}")
        if "training_view" in self._views:
            self.training_view.set_dataset(name)

    @Slot(object)
    def _download_progress(self, progress) -> None:
        done, total, name = progress
        of = f" of {total / 1e6:.1f}" if total else ""
        self.status_text.setText(f"Downloading {name}: {done / 1e6:.1f}{of} MB…")

    # -- actions -----------------------------------------------------------------------------
    def on_routing_tab(self):
        self.tabs.setCurrentWidget(self.routing_view)
        return self.routing_view

    def set_dataset(self, name: str) -> None:
        """Work on dataset ``name``: its test set and the newest models found for it."""
        from capsviewer.app.workbench import find_models

        if name == self.state.dataset:
            return
        self.session.switch_dataset(name)
        found = find_models(name)
        for path in found.values():
            self.session.load_checkpoint(path)
        if not found:
            self.status_text.setText(f"No {DATASET_TITLES.get(name, name)} model found: {NO_MODEL}")

    def use_shipped_models(self) -> None:
        from capsviewer.app.workbench import SHIPPED_MODELS, find_models

        for path in find_models("mnist", [Path(SHIPPED_MODELS)]).values():
            self.session.load_checkpoint(path)

    def set_device(self, name: str) -> None:
        from capsviewer.app.workbench import DeviceUnavailable

        try:
            self.session.set_device(name)
        except DeviceUnavailable as error:
            self.report_error("Device unavailable", str(error))

    def export_targets(self, current: bool) -> list:
        from capsviewer.app.workbench import deliver_held

        self._build_every_view()
        tabs = [self.tabs.widget(i) for i in range(self.tabs.count())]
        for view in tabs:
            deliver_held(view)
        return [self.tabs.currentWidget()] if current else [self.input_view, *tabs]

    def export_views(self, views, folder: str | Path) -> list[Path]:
        """Export now, on this thread (``capsviewer export``, without a window on screen)."""
        from capsviewer.app.workbench import export_views

        try:
            written = export_views(views, folder)
        except OSError as error:
            self.report_error("Export failed", *explain(error, "exporting"))
            return []
        self.status_text.setText(f"Exported {len(written)} files to {folder}")
        return written

    def set_theme(self, name: str) -> None:
        self.settings.setValue("theme", name)
        theme.apply_theme(QApplication.instance(), name)
        formulas = getattr(self, "formulas_window", None)
        if formulas is not None:  # typeset in the old colours: typeset again when next opened
            formulas.close()
            formulas.deleteLater()
            self.formulas_window = None

    def start_tour(self):
        """Help ▸ Tour: from its first step."""
        from capsviewer.app.tour import start_tour

        return start_tour(self)

    def offer_tour(self) -> bool:
        """Offer the tour on the app's first launch (``run_app`` calls this once the window has
        started; windows built by tests and ``capsviewer export`` never do). True when offered."""
        from capsviewer.app.tour import offer_tour

        return offer_tour(self)

    def report_error(self, title: str, message: str, details: str = "") -> None:
        """A warning box with one sentence; ``details`` (a traceback, say) only behind its
        "Show Details…" button."""
        self.errors.append((title, message))
        self.status_text.setText(f"{title}: {message.splitlines()[0] if message else ''}")
        if self.show_errors:  # window-modal, not blocking
            box = QMessageBox(QMessageBox.Icon.Warning, title, message,
                              QMessageBox.StandardButton.Ok, self)
            if details:
                box.setDetailedText(details)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()
            self.error_box = box

    # -- for tests, benchmarks and `capsviewer export` ----------------------------------------
    @property
    def image(self):
        return self.state.image if self.state is not None else None

    @property
    def inspection(self):
        return self.state.inspection if self.state is not None else None

    def is_idle(self) -> bool:
        """Started, and no job queued, running or undelivered."""
        return self.controller is not None and self.controller.is_idle()

    def lanes(self):
        return tuple(self.controller.lanes.values()) if self.controller is not None else ()

    # -- layout persistence and shutdown ------------------------------------------------------
    def _restore_layout(self) -> None:
        geometry = self.settings.value("geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:  # 1280 × 800, or the screen's free area when smaller (window frame included)
            screen = self.screen().availableGeometry() if self.screen() else None
            width, height = 1280, 800
            if screen is not None and screen.width() > 0:
                width, height = min(width, screen.width()), min(height, screen.height() - 40)
            self.resize(width, height)
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
        self._closed = True
        if self._idle_builder is not None:
            self._idle_builder.stop()
        if self._startup is not None:
            self._startup.shutdown()
        if self.runner is not None and self.runner.is_running():
            self.runner.cancel()  # the trainer stops after its current (test) batch
            if not self.runner.wait(5000):
                self.runner.outlive(self)  # no signal of its worker reaches a deleted object
        if self.controller is not None:
            self.controller.shutdown()


def default_models() -> dict[str, Path]:
    from capsviewer.app.workbench import find_models

    return find_models("mnist")


def _import_workbench(models: list[Path]) -> tuple[dict[str, Path], list[str]]:
    """On the startup lane: import torch and the workbench, and find the models to open;
    also the problems of ``models`` (paths from --model) that cannot be read."""
    from capsviewer.app.workbench import startup_models

    return startup_models(models)

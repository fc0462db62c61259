"""The main window: an input dock on the left, the views as tabs, menus, status bar.

The window is also the controller: it turns view signals into jobs on two compute lanes
("interactive" for one-image work, "batch" for sweeps, grids and whole-test-set passes) and
hands results back to the views. No model code runs on the UI thread.
"""

from __future__ import annotations

from functools import partial

import hashlib
from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import QByteArray, QSettings, Qt, Signal, Slot
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
)

from capsviewer import paths
from capsviewer.analysis.inspection import (
    cached_predictions,
    inspect_capsnet,
    inspect_cnn,
    predict_all,
)
from capsviewer.analysis.pose import perturbation_grid, reconstruct
from capsviewer.analysis.preprocess import InputImage
from capsviewer.analysis.rotation import rotation_sweep
from capsviewer.analysis.routing_diagnostics import (
    UPDATES,
    accuracy_by_updates,
    decode_vote,
    routing_ablation,
)
from capsviewer.app import theme
from capsviewer.app.compute import ComputeLane
from capsviewer.app.export import export_view
from capsviewer.app.session import ModelSession
from capsviewer.app.settings import user_settings
from capsviewer.app.training_runner import TrainingRunner
from capsviewer.app.views.common import FORMULAS
from capsviewer.app.views.input_view import InputView
from capsviewer.app.views.pose_view import PoseView
from capsviewer.app.views.prediction_view import PredictionView
from capsviewer.app.views.rotation_view import RotationView
from capsviewer.app.views.routing_lab_view import RoutingLabView
from capsviewer.app.views.routing_view import RoutingView
from capsviewer.app.views.training_view import TrainingView
from capsviewer.data import DATASET_TITLES, DATASETS
from capsviewer.data.transforms import as_batch, model_device, rotate_images, to_float
from capsviewer.training import DeviceUnavailable
from capsviewer.training.devices import device_choices
from capsviewer.training.evaluation import EvaluationCancelled
from capsviewer.training.model_files import find_models


class MainWindow(QMainWindow):
    analysis_shown = Signal(object)  # (CapsuleInspection | None, CNNInspection | None)
    reconstruction_shown = Signal(object)  # the decoded pose image
    sweep_shown = Signal(object)  # RotationSweep

    def __init__(self, models: dict[str, Path] | None = None, data_root: str | None = None,
                 device: str = "auto", settings: QSettings | None = None,
                 download: bool = True, show_errors: bool = True,
                 predict_test_set: bool = True):
        super().__init__()
        self.setWindowTitle("capsviewer")
        self.setWindowIcon(theme.app_icon())
        self.settings = settings or user_settings()
        self.show_errors = show_errors  # tests record errors instead of opening dialogs
        self.errors: list[tuple[str, str]] = []
        self.predict_test_set = predict_test_set  # classify the whole test set in the background
        self.interactive = ComputeLane("interactive", self)
        self.batch = ComputeLane("batch", self)
        self.loading = ComputeLane("loading", self)  # checkpoints and data sets
        self.session = ModelSession(self.loading, device, data_root, self)
        self.session.dataset = _dataset_of(models or {})
        self.runner = TrainingRunner(self, download=download)
        self.image: InputImage | None = None
        self.inspection = None
        self.iterations: int | None = None  # None: the model's own setting
        self.selected_capsule: int | None = None
        self.rotation_angle = 0.0

        self._build_views()
        self._build_menus()
        self._build_status_bar()
        self._connect()
        self._restore_layout()

        self._dataset_changed(self.session.dataset)
        self.session.load_test_set(self.session.dataset, download)
        for path in (models or {}).values():
            self.session.load_checkpoint(path)
        if not models:
            self.status_text.setText("No model found: train one (Training tab) or open a "
                                     "checkpoint (File ▸ Open model…)")
            self.tabs.setCurrentWidget(self.training_view)

    # -- construction -----------------------------------------------------------------------
    def _build_views(self) -> None:
        self.input_view = InputView(show_errors=False)  # the window reports errors
        self.prediction_view = PredictionView()
        self.routing_view = RoutingView()
        self.pose_view = PoseView()
        self.rotation_view = RotationView()
        self.lab_view = RoutingLabView()
        self.training_view = TrainingView()
        self.training_view.set_data_root(self.session.data_root)
        self.training_view.connect_runner(self.runner)

        dock = QDockWidget("Input", self)
        dock.setObjectName("input-dock")
        dock.setWidget(self.input_view)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        self.input_dock = dock

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for view, title, tip in (
            (self.prediction_view, "Prediction", FORMULAS["squash"] + "\n" + FORMULAS["margin"]),
            (self.routing_view, "Routing", FORMULAS["routing"] + "\n" + FORMULAS["coupling"]),
            (self.pose_view, "Pose", FORMULAS["reconstruction"]),
            (self.rotation_view, "Rotation", "CNN probability vs capsule length under rotation"),
            (self.lab_view, "Routing lab", FORMULAS["routing"] + "\n" + FORMULAS["em_routing"]),
            (self.training_view, "Training", FORMULAS["margin"]),
        ):
            index = self.tabs.addTab(view, title)
            self.tabs.setTabToolTip(index, tip)
        self.setCentralWidget(self.tabs)

    def _action(self, menu, text, slot, shortcut=None, tip=None) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self._action(file, "&Open model…", self.open_model_dialog, QKeySequence.StandardKey.Open,
                     "Load a CapsNet or CNN checkpoint (.safetensors)")
        self._action(file, "Open &image…", self.input_view.choose_file, "Ctrl+I",
                     "Classify a digit from an image file")
        samples = file.addMenu("Sample i&mages")
        for path in sorted(theme.resource("samples").glob("*.png")):
            self._action(samples, path.stem.replace("-", " "),
                         lambda _=False, p=path: self.input_view.open_file(p))
        self._action(file, "&Save CapsNet as…", lambda: self.save_model_dialog("capsnet"))
        self._action(file, "Save CN&N as…", lambda: self.save_model_dialog("cnn"))
        file.addSeparator()
        self._action(file, "&Export current view…", self.export_current_dialog, "Ctrl+E",
                     "PNG (and SVG) of the view, its numbers as CSV")
        self._action(file, "Export &all views…", self.export_all_dialog, "Ctrl+Shift+E")
        file.addSeparator()
        self._action(file, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        navigate = bar.addMenu("&Navigate")
        self._action(navigate, "&Next image", self.input_view.next_image, "Alt+Right")
        self._action(navigate, "&Previous image", self.input_view.previous_image, "Alt+Left")
        self._action(navigate, "&Random image", self.input_view.random_image, "Ctrl+R")
        navigate.addSeparator()
        self._action(navigate, "Next routing &iteration", self._next_iteration, "]")
        self._action(navigate, "Previous routing i&teration", self._previous_iteration, "[")
        self._action(navigate, "&Play routing", self._play_routing, "Ctrl+Space")

        view = bar.addMenu("&View")
        for index in range(self.tabs.count()):
            self._action(view, self.tabs.tabText(index),
                         lambda _=False, i=index: self.tabs.setCurrentIndex(i), f"Ctrl+{index + 1}")
        view.addSeparator()
        themes = view.addMenu("&Theme")
        group = QActionGroup(self)
        current = self.settings.value("theme", "system")
        for name in theme.THEMES:
            action = QAction(name.capitalize(), self, checkable=True)
            action.setChecked(name == current)
            action.triggered.connect(lambda _=False, n=name: self.set_theme(n))
            group.addAction(action)
            themes.addAction(action)

        model = bar.addMenu("&Model")
        datasets = model.addMenu("Data&set")
        dataset_group = QActionGroup(self)
        self.dataset_actions: dict[str, QAction] = {}
        for name in DATASETS:
            action = QAction(DATASET_TITLES.get(name, name), self, checkable=True)
            action.setChecked(name == self.session.dataset)
            action.setStatusTip("Its test set, its class names and the models found for it")
            action.triggered.connect(lambda _=False, n=name: self.set_dataset(n))
            dataset_group.addAction(action)
            datasets.addAction(action)
            self.dataset_actions[name] = action
        devices = model.addMenu("&Device")
        device_group = QActionGroup(self)
        for name in device_choices():
            action = QAction(name, self, checkable=True)
            action.setChecked(name == "auto")
            action.triggered.connect(lambda _=False, n=name: self.set_device(n))
            device_group.addAction(action)
            devices.addAction(action)

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Formulas", self.show_formulas, QKeySequence.StandardKey.HelpContents)
        self._action(help_menu, "&About capsviewer", self.show_about)

    def _build_status_bar(self) -> None:
        self.status_text = QLabel()
        self.model_label = QLabel("no model")
        self.device_label = QLabel(self.session.device_text())
        self.busy_label = QLabel()
        bar = self.statusBar()
        bar.addWidget(self.status_text, 1)
        bar.addPermanentWidget(self.busy_label)
        bar.addPermanentWidget(self.model_label)
        bar.addPermanentWidget(self.device_label)

    def _connect(self) -> None:
        s = self.session
        s.models_changed.connect(self._models_changed)
        s.dataset_changed.connect(self._dataset_changed)
        s.test_set_changed.connect(self._test_set_changed)
        s.error.connect(self.report_error)
        s.status.connect(self.status_text.setText)
        for lane in self.lanes():
            lane.failed.connect(lambda key, message: self.report_error(f"{key} failed", message))
            lane.busy_changed.connect(self._busy_changed)
        self.input_view.image_chosen.connect(self.set_image)
        self.input_view.error.connect(lambda message: self.report_error("Cannot use image", message))
        self.routing_view.iterations_changed.connect(self.set_iterations)
        self.routing_view.capsule_selected.connect(self.select_capsule)
        self.routing_view.vote_decode_requested.connect(self._decode_vote)
        self.routing_view.accuracy_requested.connect(self._measure_updates_accuracy)
        self.pose_view.capsule_selected.connect(self.select_capsule)
        self.pose_view.pose_changed.connect(self._pose_changed)
        self.pose_view.grid_requested.connect(self._grid_requested)
        self.rotation_view.angle_changed.connect(self._angle_changed)
        self.rotation_view.sweep_requested.connect(self._sweep_requested)
        self.training_view.model_ready.connect(self.session.load_checkpoint)

    # -- models and data --------------------------------------------------------------------
    @Slot()
    def _models_changed(self) -> None:
        self.model_label.setText("  |  ".join(m.summary() for m in self.session.models.values())
                                 or "no model")
        self.device_label.setText(self.session.device_text())
        self.interactive.cancel()
        self.batch.cancel()
        self.input_view.set_predictions(None)
        self.routing_view.show_accuracy(None)
        if "capsnet" not in self.session.models:
            self.status_text.setText("No CapsNet loaded: train one on the Training tab or open a "
                                     "checkpoint (File ▸ Open model…)")
        self.analyse()
        self._predict_test_set()

    def set_dataset(self, name: str) -> None:
        """Work on dataset ``name``: its test set and the newest models found for it."""
        if name == self.session.dataset:
            return
        self.session.switch_dataset(name)
        found = find_models(name)
        for path in found.values():
            self.session.load_checkpoint(path)
        if not found:
            self.status_text.setText(
                f"No {DATASET_TITLES.get(name, name)} model found: train one on the Training "
                "tab or open a checkpoint (File ▸ Open model…)")

    @Slot(str)
    def _dataset_changed(self, name: str) -> None:
        self.dataset_actions[name].setChecked(True)
        title = DATASET_TITLES.get(name, name)
        self.setWindowTitle("capsviewer" if name == "mnist" else f"capsviewer · {title}")
        self.training_view.set_dataset(name)
        self.inspection = None
        self.selected_capsule = None

    @Slot(object)
    def _test_set_changed(self, images) -> None:
        if images is None:
            return
        self.input_view.set_test_set(images.images, images.labels, images.classes)
        self._predict_test_set()

    def _predict_test_set(self) -> None:
        entry = self.session.models.get("capsnet") or self.session.models.get("cnn")
        images = self.session.test_set
        if entry is None or images is None or not self.predict_test_set:
            return
        self.batch.submit("predict-all", _test_set_predictions, entry, images, self.batch.should_stop,
                          on_done=self._predictions_ready)

    def _predictions_ready(self, predicted) -> None:
        if predicted is not None:
            self.input_view.set_predictions(predicted)

    # -- one image ---------------------------------------------------------------------------
    @Slot(object)
    def set_image(self, image: InputImage) -> None:
        self.image = image
        self.selected_capsule = None
        self.analyse()

    def analyse(self) -> None:
        if self.image is None:
            return
        capsnet, cnn = self.session.capsnet, self.session.cnn
        if capsnet is None and cnn is None:
            self.prediction_view.show_inspection(None, None, self.image.label,
                                                 to_float(self.image.pixels).numpy())
            return
        self.interactive.submit("analyse", _analyse, capsnet, cnn, self.image.pixels,
                                self.iterations, self.session.class_names,
                                on_done=self._show_analysis)
        if capsnet is not None:
            self.interactive.submit("routing-ablation", routing_ablation, capsnet,
                                    self.image.pixels, UPDATES, on_done=self.routing_view.show_ablation)
        self._angle_changed(self.rotation_angle)

    def _show_analysis(self, result) -> None:
        capsules, cnn = result
        self.inspection = capsules
        self.prediction_view.show_inspection(
            capsules, cnn, self.image.label if self.image else None,
            to_float(self.image.pixels).numpy() if self.image else None)
        if capsules is not None:
            self.routing_view.show_inspection(capsules)
            digit = capsules.prediction if self.selected_capsule is None else self.selected_capsule
            self.pose_view.set_input_image(capsules.image)
            self.pose_view.set_capsule(digit, capsules.poses[digit], capsules.class_names)
        self.analysis_shown.emit(result)

    @Slot(int)
    def set_iterations(self, iterations: int) -> None:
        self.iterations = iterations
        self.analyse()

    @Slot(int)
    def select_capsule(self, digit: int) -> None:
        self.selected_capsule = digit
        if self.inspection is not None:
            self.pose_view.set_capsule(digit, self.inspection.poses[digit],
                                       self.inspection.class_names)

    @Slot(object)
    def _pose_changed(self, request) -> None:
        digit, pose = request
        if self.session.capsnet is not None:
            self.interactive.submit("decode", reconstruct, self.session.capsnet, np.asarray(pose),
                                    digit, on_done=self._show_reconstruction)

    @Slot(object)
    def _decode_vote(self, selection) -> None:
        if self.session.capsnet is not None and self.inspection is not None:
            self.interactive.submit("vote-decode", decode_vote, self.session.capsnet,
                                    self.inspection, selection,
                                    on_done=self.routing_view.show_decoded_vote)

    @Slot(int)
    def _measure_updates_accuracy(self, count: int) -> None:
        images = self.session.test_set
        if self.session.capsnet is None or images is None:
            self.report_error("Cannot measure", "Needs a CapsNet and the test set.")
            return
        subset = images.subset(count, seed=0)  # as `capsviewer ablation --test-subset N`
        self.routing_view.ablation_view.set_measuring(True)

        def failed(error: BaseException) -> None:
            self.routing_view.ablation_view.set_measuring(False)
            if not isinstance(error, EvaluationCancelled):
                self.report_error("Accuracy against k failed", f"{type(error).__name__}: {error}")

        self.batch.submit("updates-accuracy", accuracy_by_updates, self.session.capsnet,
                          subset.images, subset.labels, UPDATES, 250, self.batch.should_stop,
                          on_done=self.routing_view.show_accuracy, on_error=failed)

    def _show_reconstruction(self, image) -> None:
        self.pose_view.show_reconstruction(image)
        self.reconstruction_shown.emit(image)

    @Slot(object)
    def _grid_requested(self, request) -> None:
        digit, pose, offsets = request
        if self.session.capsnet is not None:
            self.batch.submit("grid", perturbation_grid, self.session.capsnet, pose, digit, offsets,
                              on_done=lambda grid: self.pose_view.show_grid(grid, offsets))

    @Slot(float)
    def _angle_changed(self, angle: float) -> None:
        self.rotation_angle = angle
        if self.image is None:
            return
        self.interactive.submit("rotate", _rotated_responses, self.session.capsnet,
                                self.session.cnn, self.image.pixels, angle, self.iterations,
                                on_done=self._show_rotated)

    def _show_rotated(self, result) -> None:
        image, capsules, cnn = result
        names = self.session.class_names
        self.rotation_view.show_angle(image, cnn, capsules, names)

    @Slot(object)
    def _sweep_requested(self, angles) -> None:
        if self.image is None:
            return
        self.batch.submit("sweep", partial(rotation_sweep, fast=True), self.session.capsnet, self.session.cnn,
                          self.image.pixels, np.asarray(angles), self.image.label, self.iterations,
                          on_done=self._show_sweep)

    def _show_sweep(self, sweep) -> None:
        self.rotation_view.show_sweep(sweep)
        self.sweep_shown.emit(sweep)

    # -- actions -----------------------------------------------------------------------------
    def _next_iteration(self) -> None:
        self.tabs.setCurrentWidget(self.routing_view)
        self.routing_view.next_iteration()

    def _previous_iteration(self) -> None:
        self.tabs.setCurrentWidget(self.routing_view)
        self.routing_view.previous_iteration()

    def _play_routing(self) -> None:
        self.tabs.setCurrentWidget(self.routing_view)
        self.routing_view.toggle_play()

    def open_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open model", self._last_dir(),
                                              "capsviewer checkpoints (*.safetensors)")
        if path:
            self.settings.setValue("last_dir", str(Path(path).parent))
            self.session.load_checkpoint(path)

    def save_model_dialog(self, architecture: str) -> None:
        entry = self.session.models.get(architecture)
        if entry is None:
            self.report_error("Nothing to save", f"No {architecture} model is loaded.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save model", self._last_dir(),
                                              "capsviewer checkpoints (*.safetensors)")
        if path:
            from capsviewer.training import save_checkpoint

            meta = {k: v for k, v in entry.metadata.items()
                    if k not in ("format", "format_version", "architecture", "config")}
            self.interactive.submit("save", save_checkpoint, path, entry.model, meta,
                                    on_done=lambda p: self.status_text.setText(f"Saved {p}"))

    def export_current_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export view to folder", self._last_dir())
        if folder:
            self.export_views([self.tabs.currentWidget()], folder)

    def export_all_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export all views to folder", self._last_dir())
        if folder:
            views = [self.input_view] + [self.tabs.widget(i) for i in range(self.tabs.count())]
            self.export_views(views, folder)

    def export_views(self, views, folder: str | Path) -> list[Path]:
        written: list[Path] = []
        try:
            for view in views:
                written += export_view(view, folder)
                for panel in getattr(view, "export_panels", list)():  # the routing view's panels
                    written += export_view(panel, folder)
        except OSError as error:
            self.report_error("Export failed", str(error))
        self.status_text.setText(f"Exported {len(written)} files to {folder}")
        return written

    def set_theme(self, name: str) -> None:
        self.settings.setValue("theme", name)
        theme.apply_theme(QApplication.instance(), name)

    def set_device(self, name: str) -> None:
        try:
            self.session.set_device(name)
        except DeviceUnavailable as error:
            self.report_error("Device unavailable", str(error))

    def show_formulas(self) -> None:
        text = "\n\n".join(f"{name}:\n{formula}" for name, formula in FORMULAS.items())
        QMessageBox.information(self, "The maths behind the views", text)

    def show_about(self) -> None:
        import capsviewer

        QMessageBox.about(self, "About capsviewer",
                          f"capsviewer {capsviewer.__version__}\n\nExplore Capsule Networks: "
                          "Sabour, Frosst & Hinton (2017), Dynamic Routing Between Capsules.")

    @Slot(str, str)
    def report_error(self, title: str, message: str) -> None:
        self.errors.append((title, message))
        self.status_text.setText(f"{title}: {message.splitlines()[0]}")
        if self.show_errors:  # window-modal, not blocking
            box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()

    def is_idle(self) -> bool:
        """No model job queued, running or undelivered (tests and benchmarks wait for this)."""
        return all(lane.pending() == 0 for lane in self.lanes())

    def lanes(self) -> tuple[ComputeLane, ...]:
        return (self.interactive, self.batch, self.loading)

    @Slot(bool)
    def _busy_changed(self, _busy: bool) -> None:
        busy = not self.is_idle()
        self.busy_label.setText("computing…" if busy else "")

    def _last_dir(self) -> str:
        return str(self.settings.value("last_dir", str(Path.home())))

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
        for lane in self.lanes():
            lane.shutdown()


def _analyse(capsnet, cnn, pixels, iterations, names):
    capsules = inspect_capsnet(capsnet, pixels, iterations, names) if capsnet is not None else None
    return capsules, inspect_cnn(cnn, pixels, names) if cnn is not None else None


def _rotated_responses(capsnet, cnn, pixels, angle, iterations):
    image = np.asarray(rotate_images(pixels, [angle])[0])
    capsules = None
    if capsnet is not None:  # lengths only: no routing trace needed for the angle slider
        with torch.no_grad():
            x = as_batch(image, model_device(capsnet))
            capsules = capsnet.eval()(x, iterations=iterations).scores[0].cpu().numpy()
    probabilities = inspect_cnn(cnn, image).probabilities if cnn is not None else None
    return image, capsules, probabilities


def _test_set_predictions(entry, images, should_stop):
    """The model's class for every test image, cached per (checkpoint file, test set)."""
    if entry.path is None:
        return predict_all(entry.model, images.images, 100, should_stop)
    digest = hashlib.sha256(entry.path.read_bytes()).hexdigest()[:16]
    key = f"{digest}-{images.checksum()[:16]}"
    cache = paths.cache_dir("predictions")
    return cached_predictions(entry.model, images.images, key, cache, 100, should_stop)


def default_models() -> dict[str, Path]:
    return find_models("mnist")


def _dataset_of(models: dict[str, Path]) -> str:
    """The dataset of the first readable checkpoint among ``models`` (MNIST without one)."""
    from capsviewer.training import CheckpointError, read_metadata

    for path in models.values():
        try:
            name = read_metadata(path).get("dataset", {}).get("name", "mnist")
        except (CheckpointError, OSError):
            continue
        return name if name in DATASETS else "mnist"
    return "mnist"

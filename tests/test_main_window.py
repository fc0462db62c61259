"""The whole window, end to end: models load in the background, every view shows the current
input (or that it is being computed), what it shows agrees with the core, and the UI thread
only draws."""

import threading
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QPoint, QSettings, Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from capsviewer.analysis import routing_lab
from capsviewer.analysis.inspection import inspect_capsnet, inspect_cnn
from capsviewer.analysis.pose import perturbation_grid, reconstruct
from capsviewer.analysis.rotation import rotation_sweep
from capsviewer.app.main_window import MainWindow
from capsviewer.app.views.pose_view import image_mosaic
from capsviewer.data import ImageSet
from capsviewer.training import TrainConfig, describe_device, load_checkpoint, select_device
from capsviewer.training.model_files import SHIPPED_MODELS, find_models

MAX_UI_WORK = 0.100  # CPU seconds the UI thread may spend without serving its event loop


@pytest.fixture(scope="session")
def window_models(model_files):
    """The shipped models when they are there, else seeded untrained ones."""
    shipped = find_models("mnist", [SHIPPED_MODELS])
    return shipped if {"capsnet", "cnn"} <= set(shipped) else dict(model_files)


def open_window(qtbot, models, data_root, tmp_path, wait=True, predict_test_set=False):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(models, data_root=str(data_root), settings=settings, download=False,
                        show_errors=False, predict_test_set=predict_test_set)
    qtbot.addWidget(window)
    window.show()
    if wait:
        settle(qtbot, window, lambda: set(window.state.models) == set(models)
               and window.inspection is not None)
    return window


def settle(qtbot, window, condition=lambda: True, timeout=30000):
    """Wait until no job is pending and ``condition()`` holds."""
    qtbot.waitUntil(lambda: window.is_idle() and condition(), timeout=timeout)


class GapMeter:
    """A 10 ms QTimer on the UI thread: the most CPU time the UI thread used between two of
    its ticks is the most work that kept the event loop from running. CPU time of that one
    thread, not wall time, so a busy machine (which delays the ticks) does not count."""

    def __init__(self):
        self.ticks = []
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(lambda: self.ticks.append(time.thread_time()))

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *_):
        self.timer.stop()

    @property
    def worst(self) -> float:
        return float(np.diff(self.ticks).max())


@pytest.fixture
def window(qtbot, window_models, data_root, tmp_path):
    window = open_window(qtbot, window_models, data_root, tmp_path)
    yield window
    window.shutdown()


@pytest.fixture(scope="session")
def core_models(window_models):
    return {name: load_checkpoint(path).model.eval() for name, path in window_models.items()}


def test_opens_with_the_models_and_predicts_test_image_0(window, core_models, mnist_test):
    assert window.image.source == "test #0" and window.image.label == int(mnist_test.labels[0])
    expected = inspect_capsnet(core_models["capsnet"], mnist_test.images[0, 0])
    np.testing.assert_allclose(window.inspection.lengths, expected.lengths, atol=1e-6)
    cnn = inspect_cnn(core_models["cnn"], mnist_test.images[0, 0])
    headline = window.prediction_view.headline.text()
    assert f"CapsNet: {expected.prediction}" in headline and f"CNN: {cnn.prediction}" in headline
    assert "CapsNet" in window.model_label.text() and "CNN" in window.model_label.text()
    assert window.device_label.text() == describe_device(select_device("auto"))


def test_next_image_shortcut_classifies_the_next_test_image(qtbot, window, core_models, mnist_test):
    QTest.keyClick(window, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)
    assert window.image.index == 1
    assert window.prediction_view.headline.text().startswith("Computing")  # not image 0's
    settle(qtbot, window)
    expected = inspect_capsnet(core_models["capsnet"], mnist_test.images[1, 0])
    np.testing.assert_allclose(window.inspection.lengths, expected.lengths, atol=1e-6)
    np.testing.assert_allclose(window.prediction_view.capsule_bars.heights(), expected.lengths,
                               atol=1e-6)


def test_pose_slider_drives_the_decoder(qtbot, window, core_models):
    view = window.pose_view
    window.tabs.setCurrentWidget(view)
    before = view.reconstruction_item.image.copy()  # the capsule's own pose, decoded
    view.set_offset(5, 0.25)
    assert window.state.pose_offsets[5] == pytest.approx(0.25)
    settle(qtbot, window)
    after = view.reconstruction_item.image
    assert np.abs(after - before).max() > 1e-4
    pose = window.inspection.poses[view.digit()].copy()
    pose[5] += 0.25
    np.testing.assert_allclose(view.current_pose(), pose, atol=1e-6)
    expected = reconstruct(core_models["capsnet"], pose, view.digit())
    np.testing.assert_allclose(after, expected, atol=1e-6)


def test_routing_iteration_keys_step_through_the_core_trace(qtbot, window, core_models, mnist_test):
    model = core_models["capsnet"]
    with torch.no_grad():
        trace = model(mnist_test.images[:1].float() / 255, trace=True).routing.trace
    routing = window.routing_view
    QTest.keyClick(window, Qt.Key.Key_BracketLeft)
    QTest.keyClick(window, Qt.Key.Key_BracketLeft)
    assert window.tabs.currentWidget() is routing and routing.iteration == 1
    for r in (1, 2, 3):
        couplings = model.config.as_primary_grid(trace[r - 1].couplings, 1)[0, ..., routing.digit]
        np.testing.assert_allclose(routing.displayed_couplings(), couplings.numpy(), atol=1e-6)
        QTest.keyClick(window, Qt.Key.Key_BracketRight)


def test_a_self_attention_capsnet_shows_its_attention_weights_on_the_routing_tab(
        qtbot, window, tmp_path, mnist_test):
    from capsviewer.models import build_model
    from capsviewer.training import save_checkpoint

    torch.manual_seed(1)
    path = save_checkpoint(tmp_path / "capsnet-selfatt.safetensors",
                           build_model("capsnet", {"routing": "self-attention"}),
                           {"dataset": {"name": "mnist"}})
    window.session.load_checkpoint(path)
    settle(qtbot, window, lambda: window.inspection is not None
           and window.inspection.routing == "self-attention")
    window.tabs.setCurrentWidget(window.routing_view)
    routing = window.routing_view
    qtbot.waitUntil(lambda: routing.routing == "self-attention")
    settle(qtbot, window)
    model = load_checkpoint(path).model.eval()
    with torch.no_grad():
        trace = model(mnist_test.images[:1].float() / 255, trace=True).routing.trace
    assert len(trace) == 1 and routing.iteration_count == 1
    routing.set_quantity("couplings")
    expected = model.config.as_primary_grid(trace[0].couplings, 1)[0, ..., routing.digit]
    np.testing.assert_allclose(routing.displayed_couplings(), expected.numpy(), atol=1e-6)
    assert routing.mosaic.plot.titleLabel.text.startswith("Self-attention weights c<sub>ij</sub>")
    assert "Self-attention routing" in routing.routing_label.text()
    assert not routing.iterations_spin.isEnabled()
    assert "runs in one pass" in routing.ablation_view.summary.text()


def test_r_5_is_shown_on_prediction_and_pose_with_the_core_numbers(qtbot, window, core_models,
                                                                  mnist_test):
    """R set on the Routing tab changes what Prediction, Pose and Rotation show: each says so,
    and their numbers are the core's at R = 5."""
    capsnet = core_models["capsnet"]
    window.routing_view.iterations_spin.setValue(5)
    assert window.state.iterations == 5
    assert "R = 5" in window.prediction_view.headline.text()  # "Computing (R = 5)…"
    settle(qtbot, window)
    expected = inspect_capsnet(capsnet, mnist_test.images[0, 0], iterations=5)
    assert len(window.inspection.iterations) == 5 and window.routing_view.iteration_count == 5
    prediction = window.prediction_view
    assert "R = 5)" in prediction.headline.text()
    assert "R = 5" in prediction.capsule_bars.getPlotItem().titleLabel.text
    np.testing.assert_allclose(prediction.capsule_bars.heights(), expected.lengths, atol=1e-6)
    at_3 = inspect_capsnet(capsnet, mnist_test.images[0, 0], iterations=3)
    assert not np.allclose(expected.lengths, at_3.lengths, atol=1e-6)  # R matters
    pose, j = window.pose_view, expected.prediction
    assert "(R = 5)" in pose.caption.text()
    assert f"{np.linalg.norm(expected.poses[j]):.3f}" in pose.caption.text()
    np.testing.assert_allclose(pose.current_pose(), expected.poses[j], atol=1e-6)
    np.testing.assert_allclose(pose.reconstruction_item.image,
                               reconstruct(capsnet, expected.poses[j], j), atol=1e-6)
    assert "(R = 5)" in window.rotation_view.capsule_plot.titleLabel.text
    with torch.no_grad():
        lengths = capsnet(mnist_test.images[:1].float() / 255, iterations=5).scores[0].numpy()
    np.testing.assert_allclose(window.rotation_view.capsule_bars.opts["height"], lengths,
                               atol=1e-6)


def test_the_misclassified_filter_says_which_model_and_r_it_used(qtbot, window_models, data_root,
                                                                 tmp_path, core_models,
                                                                 mnist_test):
    window = open_window(qtbot, window_models, data_root, tmp_path, wait=False,
                         predict_test_set=True)
    try:
        qtbot.waitUntil(lambda: window.state.test_set is not None
                        and set(window.state.models) == set(window_models), timeout=30000)
        # a small set (a quick pass) whose first five labels are wrong: five misclassified
        subset = mnist_test.subset(300, seed=1)
        labels = subset.labels.clone()
        labels[:5] = (labels[:5] + 1) % 10
        window.state.test_set = ImageSet(subset.name, False, subset.images, labels,
                                         subset.classes)
        window.routing_view.iterations_spin.setValue(5)
        check = window.input_view._misclassified
        assert not check.isEnabled() and "computing" in check.text()
        settle(qtbot, window, lambda: window.state.predictions.ready, timeout=120000)
        assert check.text() == "Misclassified only (CapsNet, R = 5)" and check.isEnabled()
        images, labels = window.state.test_set.images, window.state.test_set.labels
        with torch.no_grad():
            expected = core_models["capsnet"](images.float() / 255, iterations=5).scores.argmax(1)
        np.testing.assert_array_equal(window.state.predictions.value.predicted, expected.numpy())
        check.setChecked(True)
        settle(qtbot, window)
        index = window.image.index
        assert expected[index] != labels[index] and window.input_view._filtered.size >= 5
        assert window.inspection.prediction == int(expected[index])  # the panel agrees
    finally:
        window.shutdown()


def test_rotation_sweep_gives_curves_for_both_models(qtbot, window):
    view = window.rotation_view
    view.step_spin.setValue(15)
    view.sweep_button.click()
    settle(qtbot, window, lambda: window.state.sweep.ready)
    sweep = window.state.sweep.value
    angles = np.arange(-180, 180, 15)
    np.testing.assert_array_equal(sweep.angles, angles)
    for curve in (view.cnn_curve, view.capsule_curve):
        x, y = curve.getData()
        np.testing.assert_array_equal(x, angles)
        assert np.isfinite(y).all()
    ref = sweep.reference_class
    np.testing.assert_allclose(view.cnn_curve.getData()[1], sweep.cnn_probabilities[:, ref])
    np.testing.assert_allclose(view.capsule_curve.getData()[1], sweep.capsule_lengths[:, ref])


def test_another_image_never_leaves_the_old_sweep_or_grid_on_screen(qtbot, window, core_models,
                                                                    mnist_test):
    """After a sweep and a Fig. 4 grid of image 0, choosing image 1 clears both at once, then
    shows image 1's, equal to the core's; another capsule of it gets its own grid."""
    capsnet, cnn = core_models["capsnet"], core_models["cnn"]
    rotation, pose = window.rotation_view, window.pose_view
    rotation.step_spin.setValue(30)
    rotation.sweep_button.click()
    pose.grid_button.click()
    settle(qtbot, window, lambda: window.state.sweep.ready and window.state.grid.ready)
    old_curve = rotation.capsule_curve.getData()[1].copy()
    window.input_view.next_image()
    assert window.image.index == 1
    x, _ = rotation.capsule_curve.getData()
    assert x is None or len(x) == 0  # cleared at once, not image 0's curve
    assert "test #1" in rotation.summary.text() and pose.grid_item.image is None
    settle(qtbot, window, lambda: window.state.sweep.ready and window.state.grid.ready)
    image = mnist_test.images[1, 0]
    expected = rotation_sweep(capsnet, cnn, image, np.arange(-180.0, 180.0, 30.0),
                              int(mnist_test.labels[1]), fast=True)
    ref = expected.reference_class
    np.testing.assert_allclose(rotation.capsule_curve.getData()[1],
                               expected.capsule_lengths[:, ref], atol=1e-5)
    assert not np.allclose(rotation.capsule_curve.getData()[1], old_curve)
    assert "test #1" in rotation.score_plot.titleLabel.text
    inspection = inspect_capsnet(capsnet, image)
    offsets = np.linspace(-0.25, 0.25, 11)
    j = inspection.prediction
    grid = perturbation_grid(capsnet, inspection.poses[j], j, offsets)
    np.testing.assert_allclose(pose.grid_item.image, image_mosaic(grid), atol=1e-5)
    assert "test #1" in pose.grid_box.title()
    other = (j + 1) % 10
    window.routing_view.select_capsule(other)  # the grid follows the capsule
    assert pose.grid_item.image is None
    settle(qtbot, window, lambda: window.state.grid.ready)
    np.testing.assert_allclose(pose.grid_item.image, image_mosaic(
        perturbation_grid(capsnet, inspection.poses[other], other, offsets)), atol=1e-5)


def test_drawing_and_image_files_are_classified_and_bad_files_reported(qtbot, window, tmp_path,
                                                                      core_models, mnist_test):
    inputs = window.input_view
    inputs._tabs.setCurrentWidget(inputs._drawing)
    canvas = inputs._canvas
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(140, 40))
    for y in range(60, 240, 20):
        QTest.mouseMove(canvas, QPoint(140, y))
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                       QPoint(140, 240))
    assert window.image.source == "drawing"
    settle(qtbot, window)
    drawn = inspect_capsnet(core_models["capsnet"], window.image.pixels)
    np.testing.assert_allclose(window.inspection.lengths, drawn.lengths, atol=1e-6)
    # Clear: no input, so no prediction of the drawing left on any tab
    inputs.clear_drawing()
    assert window.image is None and window.inspection is None
    assert window.prediction_view.headline.text().startswith("No input")
    assert not window.prediction_view.capsule_bars.bars.isVisible()
    assert window.pose_view.caption.text() == "No input"
    settle(qtbot, window)
    assert window.image is None

    digit = tmp_path / "digit.png"
    Image.fromarray(255 - mnist_test.images[7, 0].numpy()).resize((112, 112)).save(digit)
    assert inputs.open_file(digit)
    settle(qtbot, window)
    assert window.image.source.endswith("digit.png") and window.inspection is not None
    shown = window.image

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    assert not inputs.open_file(broken)
    assert window.errors and "broken.png" in window.errors[-1][1]
    assert window.image is shown  # nothing lost
    assert "broken.png" in window.status_text.text()


def test_dragging_a_lab_vote_never_routes_on_the_ui_thread(qtbot, window, monkeypatch):
    """100 drag events of a routing-lab vote: routing runs on a lane, never on the UI thread,
    and the lab ends on the last position's result."""
    ui_thread = threading.get_ident()
    threads = []

    def watched(original):
        def wrapper(*args, **kwargs):
            threads.append(threading.get_ident())
            return original(*args, **kwargs)
        return wrapper

    compute = routing_lab.compute
    monkeypatch.setattr(routing_lab, "compute", watched(compute))
    monkeypatch.setattr(routing_lab, "route", watched(routing_lab.route))
    lab = window.lab_view
    window.tabs.setCurrentWidget(lab)
    lab.load_preset("free")
    settle(qtbot, window, lab.is_current)
    start = lab.state.effective_votes()[2, 0]
    path = [start + np.array([np.cos(t), np.sin(t)]) * 0.01 * k
            for k, t in enumerate(np.linspace(0, 6, 100), 1)]
    for x, y in path:
        lab.dynamic_canvas.vote_moved.emit(2, 0, (float(x), float(y)))
        QApplication.processEvents()
    settle(qtbot, window, lab.is_current)
    assert threads and ui_thread not in threads
    np.testing.assert_allclose(lab.state.effective_votes()[2, 0], path[-1], atol=1e-9)
    np.testing.assert_allclose(lab.result.votes[2, 0], path[-1], atol=1e-9)
    expected = compute(lab.state)
    np.testing.assert_allclose(lab.dynamic_canvas.drawn_weights(),
                               expected.dynamic.couplings[-1], atol=1e-12)
    np.testing.assert_allclose(lab.em_canvas.drawn_weights(),
                               expected.em.responsibilities[-1], atol=1e-12)


def test_export_runs_in_the_background_with_progress(qtbot, window, tmp_path):
    """File ▸ Export of the Routing tab (its panels too, the vote cloud's 1152 dots among
    them): the UI thread keeps serving its event loop, progress is shown, and the files are
    the ones the synchronous export writes."""
    window.tabs.setCurrentWidget(window.routing_view)
    settle(qtbot, window)
    progress = []
    window.state.events.export.connect(lambda result: progress.append(result.progress))
    with GapMeter() as meter:
        window.controller.export([window.routing_view], tmp_path / "background")
        assert window.export_progress.isVisible() and window.export_cancel.isVisible()
        qtbot.waitUntil(lambda: not window.state.export.pending, timeout=120000)
    written = window.state.export.value
    assert meter.worst < MAX_UI_WORK, f"the UI thread worked {1000 * meter.worst:.0f} ms at once"
    assert len(progress) > 10 and progress[-2][0] == progress[-2][1]
    assert not window.export_progress.isVisible()
    assert f"Exported {len(written)} files" in window.status_text.text()
    now = window.export_views([window.routing_view], tmp_path / "now")
    assert sorted(p.name for p in written) == sorted(p.name for p in now)
    cloud = tmp_path / "background" / "routing-vote-cloud-plot.svg"
    assert cloud.stat().st_size < 2_000_000  # dots as vector circles, not 1152 bitmaps
    ElementTree.parse(cloud)
    votes = (tmp_path / "background" / "routing-vote-cloud-votes.csv").read_text()
    assert votes == (tmp_path / "now" / "routing-vote-cloud-votes.csv").read_text()


def test_export_can_be_cancelled(qtbot, window, tmp_path):
    window.controller.export(window.export_targets(current=False), tmp_path)
    qtbot.waitUntil(lambda: (window.state.export.progress or (0, 1))[0] >= 3, timeout=30000)
    window.export_cancel.click()
    assert not window.state.export.pending and window.state.export.error == "cancelled"
    settle(qtbot, window)
    assert "Export cancelled" in window.status_text.text()
    assert len(list(tmp_path.iterdir())) < 20  # of more than 60 files


def test_a_trained_model_replaces_nothing_until_it_is_chosen(qtbot, window, tmp_path,
                                                             window_models):
    """A run of the Training tab writes a new file next to one of the same name (left as it
    was); the shipped models stay loaded until "Use this model"; Model ▸ Shipped models
    brings them back."""
    shipped = dict(window.state.models)
    taken = tmp_path / "cnn-mnist.safetensors"
    taken.write_bytes(window_models["cnn"].read_bytes())
    before = taken.read_bytes()
    training = window.training_view
    training.set_config(TrainConfig(model="cnn", subset=64, test_subset=100, batch_size=32,
                                    epochs=1, device="cpu", data_root=str(window.session.data_root),
                                    output=str(taken)))
    with qtbot.waitSignal(training.model_ready, timeout=60000) as ready:
        training.start_button.click()
    trained = ready.args[0]
    assert trained == str(tmp_path / "cnn-mnist-2.safetensors") and taken.read_bytes() == before
    settle(qtbot, window)
    assert window.state.models["cnn"] is shipped["cnn"]  # not swapped behind the user's back
    assert training.use_button.isEnabled()
    training.use_button.click()
    settle(qtbot, window, lambda: str(window.state.models["cnn"].path) == trained)
    assert "CNN: cnn-mnist-2" in window.model_label.text() and trained in window.model_label.toolTip()
    assert window.state.models["capsnet"] is shipped["capsnet"]
    window.menu_actions["&Model/&Shipped models"].trigger()
    settle(qtbot, window, lambda: window.state.models["cnn"].path == shipped["cnn"].path)
    assert window.state.models["cnn"].shipped == (Path(SHIPPED_MODELS).resolve()
                                                  == shipped["cnn"].path.resolve().parent)
    label = window.model_label.text()  # the shipped CNN again: named, its file in the tooltip
    assert "CNN" in label and "cnn-mnist-2" not in label
    if window.state.models["cnn"].shipped:
        assert "CNN: " not in label
        assert "cnn-mnist.safetensors (shipped)" in window.model_label.toolTip()


def test_the_accuracy_against_k_stays_across_images_and_shows_progress(qtbot, window):
    panel = window.routing_view.ablation_view
    seen = []
    window.state.events.accuracy.connect(lambda result: seen.append(result.progress))
    panel.count.setValue(500)
    panel.measure_button.click()
    assert not panel.progress.isHidden() and panel.measure_button.text() == "Cancel"
    settle(qtbot, window, lambda: window.state.accuracy.ready, timeout=120000)
    assert (250, 500) in seen and panel.progress.isHidden()
    text = panel.accuracy_text.text()
    assert "500 test images" in text
    window.input_view.next_image()
    settle(qtbot, window)
    assert panel.accuracy_text.text() == text and panel.accuracy is window.state.accuracy.value


def test_decoding_every_part_leaves_no_box_on_the_routing_map(qtbot, window):
    routing = window.routing_view
    window.tabs.setCurrentWidget(routing)
    routing.panels.setCurrentWidget(routing.decoder_view)
    routing.decoder_view.all_button.click()
    assert len(routing.selected_parts()) == 1152
    assert len(routing.selection_marks.getData()[0]) == 0  # not a box on every cell
    routing.select_parts([5])
    assert len(routing.selection_marks.getData()[0]) == 1
    routing.panels.setCurrentWidget(routing.diagnostics_view)  # leaving the panel
    assert len(routing.selection_marks.getData()[0]) == 0


def test_a_corrupt_checkpoint_is_reported_and_the_models_stay(qtbot, window, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    loaded = dict(window.session.models)
    window.session.load_checkpoint(bad)
    qtbot.waitUntil(lambda: bool(window.errors), timeout=5000)
    assert "bad.safetensors" in window.errors[-1][1]
    assert window.session.models == loaded


def test_export_writes_png_svg_and_csv_for_every_view(window, tmp_path):
    views = [window.input_view] + [window.tabs.widget(i) for i in range(window.tabs.count())]
    written = window.export_views(views, tmp_path / "export")
    suffixes = {p.suffix for p in written}
    assert suffixes == {".png", ".svg", ".csv"}
    for view in views:
        assert (tmp_path / "export" / f"{view.export_name}.png").stat().st_size > 1000
    for svg in (p for p in written if p.suffix == ".svg"):
        root = ElementTree.parse(svg).getroot()
        assert root.tag.endswith("svg") and len(list(root.iter())) > 5
    classes = (tmp_path / "export" / "prediction-classes.csv").read_text().splitlines()
    assert len(classes) == 11  # header + 10 classes


def test_without_models_the_window_offers_training(qtbot, data_root, tmp_path):
    window = open_window(qtbot, {}, data_root, tmp_path, wait=False)
    try:
        assert window.tabs.currentWidget() is window.training_view
        assert "train" in window.status_text.text().lower()
        qtbot.waitUntil(lambda: window.image is not None, timeout=10000)  # the test set loads
    finally:
        window.shutdown()


def test_layout_and_tab_are_remembered(qtbot, window_models, data_root, tmp_path):
    first = open_window(qtbot, window_models, data_root, tmp_path)
    first.tabs.setCurrentIndex(2)
    first.close()
    second = open_window(qtbot, window_models, data_root, tmp_path)
    try:
        assert second.tabs.currentIndex() == 2
    finally:
        second.shutdown()


def test_closing_interrupts_the_background_test_set_pass(qtbot, model_files, data_root, tmp_path):
    # Models that ship no predictions: the pass runs (the shipped ones' are read at once).
    window = open_window(qtbot, model_files, data_root, tmp_path, wait=False,
                         predict_test_set=True)
    lane = window.controller.lanes["test-set"]
    qtbot.waitUntil(lambda: lane.pending() > 0 and lane._running is not None, timeout=20000)
    window.close()  # stops the pass between two batches and waits for every lane
    assert not any(lane.isRunning() for lane in window.lanes())


def test_dark_theme_recolours_the_window_and_its_plots(window):
    from PySide6.QtGui import QPalette

    origin = window.routing_view.cloud_view.origin  # a marker in the foreground colour
    try:
        window.set_theme("dark")
        assert window.palette().color(QPalette.ColorRole.Window).lightness() < 60
        plot = window.prediction_view.findChildren(pg.GraphicsView)[0]
        assert plot.backgroundBrush().color().lightness() < 60
        assert window.settings.value("theme") == "dark"
        assert pg.mkBrush(origin.opts["brush"]).color().lightness() > 180
        assert pg.mkPen(origin.opts["pen"]).color().lightness() > 180
    finally:
        window.set_theme("light")
    assert window.palette().color(QPalette.ColorRole.Window).lightness() > 180
    assert pg.mkBrush(origin.opts["brush"]).color().lightness() < 60


def test_export_command_writes_every_view_without_a_window(qapp, model_files, data_root, tmp_path,
                                                           capsys):
    from capsviewer.cli import main

    out = tmp_path / "figures"
    args = ["export", "--model", str(model_files["capsnet"]), "--model", str(model_files["cnn"]),
            "--data-root", str(data_root), "--index", "2", "--iterations", "4", "--out", str(out)]
    assert main(args) == 0
    assert "for test #2" in capsys.readouterr().out
    for name in ("input.png", "prediction.png", "routing.png", "pose.png", "rotation.png",
                 "routing-mosaic.svg", "prediction-classes.csv", "routing-iteration-4.csv"):
        assert (out / name).stat().st_size > 0, name
    sweep = (out / "rotation-sweep.csv").read_text().splitlines()
    assert len(sweep) == 1 + 72  # header + the default 5° sweep


def test_test_set_predictions_are_cached_on_disk(tmp_path, core_models, mnist_test):
    from capsviewer.analysis.inspection import cached_predictions, predict_all

    model, images = core_models["cnn"], mnist_test.images[:300]
    first = cached_predictions(model, images, "key", tmp_path)
    np.testing.assert_array_equal(first, predict_all(model, images))
    assert (tmp_path / "key.npy").exists()
    calls = []
    second = cached_predictions(model, images, "key", tmp_path, should_stop=lambda: calls.append(1))
    np.testing.assert_array_equal(second, first)
    assert not calls  # read from disk, the model never ran
    (tmp_path / "key.npy").write_bytes(b"damaged")
    np.testing.assert_array_equal(cached_predictions(model, images, "key", tmp_path), first)


def test_with_only_the_cnn_the_window_asks_for_a_capsnet(qtbot, model_files, data_root, tmp_path):
    window = open_window(qtbot, {"cnn": model_files["cnn"]}, data_root, tmp_path, wait=False)
    try:
        qtbot.waitUntil(lambda: "cnn" in window.session.models and window.image is not None
                        and window.is_idle(), timeout=20000)
        assert "No CapsNet loaded" in window.status_text.text()
        assert "CapsNet: not loaded" in window.prediction_view.headline.text()
        assert window.inspection is None
    finally:
        window.shutdown()



def test_routing_lab_builds_without_torch_compile_machinery():
    """torch._dynamo takes 1.7 s to import; the lab's Jacobians once pulled it in through
    torch.func, on the UI thread while the window was built. (torchvision imports it too,
    but in the worker that loads the test set.)"""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from PySide6.QtCore import QCoreApplication, QEvent\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from capsviewer.app.views.routing_lab_view import RoutingLabView\n"
        "app = QApplication([])\n"
        "lab = RoutingLabView(); lab.show(); app.processEvents()\n"
        "print(lab.state is not None, sorted(m for m in sys.modules if m.startswith('torch._dynamo')))\n"
        # Delete the widget while Qt is still whole (as the app does): left to interpreter
        # teardown, the script segfaulted in 7 of 20 runs.
        "lab.close(); lab.deleteLater()\n"
        "QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True []"


def test_a_fashion_model_switches_the_window_to_fashion_mnist(qtbot, window, data_root, tmp_path):
    """Models of one dataset at a time: a Fashion-MNIST checkpoint brings its test set and class
    names and unloads the MNIST models; the Dataset menu goes back."""
    from capsviewer.data import DatasetUnavailable, load_dataset
    from capsviewer.models import build_model
    from capsviewer.training import save_checkpoint

    try:
        fashion = load_dataset("fashion-mnist", False, str(data_root), download=False)
    except DatasetUnavailable:
        pytest.skip("Fashion-MNIST is not on this machine")
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "cnn-fashion.safetensors", build_model("cnn"),
                           {"dataset": {"name": "fashion-mnist"}})
    window.session.load_checkpoint(path)
    qtbot.waitUntil(lambda: window.session.test_set is not None and window.is_idle()
                    and window.session.test_set.name == "fashion-mnist"
                    and "cnn" in window.session.models, timeout=30000)
    qtbot.waitUntil(lambda: "CNN:" in window.prediction_view.headline.text()
                    and window.is_idle(), timeout=10000)
    assert set(window.session.models) == {"cnn"} and window.session.dataset == "fashion-mnist"
    assert window.menu_actions["&Model/Data&set/Fashion-MNIST"].isChecked()
    assert window.windowTitle() == "capsviewer · Fashion-MNIST"
    expected = inspect_cnn(load_checkpoint(path).model, fashion.images[0, 0])
    name = fashion.classes[expected.prediction]
    assert f"CNN: {name} (p = " in window.prediction_view.headline.text()
    assert window.image.label == int(fashion.labels[0])
    window.set_dataset("mnist")
    qtbot.waitUntil(lambda: window.session.test_set is not None and window.is_idle()
                    and window.session.test_set.name == "mnist", timeout=30000)
    assert window.session.dataset == "mnist" and window.menu_actions["&Model/Data&set/MNIST"].isChecked()
    assert "cnn" not in window.session.models or window.session.models["cnn"].dataset == "mnist"


def test_routing_exports_as_an_animated_gif_in_the_background(qtbot, window, tmp_path,
                                                             monkeypatch):
    """One frame per routing iteration (R = 5 here), encoded off the UI thread; the iteration
    on screen comes back afterwards."""
    from capsviewer.app import export

    encoded_on = []
    write_gif = export.write_gif
    monkeypatch.setattr(export, "write_gif", lambda *args, **kwargs: (
        encoded_on.append(threading.current_thread()), write_gif(*args, **kwargs))[1])
    window.on_routing_tab()  # as File ▸ Export routing animation does
    window.routing_view.iterations_spin.setValue(5)
    settle(qtbot, window, lambda: len(window.inspection.iterations) == 5)
    window.routing_view.set_iteration(2)
    path = tmp_path / "routing.gif"
    widget = window.routing_view.animation_widget()
    # a window opened narrower than its minimum widens at its next layout pass: measure after
    qtbot.waitUntil(lambda: window.width() >= window.minimumSizeHint().width())
    size = (widget.height(), widget.width())
    window.controller.export_animation(window.routing_view, path)
    assert window.state.export.pending and window.export_progress.isVisible()
    qtbot.waitUntil(lambda: not window.state.export.pending, timeout=60000)
    assert window.state.export.value == [path] and not window.state.export.error
    assert encoded_on and encoded_on[0] is not threading.main_thread()
    assert window.routing_view.iteration == 2 and window.state.routing_step == 2
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 5 and gif.info.get("loop") == 0
        frames = []
        for n in range(gif.n_frames):
            gif.seek(n)
            frames.append(np.asarray(gif.convert("RGB"), dtype=np.int16))
    # the routing picture (it may lose a few rows while the status bar shows the progress)
    assert frames[0].shape[1] == size[1] and 0.8 * size[0] <= frames[0].shape[0] <= size[0]
    assert all(np.abs(a - b).max() > 0 for a, b in zip(frames, frames[1:]))  # routing moves
    assert f"Exported {path}" in window.status_text.text()


def test_tooltips_render_the_notation_and_the_formulas_window_scrolls(qtbot, window):
    tip = window.routing_view.history.toolTip()
    assert tip.startswith("<qt>") and "c<sub>ij</sub>" in tip and "û<sub>j|i</sub>" in tip
    tab_tip = window.tabs.tabToolTip(window.tabs.indexOf(window.pose_view))
    assert "x<sub>rec</sub>" in tab_tip and "x̂" not in tab_tip  # no combining hat to drop
    from capsviewer.app.formulas_window import FORMULA_SHEET

    window.menu_actions["&Help/&Formulas"].trigger()
    dialog = window.formulas_window
    qtbot.addWidget(dialog)
    try:
        qtbot.waitUntil(lambda: all(label.pixmap() is not None and not label.pixmap().isNull()
                                    for label in dialog.formula_labels), timeout=30000)
        assert dialog.isVisible() and dialog.height() <= 700  # fits a 800 px screen, scrolls
        for formula, label in zip(FORMULA_SHEET, dialog.formula_labels):
            assert "_" not in formula.heading  # plain words, not code identifiers
            image = label.pixmap().toImage()
            assert image.width() > 20
            clear = sum(image.pixelColor(x, y).alpha() == 0
                        for x in range(0, image.width(), 2) for y in range(0, image.height(), 2))
            assert clear > 0.5 * (image.width() // 2) * (image.height() // 2)  # transparent
    finally:
        dialog.close()


def test_the_overlap_tabs_news_waits_for_its_tab(window):
    """The Overlap tab loads its model in the background; its status line is said while that
    tab is shown, never over the Prediction tab the user is reading."""
    window.tabs.setCurrentWidget(window.prediction_view)
    before = window.status_text.text()
    window.overlap_session.status.emit("Overlap: CapsNet · test 76.03 %")
    assert window.status_text.text() == before
    window.tabs.setCurrentWidget(window.overlap_view)
    window.overlap_session.status.emit("Overlap: CapsNet · test 76.03 %")
    assert window.status_text.text() == "Overlap: CapsNet · test 76.03 %"


def test_a_routing_tab_built_late_draws_the_panels_already_computed(qtbot, window_models,
                                                                     data_root, tmp_path):
    """Tabs are built when first needed: the Routing tab, built after the diagnostics and
    the ablation of the input were computed, draws them at once (not "no analysis yet")."""
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(data_root=str(data_root), settings=settings, show_errors=False,
                        start=False)
    qtbot.addWidget(window)
    window.show()
    window.start(window_models, download=False, predict_test_set=False, on_demand=True)
    settle(qtbot, window, lambda: window.inspection is not None
           and window.state.diagnostics.ready and window.state.ablation.ready)
    from capsviewer.app.workbench import build_view

    view = build_view(window, "routing_view", when_shown=True)  # as the window builds a tab
    qtbot.addWidget(view)
    assert view.diagnostics_view.diagnostics is window.state.diagnostics.value
    assert view.ablation_view.ablation is window.state.ablation.value


def test_another_r_keeps_the_ablation_of_the_image(qtbot, window):
    """The ablation depends on the image and the models, not on R: changing R redraws the
    routing but the Ablation panel keeps showing the image's ablation."""
    window.tabs.setCurrentWidget(window.routing_view)
    settle(qtbot, window, lambda: window.state.ablation.ready)
    ablation = window.state.ablation.value
    window.routing_view.iterations_spin.setValue(window.state.routing_iterations + 1)
    settle(qtbot, window, lambda: window.state.analysis.ready)
    assert window.state.ablation.value is ablation
    assert window.routing_view.ablation_view.ablation is ablation

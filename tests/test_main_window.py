"""The whole window, end to end: models load in the background, views agree with the core."""

import time
import xml.etree.ElementTree as ElementTree

import numpy as np
import pyqtgraph as pg
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QPoint, QSettings, Qt
from PySide6.QtTest import QTest

from capsviewer.analysis.inspection import inspect_capsnet, inspect_cnn
from capsviewer.analysis.pose import reconstruct
from capsviewer.app.main_window import MainWindow
from capsviewer.training import describe_device, load_checkpoint, select_device
from capsviewer.training.model_files import SHIPPED_MODELS, find_models


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
        qtbot.waitUntil(lambda: set(window.session.models) == set(models)
                        and window.inspection is not None and window.is_idle(), timeout=30000)
    return window


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
    with qtbot.waitSignal(window.analysis_shown, timeout=10000):
        QTest.keyClick(window, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)
    assert window.image.index == 1
    expected = inspect_capsnet(core_models["capsnet"], mnist_test.images[1, 0])
    np.testing.assert_allclose(window.inspection.lengths, expected.lengths, atol=1e-6)


def test_pose_slider_drives_the_decoder(qtbot, window, core_models):
    view = window.pose_view
    window.tabs.setCurrentWidget(view)
    qtbot.waitUntil(lambda: view.current_pose() is not None, timeout=5000)
    qtbot.wait(200)  # the first reconstruction (offsets all 0) arrives
    before = view.reconstruction_item.image.copy()
    with qtbot.waitSignal(window.reconstruction_shown, timeout=5000):
        view.set_offset(5, 0.25)
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


def test_more_iterations_are_recomputed_off_the_ui_thread(qtbot, window, core_models, mnist_test):
    with qtbot.waitSignal(window.analysis_shown, timeout=10000):
        window.routing_view.iterations_spin.setValue(6)
    assert len(window.inspection.iterations) == 6
    assert window.routing_view.iteration_count == 6
    expected = inspect_capsnet(core_models["capsnet"], mnist_test.images[0, 0], iterations=6)
    np.testing.assert_allclose(window.inspection.lengths, expected.lengths, atol=1e-6)


def test_rotation_sweep_gives_curves_for_both_models(qtbot, window):
    angles = np.arange(-180, 180, 15)
    with qtbot.waitSignal(window.sweep_shown, timeout=20000) as blocker:
        window.rotation_view.sweep_requested.emit(angles)
    sweep = blocker.args[0]
    np.testing.assert_array_equal(sweep.angles, angles)
    view = window.rotation_view
    for curve in (view.cnn_curve, view.capsule_curve):
        x, y = curve.getData()
        np.testing.assert_array_equal(x, angles)
        assert np.isfinite(y).all()
    ref = sweep.reference_class
    np.testing.assert_allclose(view.cnn_curve.getData()[1], sweep.cnn_probabilities[:, ref])
    np.testing.assert_allclose(view.capsule_curve.getData()[1], sweep.capsule_lengths[:, ref])


def test_drawing_and_image_files_are_classified_and_bad_files_reported(qtbot, window, tmp_path,
                                                                      core_models, mnist_test):
    inputs = window.input_view
    inputs._tabs.setCurrentWidget(inputs._drawing)
    canvas = inputs._canvas
    with qtbot.waitSignal(window.analysis_shown, timeout=10000):
        QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         QPoint(140, 40))
        for y in range(60, 240, 20):
            QTest.mouseMove(canvas, QPoint(140, y))
        QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                           QPoint(140, 240))
    assert window.image.source == "drawing"
    drawn = inspect_capsnet(core_models["capsnet"], window.image.pixels)
    np.testing.assert_allclose(window.inspection.lengths, drawn.lengths, atol=1e-6)

    digit = tmp_path / "digit.png"
    Image.fromarray(255 - mnist_test.images[7, 0].numpy()).resize((112, 112)).save(digit)
    with qtbot.waitSignal(window.analysis_shown, timeout=10000):
        assert inputs.open_file(digit)
    assert window.image.source.endswith("digit.png")
    shown = window.image

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    assert not inputs.open_file(broken)
    assert window.errors and "broken.png" in window.errors[-1][1]
    assert window.image is shown  # nothing lost
    assert "broken.png" in window.status_text.text()


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


def test_closing_interrupts_the_background_test_set_pass(qtbot, window_models, data_root, tmp_path):
    window = open_window(qtbot, window_models, data_root, tmp_path, wait=False,
                         predict_test_set=True)
    qtbot.waitUntil(lambda: window.batch.pending() > 0 and window.batch._running is not None,
                    timeout=20000)
    start = time.perf_counter()
    window.close()
    assert time.perf_counter() - start < 2.0
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
    assert window.dataset_actions["fashion-mnist"].isChecked()
    assert window.windowTitle() == "capsviewer · Fashion-MNIST"
    expected = inspect_cnn(load_checkpoint(path).model, fashion.images[0, 0])
    name = fashion.classes[expected.prediction]
    assert f"CNN: {name} (p = " in window.prediction_view.headline.text()
    assert window.image.label == int(fashion.labels[0])
    window.set_dataset("mnist")
    qtbot.waitUntil(lambda: window.session.test_set is not None and window.is_idle()
                    and window.session.test_set.name == "mnist", timeout=30000)
    assert window.session.dataset == "mnist" and window.dataset_actions["mnist"].isChecked()
    assert "cnn" not in window.session.models or window.session.models["cnn"].dataset == "mnist"

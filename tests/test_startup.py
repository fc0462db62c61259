"""The window answers at once: ``capsviewer --help`` and the window's frame need no torch; the
window is on screen, browsable and drawable before the models load; each view is built when
first needed; the shipped models' test-set predictions ship with them, so "Misclassified
only" is there at once, and the filter says why whenever it is not. (Timings are in
benchmarks/app_latency.py; these tests check what happens, and in which order.)"""

import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from capsviewer.analysis.inspection import predict_all
from capsviewer.analysis.shipped_predictions import file_sha256, shipped_predictions
from capsviewer.data import load_sample, read_test_set
from capsviewer.training import load_checkpoint
from capsviewer.training.model_files import SHIPPED_MODELS, find_models

REPO = Path(__file__).resolve().parents[1]

MNIST_MODELS = {"capsnet", "cnn", "em-capsnet"}  # the shipped MNIST models


def _python(code: str, tmp_path: Path, timeout: int = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen",
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=timeout)


def _settings(tmp_path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture(scope="module")
def shipped():
    models = find_models("mnist", [Path(SHIPPED_MODELS)])
    if set(models) != MNIST_MODELS:
        pytest.skip("the shipped models are not in this checkout")
    return models


def test_help_and_the_app_options_need_no_torch(tmp_path):
    run = _python(
        "import sys\n"
        "from capsviewer.cli import build_parser, main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "build_parser(commands=()).parse_args(['--data-root', 'x', '--device', 'cpu'])\n"
        "print('TORCH', 'torch' in sys.modules, file=sys.stderr)\n", tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "train" in run.stdout and "--data-root" in run.stdout  # the whole help, sub-commands too
    assert "TORCH False" in run.stderr
    sub = _python("from capsviewer.cli import main\nmain(['info', '--help'])\n", tmp_path)
    assert sub.stdout.startswith("usage: capsviewer info") and "--json" in sub.stdout


def test_the_apps_openmp_threads_sleep_while_waiting_unless_the_user_chose(tmp_path):
    code = "import os, capsviewer.app; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    for chosen, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**env, "PYTHONPATH": str(REPO)}
                             | ({"OMP_WAIT_POLICY": chosen} if chosen else {}), timeout=60)
        assert run.stdout.strip() == expected, run.stderr


def test_a_missing_model_file_is_a_command_line_error(tmp_path, capsys):
    from capsviewer.cli import main

    assert main(["--model", str(tmp_path / "nowhere.safetensors")]) == 2
    assert "no such model file" in capsys.readouterr().err


def test_the_window_is_painted_before_torch_is_imported_and_predicts_after(tmp_path):
    """The app as ``capsviewer`` opens it, in a new process: the window is painted before
    torch is imported; the first prediction comes after, on the same window."""
    code = """
import sys
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication
import capsviewer.app.main_window as main_window
from capsviewer.cli import main
events = []
show = main_window.MainWindow.show
def watched(window):  # the window `capsviewer` opens
    show(window)
    class Watch(QObject):
        def eventFilter(self, obj, event):
            if event.type() == QEvent.Type.Paint and not events:
                events.append(("painted", "torch" in sys.modules, window.is_started))
            return False
    window.watch = Watch()
    QApplication.instance().installEventFilter(window.watch)
    def shown(_):
        events.append(("prediction", "torch" in sys.modules, window.inspection.prediction,
                       window.image.index))
        QTimer.singleShot(0, window.close)
    window.analysis_shown.connect(shown)
    QTimer.singleShot(120000, window.close)
main_window.MainWindow.show = watched
main(["--device", "cpu"])
print(events)
"""
    run = _python(code, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    events = eval(run.stdout.strip().splitlines()[-1])
    (first, torch_at_paint, started), (last, torch_at_prediction, prediction, index) = events
    assert first == "painted" and torch_at_paint is False and started is False
    assert last == "prediction" and torch_at_prediction is True
    assert (prediction, index) == (7, 0)  # test image 0 is a 7


def test_the_browser_and_canvas_work_before_the_models_load(qtbot, tmp_path, shipped):
    """A frame without models: test images can be browsed; Open model and the routing keys
    wait for the start; the image chosen meanwhile is the one the models then analyse."""
    from capsviewer.app.main_window import MainWindow

    window = MainWindow(settings=_settings(tmp_path), show_errors=False, start=False)
    qtbot.addWidget(window)
    window.show()
    try:
        window.show_test_arrays(read_test_set("mnist", tmp_path))  # the sample: no MNIST here
        assert window.state is None and not window.is_started
        assert window.statusBar().data_label.text().startswith("1,000-image sample")
        assert not window.menu_actions["&File/&Open model…"].isEnabled()
        assert not window.menu_actions["&Navigate/Next routing &iteration"].isEnabled()
        assert "loading the models" in window.input_view._misclassified.text()
        with pytest.raises(RuntimeError, match="not started"):
            window.view("routing_view")
        window.menu_actions["&Navigate/&Next image"].trigger()
        window.input_view.next_image()
        assert window.input_view.current_image().index == 2
        window.start(shipped, predict_test_set=False, on_demand=True)
        assert window.menu_actions["&File/&Open model…"].isEnabled()
        assert window.state.test_set.is_sample and len(window.state.test_set) == 1000
        assert window.image.index == 2  # kept, not reset to image 0
        qtbot.waitUntil(lambda: window.inspection is not None and window.is_idle(), timeout=60000)
        assert window.inspection.prediction == window.image.label == 1  # test image 2 is a 1
        assert window.input_view.current_image().index == 2
    finally:
        window.shutdown()


def test_each_view_is_built_when_first_needed_and_draws_while_shown(qtbot, tmp_path, shipped,
                                                                     data_root):
    from capsviewer.app.main_window import MainWindow

    window = MainWindow(data_root=str(data_root), settings=_settings(tmp_path), show_errors=False,
                        start=False)
    qtbot.addWidget(window)
    window.show()
    try:
        window.start(shipped, predict_test_set=False, on_demand=True)
        assert window.views_built() == ["prediction_view"]  # the tab on screen, only
        window.tabs.setCurrentIndex(3)  # Rotation: built as it is shown, in its place
        assert "rotation_view" in window.views_built()
        assert window.tabs.currentWidget() is window.rotation_view
        assert window.tabs.tabText(3) == "Rotation"
        qtbot.waitUntil(lambda: len(window.views_built()) == 7, timeout=60000)  # when quiet
        assert [window.tabs.widget(i) for i in range(7)] == [
            window.prediction_view, window.routing_view, window.pose_view, window.rotation_view,
            window.overlap_view, window.lab_view, window.training_view]
        qtbot.waitUntil(lambda: window.inspection is not None and window.is_idle(), timeout=60000)
        assert window.routing_view.iteration_count == 3  # built late, shows the analysis
        rotated = window.rotation_view.image_item.image.copy()  # image 0, rotated by 0°

        window.tabs.setCurrentIndex(0)
        window.input_view.next_image()
        qtbot.waitUntil(lambda: window.state.rotated.ready and window.is_idle(), timeout=60000)
        assert "CapsNet: 2" in window.prediction_view.headline.text()  # on screen: drawn
        assert np.array_equal(window.rotation_view.image_item.image, rotated)  # hidden: held
        window.tabs.setCurrentWidget(window.rotation_view)
        assert not np.array_equal(window.rotation_view.image_item.image, rotated)  # now drawn
        np.testing.assert_array_equal(window.rotation_view.capsule_bars.opts["height"],
                                      window.state.rotated.value[1])  # image 1's lengths
    finally:
        window.shutdown()


def test_open_window_shows_the_frame_then_starts_behind_it(qtbot, tmp_path, data_root):
    from capsviewer.app import open_window

    args = Namespace(model=[tmp_path / "broken.safetensors"], data_root=str(data_root),
                     device="cpu", theme=None)
    (tmp_path / "broken.safetensors").write_bytes(b"not a checkpoint")
    app, window = open_window(args, settings=_settings(tmp_path))
    window.show_errors = False
    qtbot.addWidget(window)
    try:
        assert window.isVisible() and not window.is_started  # models load behind the frame
        qtbot.waitUntil(lambda: window.inspection is not None and window.is_idle(), timeout=60000)
        assert set(window.state.models) == MNIST_MODELS  # found as the app finds them
        assert len(window.state.test_set) == 10_000
        title, message = window.errors[0]
        assert title == "Could not load model" and "broken.safetensors" in message
    finally:
        window.shutdown()


def test_shipped_predictions_are_the_models_own_and_checked_before_use(shipped, data_root):
    """They equal what the app computes (predict_all at the model's own R), for the sample
    and the full test set; another checkpoint, another R or other images get none."""
    from capsviewer.data import load_dataset

    sample, test = load_sample("mnist"), load_dataset("mnist", train=False, root=data_root,
                                                      download=False)
    for name in ("capsnet", "cnn"):  # the models the test-set filter uses
        path = shipped[name]
        model = load_checkpoint(path).model.eval()
        r = model.config.routing_iterations if name == "capsnet" else None
        digest = file_sha256(path)
        on_sample = shipped_predictions(digest, sample.checksum(), r)
        full = shipped_predictions(digest, test.checksum(), r)
        assert on_sample.shape == (1000,) and full.shape == (10_000,)
        np.testing.assert_array_equal(full[:1000], on_sample)
        np.testing.assert_array_equal(on_sample[:200], predict_all(model, sample.images[:200], 100))
        accuracy = (full == test.labels.numpy()).mean()
        assert accuracy == pytest.approx(load_checkpoint(path).metadata["metrics"]["test_accuracy"],
                                         abs=1e-4)
        assert shipped_predictions("0" * 64, sample.checksum(), r) is None
        assert shipped_predictions(digest, sample.subset(10).checksum(), r) is None
    caps = file_sha256(shipped["capsnet"])
    assert shipped_predictions(caps, sample.checksum(), 5) is None  # another R: computed


def test_the_misclassified_filter_is_there_at_once_and_says_why_when_not(
        qtbot, tmp_path, shipped, data_root, monkeypatch):
    """With the shipped models it is enabled without classifying a single image; at another
    R it says it is computing, how far it got and why it waits."""
    import capsviewer.analysis.inspection as inspection
    import capsviewer.app.controller as controller
    from capsviewer.app.main_window import MainWindow

    computed = []

    def counting(model, images, *args, **kwargs):
        computed.append(len(images))
        return predict_all(model, images, *args, **kwargs)

    monkeypatch.setattr(controller, "predict_all", counting)
    monkeypatch.setattr(inspection, "predict_all", counting)  # used by cached_predictions
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nothing cached
    window = MainWindow(shipped, data_root=str(data_root), settings=_settings(tmp_path),
                        show_errors=False)
    qtbot.addWidget(window)
    check = window.input_view._misclassified
    try:
        qtbot.waitUntil(lambda: window.state.predictions.ready, timeout=60000)
        assert check.isEnabled() and check.text() == "Misclassified only (CapsNet, R = 3)"
        assert "38 of 10000 test images misclassified" == check.toolTip()  # 99.62 %
        assert computed == []  # read from the shipped file, not computed
        waiting = []
        window.state.events.predictions.connect(lambda result: result.pending and waiting.append(
            (check.isEnabled(), check.text(), check.toolTip())))
        with window.state.events.paused():  # one change: a quick pass at another R
            window.state.test_set = window.state.test_set.subset(600, seed=0)
            window.state.iterations = 2
        qtbot.waitUntil(lambda: window.state.predictions.ready, timeout=120000)
        assert set(computed) == {600} and check.text() == "Misclassified only (CapsNet, R = 2)"
        assert waiting and not any(enabled for enabled, _, _ in waiting)
        texts = {text for _, text, _ in waiting}
        assert {"Misclassified only (computing… 0%)",
                "Misclassified only (computing… 50%)"} <= texts  # 300 of 600 done
        assert "The CapsNet is classifying the 600 test images (300 done)" in waiting[-1][2] \
            or any("(300 done)" in tip for _, _, tip in waiting)
    finally:
        window.shutdown()


def test_the_filter_says_a_model_is_needed(qtbot, tmp_path, data_root):
    from capsviewer.app.main_window import MainWindow

    window = MainWindow({}, data_root=str(data_root), settings=_settings(tmp_path),
                        show_errors=False)
    qtbot.addWidget(window)
    try:
        qtbot.waitUntil(lambda: window.state.test_set is not None and window.is_idle(),
                        timeout=30000)
        check = window.input_view._misclassified
        assert not check.isEnabled() and check.text() == "Misclassified only (needs a model)"
        assert "Open or train a model" in check.toolTip()
    finally:
        window.shutdown()

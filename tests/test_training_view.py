"""Training from the window: the runner trains in a thread-pool worker, the view draws it."""

import json
import re
import time

import numpy as np
import pytest
import safetensors
import torch
from PySide6.QtCore import Qt, QThreadPool, QTimer

from capsviewer.app.training_runner import TrainingRunner
from capsviewer.app.views.training_view import TrainingView, default_checkpoint
from capsviewer.training import BatchProgress, TrainConfig, TrainingFinished
from capsviewer.training.checkpoints import METADATA_KEY

LEFT = Qt.MouseButton.LeftButton
PROGRESS_FORMAT = re.compile(r"epoch \d+/\d+ · batch \d+/\d+ · [\d,]+ img/s · ETA \d\d:\d\d")


@pytest.fixture
def trainer_ui(qtbot, data_root):
    """A view wired to a runner that never downloads; the worker is done when the test ends."""
    view = TrainingView()
    qtbot.addWidget(view)
    view.set_data_root(data_root)
    runner = TrainingRunner(download=False)
    view.connect_runner(runner)
    yield view, runner
    if runner.is_running():
        runner.cancel()
    qtbot.waitUntil(lambda: not runner.is_running(), timeout=10_000)
    assert runner.wait(5000)
    pool = QThreadPool.globalInstance()
    assert pool.waitForDone(1000) and pool.activeThreadCount() == 0


def cnn_config(tmp_path, **overrides):
    values = dict(model="cnn", subset=256, test_subset=200, batch_size=32, epochs=2,
                  device="cpu", output=str(tmp_path / "cnn.safetensors"))
    values.update(overrides)
    return TrainConfig(**values)


def saved_metadata(path) -> dict:
    """The capsviewer metadata of a checkpoint, read straight from its safetensors header."""
    with safetensors.safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()[METADATA_KEY])


def record(signal) -> list:
    seen = []
    signal.connect(seen.append)
    return seen


def test_cnn_run_from_the_start_button(qtbot, trainer_ui, tmp_path):
    view, runner = trainer_ui
    view.set_config(cnn_config(tmp_path))
    curve_lengths = []
    runner.progress.connect(lambda _: curve_lengths.append(len(view.loss_curve.getData()[0])))
    progress, epochs = record(runner.progress), record(runner.epoch_done)
    finished = record(runner.finished)
    with qtbot.waitSignal(view.model_ready, timeout=20_000) as ready:
        qtbot.mouseClick(view.start_button, LEFT)
        assert runner.is_running() and not view.start_button.isEnabled()
    assert ready.args == [str(tmp_path / "cnn.safetensors")]

    assert len(progress) >= 4 and all(isinstance(p, BatchProgress) for p in progress)
    assert progress[-1].epoch == 2 and progress[-1].batch == progress[-1].batches == 8
    assert curve_lengths == list(range(1, len(progress) + 1))  # the curve grows with each event
    assert PROGRESS_FORMAT.fullmatch(view._progress_text)
    assert [e.epoch for e in epochs] == [1, 2]
    assert all(e.checkpoint == str(tmp_path / "cnn.safetensors") for e in epochs)
    meta = saved_metadata(tmp_path / "cnn.safetensors")
    assert meta["epoch"] == 2 and meta["metrics"]["test_accuracy"] == epochs[-1].test_accuracy
    assert meta["dataset"]["train_images"] == 256

    assert len(finished) == 1 and finished[0].completed and finished[0].epochs_done == 2
    assert not runner.is_running() and view.start_button.isEnabled()
    assert view._log.count() == 3  # two epochs and the summary
    header, rows = view.export_tables()["training-history"]
    assert header[0] == "epoch" and [r[4] for r in rows] == [e.test_accuracy for e in epochs]
    steps, test_accuracy = view.accuracy_test_epochs.getData()
    assert list(steps) == [8, 16] and list(test_accuracy) == [e.test_accuracy for e in epochs]
    assert len(view.export_tables()["training-batch-loss"][1]) == len(progress)
    assert set(view.export_scenes()) == {"training-loss", "training-accuracy"}


def test_capsnet_trains_a_small_subset(qtbot, trainer_ui, tmp_path, mnist_train, mnist_test):
    view, runner = trainer_ui
    view.set_config(TrainConfig(model="capsnet", model_config={"routing_iterations": 2},
                                subset=64, test_subset=100, batch_size=32, epochs=1,
                                device="cpu", output=str(tmp_path / "caps.safetensors")))
    config = view.config()
    assert config.model_config == {"routing_iterations": 2} and config.eval_batch_size == 100
    epochs = record(runner.epoch_done)
    with qtbot.waitSignal(view.model_ready, timeout=30_000) as ready:
        runner.start(config, mnist_train, mnist_test)
    assert ready.args == [str(tmp_path / "caps.safetensors")]
    assert len(epochs) == 1 and 0.0 <= epochs[0].test_accuracy <= 1.0
    meta = saved_metadata(ready.args[0])
    assert meta["train_config"]["model_config"] == {"routing_iterations": 2}
    assert len(view.loss_curve.getData()[0]) == 2  # two batches, both delivered


def test_cancel_stops_within_a_second(qtbot, trainer_ui, tmp_path, mnist_train, mnist_test):
    view, runner = trainer_ui
    runner.start(cnn_config(tmp_path, subset=20_000, epochs=3), mnist_train, mnist_test)
    progress = record(runner.progress)
    qtbot.waitUntil(lambda: len(progress) >= 3, timeout=10_000)
    with qtbot.waitSignal(runner.finished, timeout=5000) as done:
        started = time.perf_counter()
        qtbot.mouseClick(view.cancel_button, LEFT)
        assert runner.state == "cancelling" and not view.cancel_button.isEnabled()
    assert time.perf_counter() - started < 1.0
    assert runner.wait(1000) and not runner.is_running()
    finished: TrainingFinished = done.args[0]
    assert not finished.completed and finished.epochs_done == 0
    assert view.start_button.isEnabled()


def test_cancel_during_test_evaluation(qtbot, trainer_ui, tmp_path, mnist_train, mnist_test):
    view, runner = trainer_ui
    # 10,000 test images take seconds; cancel as soon as the last training batch is reported
    config = cnn_config(tmp_path, subset=64, test_subset=None, epochs=1, eval_batch_size=100)
    epochs = record(runner.epoch_done)
    cancelled_at = []

    def on_progress(event):
        if event.batch == event.batches and not cancelled_at:
            cancelled_at.append(time.perf_counter())
            runner.cancel()

    runner.progress.connect(on_progress)
    with qtbot.waitSignal(runner.finished, timeout=10_000) as done:
        runner.start(config, mnist_train, mnist_test)
    assert time.perf_counter() - cancelled_at[0] < 1.0
    assert not done.args[0].completed and epochs == []
    assert not (tmp_path / "cnn.safetensors").exists()
    assert runner.wait(1000)


def test_ui_stays_responsive_and_progress_is_throttled(qtbot, trainer_ui, tmp_path,
                                                      mnist_train, mnist_test):
    view, runner = trainer_ui
    ticks = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    progress = record(runner.progress)
    # batches of 2 may run faster than 20 a second: the runner thins them
    runner.start(cnn_config(tmp_path, subset=20_000, batch_size=2, epochs=1),
                 mnist_train, mnist_test)
    qtbot.waitUntil(lambda: len(progress) >= 1, timeout=10_000)
    timer.start()
    first = len(progress)
    started = time.perf_counter()
    qtbot.wait(3000)
    seconds = time.perf_counter() - started
    timer.stop()
    runner.cancel()
    lateness = np.diff(ticks) - 0.020
    assert len(ticks) > 50 and lateness.max() < 0.100, f"max lateness {lateness.max():.3f} s"
    updates = len(progress) - first
    assert 10 <= updates <= 22 * seconds
    qtbot.waitUntil(lambda: not runner.is_running(), timeout=5000)


def test_pause_and_resume(qtbot, trainer_ui, tmp_path, mnist_train, mnist_test):
    view, runner = trainer_ui
    states = record(runner.state_changed)
    progress = record(runner.progress)
    runner.start(cnn_config(tmp_path, subset=20_000, epochs=1), mnist_train, mnist_test)
    qtbot.waitUntil(lambda: len(progress) >= 2, timeout=10_000)
    qtbot.mouseClick(view.pause_button, LEFT)
    assert runner.state == "paused" and view.pause_button.text() == "Resume"
    qtbot.wait(300)  # the batch in flight finishes and is reported
    paused_count = len(progress)
    qtbot.wait(500)
    assert len(progress) == paused_count
    qtbot.mouseClick(view.pause_button, LEFT)
    assert runner.state == "running" and view.pause_button.text() == "Pause"
    qtbot.waitUntil(lambda: len(progress) > paused_count + 2, timeout=5000)
    assert progress[-1].batch > progress[paused_count - 1].batch
    with qtbot.waitSignal(runner.finished, timeout=5000):
        runner.cancel()
    assert states == ["running", "paused", "running", "cancelling", "idle"]


def test_missing_dataset_fails_with_a_message(qtbot, trainer_ui, tmp_path):
    view, runner = trainer_ui
    empty = tmp_path / "no-data"
    empty.mkdir()
    view.set_data_root(empty)
    view.set_config(cnn_config(tmp_path))
    finished = record(runner.finished)
    with qtbot.waitSignal(runner.failed, timeout=10_000) as failure:
        view.start_button.click()
    message = failure.args[0]
    assert "MNIST is not available" in message and str(empty / "MNIST" / "raw") in message
    assert finished == [] and not runner.is_running() and runner.wait(1000)
    assert view.start_button.isEnabled() and "failed" in view._log.item(0).text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_fails(qtbot, trainer_ui, tmp_path, mnist_train, mnist_test):
    view, runner = trainer_ui
    with qtbot.waitSignal(runner.failed, timeout=10_000) as failure:
        runner.start(cnn_config(tmp_path, device="cuda"), mnist_train, mnist_test)
    assert failure.args[0].startswith("Device not available") and "CUDA" in failure.args[0]


def test_form_follows_the_model(qtbot, tmp_path):
    view = TrainingView()
    qtbot.addWidget(view)
    devices = [view._device.itemText(i) for i in range(view._device.count())]
    assert devices[:2] == ["auto", "cpu"] and (len(devices) > 2) == torch.cuda.is_available()
    assert view._iterations.isEnabled()
    assert view.config().output == str(default_checkpoint("capsnet", "mnist"))
    view._model.setCurrentIndex(view._model.findData("cnn"))
    assert not view._iterations.isEnabled()
    config = view.config()
    assert config.model == "cnn" and config.model_config == {}
    assert config.output.endswith("checkpoints/cnn-mnist.safetensors")
    assert config.subset is None and config.test_subset is None
    view._output.setText(str(tmp_path / "mine.safetensors"))
    view._output.textEdited.emit(view._output.text())
    view._dataset.setCurrentIndex(view._dataset.findData("fashion-mnist"))
    assert view.config().output == str(tmp_path / "mine.safetensors")
    assert "max(0, 0.9 − ‖v_k‖)²" in view.loss_plot.toolTip()


def test_matrix_capsnet_trains_from_the_form(qtbot, trainer_ui, tmp_path, mnist_train,
                                             mnist_test):
    """Choosing matrix capsules sets its own default of 2 EM iterations, and a run trains it."""
    view, runner = trainer_ui
    view.set_config(TrainConfig(model="cnn", subset=64, test_subset=100, batch_size=32,
                                epochs=1, device="cpu", output=str(tmp_path / "em.safetensors")))
    view._model.setCurrentIndex(view._model.findData("matrix-capsnet"))
    config = view.config()
    assert config.model == "matrix-capsnet"
    assert config.model_config == {"routing_iterations": 2}
    with qtbot.waitSignal(view.model_ready, timeout=60_000) as ready:
        runner.start(config, mnist_train, mnist_test)
    meta = saved_metadata(ready.args[0])
    assert meta["architecture"] == "matrix-capsnet"
    assert meta["train_config"]["model_config"] == {"routing_iterations": 2}

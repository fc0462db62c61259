"""Training from the window: the runner trains in a thread-pool worker, the view draws it."""

import json
import re
from datetime import datetime

import pytest
import safetensors
import torch
from PySide6.QtCore import Qt, QThreadPool

from capsviewer.app.training_runner import TrainingRunner
from capsviewer.app.views.training_view import TrainingView, default_checkpoint, unused_path
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
    progress_texts = []
    runner.progress.connect(lambda _: progress_texts.append(view._progress_text))
    progress, epochs = record(runner.progress), record(runner.epoch_done)
    finished = record(runner.finished)
    testing = []  # the progress text as each test-pass event arrives (after the view's slot)
    runner.testing.connect(lambda event: testing.append((event, view._progress_text)))
    with qtbot.waitSignal(view.model_ready, timeout=120_000) as ready:
        qtbot.mouseClick(view.start_button, LEFT)
        assert runner.is_running() and not view.start_button.isEnabled()
    assert ready.args == [str(tmp_path / "cnn.safetensors")]

    assert len(progress) >= 4 and all(isinstance(p, BatchProgress) for p in progress)
    assert progress[-1].epoch == 2 and progress[-1].batch == progress[-1].batches == 8
    steps, losses = view.loss_raw.getOriginalDataset()  # every event, drawn in ≤ 10 Hz redraws
    assert list(losses) == [p.loss for p in progress]
    assert PROGRESS_FORMAT.fullmatch(progress_texts[-1])
    last, text = testing[-1]
    assert last.images == last.total == 200 and text == "epoch 2/2 · testing 200/200 test images"
    assert [e.epoch for e in epochs] == [1, 2]
    assert all(e.checkpoint == str(tmp_path / "cnn.safetensors") for e in epochs)
    meta = saved_metadata(tmp_path / "cnn.safetensors")
    assert meta["epoch"] == 2 and meta["metrics"]["test_accuracy"] == epochs[-1].test_accuracy
    assert meta["dataset"]["train_images"] == 256

    assert len(finished) == 1 and finished[0].completed and finished[0].epochs_done == 2
    assert not runner.is_running() and view.start_button.isEnabled()
    assert view._log.count() == 4  # two epochs, the summary and what to do with the model
    bar = view._progress  # the summary, elided to the bar's width, whole in its tooltip
    assert bar.toolTip().startswith("finished after 2 epoch(s)")
    assert bar.toolTip().endswith(str(tmp_path / "cnn.safetensors"))
    assert bar.fontMetrics().horizontalAdvance(bar.text()) <= bar.contentsRect().width()
    assert "Use this model" in view._log.item(3).text()
    header, rows = view.export_tables()["training-history"]
    assert header[0] == "epoch" and [r[4] for r in rows] == [e.test_accuracy for e in epochs]
    steps, test_accuracy = view.accuracy_test_epochs.getData()
    assert list(steps) == [8, 16] and list(test_accuracy) == [e.test_accuracy for e in epochs]
    assert len(view.export_tables()["training-batch-loss"][1]) == len(progress)
    assert set(view.export_scenes()) == {"training-loss", "training-accuracy"}
    # the run's model is offered, not loaded: the window loads it on "Use this model"
    assert view.use_button.isEnabled()
    with qtbot.waitSignal(view.use_model) as chosen:
        qtbot.mouseClick(view.use_button, LEFT)
    assert chosen.args == [str(tmp_path / "cnn.safetensors")]


def test_capsnet_trains_a_small_subset(qtbot, trainer_ui, tmp_path, mnist_train, mnist_test):
    view, runner = trainer_ui
    view.set_config(TrainConfig(model="capsnet", model_config={"routing_iterations": 2},
                                subset=64, test_subset=100, batch_size=32, epochs=1,
                                device="cpu", output=str(tmp_path / "caps.safetensors")))
    config = view.config()
    assert config.model_config == {"routing_iterations": 2, "routing": "dynamic"}
    assert config.eval_batch_size == 100
    epochs = record(runner.epoch_done)
    with qtbot.waitSignal(view.model_ready, timeout=30_000) as ready:
        runner.start(config, mnist_train, mnist_test)
    assert ready.args == [str(tmp_path / "caps.safetensors")]
    assert len(epochs) == 1 and 0.0 <= epochs[0].test_accuracy <= 1.0
    meta = saved_metadata(ready.args[0])
    assert meta["train_config"]["model_config"] == {"routing_iterations": 2,
                                                    "routing": "dynamic"}
    assert len(view.loss_curve.getOriginalDataset()[0]) == 2  # two batches, both delivered


def test_cancel_stops_the_run_in_its_first_epoch(qtbot, trainer_ui, tmp_path, mnist_train,
                                                 mnist_test):
    view, runner = trainer_ui
    runner.start(cnn_config(tmp_path, subset=20_000, epochs=3), mnist_train, mnist_test)
    progress = record(runner.progress)
    qtbot.waitUntil(lambda: len(progress) >= 3, timeout=30_000)
    with qtbot.waitSignal(runner.finished, timeout=60_000) as done:
        qtbot.mouseClick(view.cancel_button, LEFT)
        assert runner.state == "cancelling" and not view.cancel_button.isEnabled()
    assert runner.wait(5000) and not runner.is_running()
    finished: TrainingFinished = done.args[0]
    assert not finished.completed and finished.epochs_done == 0  # 625 batches not run out
    assert progress[-1].epoch == 1 and progress[-1].batch < progress[-1].batches
    assert view.start_button.isEnabled() and not view.use_button.isEnabled()


def test_cancel_during_test_evaluation(qtbot, trainer_ui, tmp_path, mnist_train, mnist_test):
    view, runner = trainer_ui
    # cancel as soon as the last training batch is reported: the test pass is cut short
    config = cnn_config(tmp_path, subset=64, test_subset=None, epochs=1, eval_batch_size=100)
    epochs = record(runner.epoch_done)

    def on_progress(event):
        if event.batch == event.batches:
            runner.cancel()

    runner.progress.connect(on_progress)
    with qtbot.waitSignal(runner.finished, timeout=60_000) as done:
        runner.start(config, mnist_train, mnist_test)
    # the epoch is recorded and saved only after its test pass: neither happened
    assert not done.args[0].completed and epochs == []
    assert not (tmp_path / "cnn.safetensors").exists()
    assert runner.wait(5000)


def test_pause_and_resume(qtbot, trainer_ui, tmp_path, mnist_train, mnist_test):
    """The runner's one control pauses the trainer (that a paused Trainer blocks is
    test_training's test_pause_blocks_until_resumed) and resumes it where it stood."""
    view, runner = trainer_ui
    states = record(runner.state_changed)
    progress = record(runner.progress)
    runner.start(cnn_config(tmp_path, subset=20_000, epochs=1), mnist_train, mnist_test)
    qtbot.waitUntil(lambda: len(progress) >= 2, timeout=30_000)
    qtbot.mouseClick(view.pause_button, LEFT)
    assert runner.state == "paused" and view.pause_button.text() == "Resume"
    assert runner._control.paused
    paused_at = len(progress)
    qtbot.mouseClick(view.pause_button, LEFT)
    assert runner.state == "running" and view.pause_button.text() == "Pause"
    assert not runner._control.paused
    qtbot.waitUntil(lambda: len(progress) > paused_at + 2, timeout=30_000)
    assert progress[-1].batch > progress[paused_at - 1].batch
    with qtbot.waitSignal(runner.finished, timeout=60_000):
        runner.cancel()
    assert states == ["running", "paused", "running", "cancelling", "idle"]


def test_a_pause_before_the_trainer_exists_holds_it_when_it_does(qtbot, trainer_ui, tmp_path):
    view, runner = trainer_ui
    progress = record(runner.progress)
    runner.start(cnn_config(tmp_path, subset=20_000, epochs=1))  # loads the data first
    runner.pause()
    qtbot.waitUntil(lambda: runner._control._trainer is not None, timeout=60_000)
    assert runner.state == "paused" and len(progress) <= 1  # at most the batch in flight
    runner.resume()
    qtbot.waitUntil(lambda: len(progress) >= 2, timeout=30_000)
    with qtbot.waitSignal(runner.finished, timeout=60_000):
        runner.cancel()


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
    assert "The MNIST training set is not available" in message
    assert str(empty / "MNIST" / "raw") in message
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
    assert re.fullmatch(r"capsnet-mnist-\d{8}-\d{6}(-\d+)?\.safetensors",
                        view.config().output.rsplit("/", 1)[-1])
    view._model.setCurrentIndex(view._model.findData("cnn"))
    assert not view._iterations.isEnabled()
    config = view.config()
    assert config.model == "cnn" and config.model_config == {}
    assert "/checkpoints/cnn-mnist-" in config.output
    assert config.subset is None and config.test_subset is None
    view._output.setText(str(tmp_path / "mine.safetensors"))
    view._output.textEdited.emit(view._output.text())
    view._dataset.setCurrentIndex(view._dataset.findData("fashion-mnist"))
    assert view.config().output == str(tmp_path / "mine.safetensors")
    assert "max(0, 0.9 − ‖v_k‖)²" in view.loss_plot.toolTip()


def test_a_run_never_overwrites_a_checkpoint(qtbot, tmp_path, model_files):
    """Every run gets its own file: model, dataset, date and time; an existing name (the
    shipped model's, one typed in the form) gets a number instead of being replaced."""
    when = datetime(2026, 11, 23, 14, 5, 9)
    first = default_checkpoint("cnn", "mnist", when)
    assert first.name == "cnn-mnist-20261123-140509.safetensors"
    taken = tmp_path / "cnn-mnist.safetensors"
    taken.write_bytes(model_files["cnn"].read_bytes())
    assert unused_path(taken) == tmp_path / "cnn-mnist-2.safetensors"
    (tmp_path / "cnn-mnist-2.safetensors").touch()
    assert unused_path(taken) == tmp_path / "cnn-mnist-3.safetensors"
    view = TrainingView()
    qtbot.addWidget(view)
    view.set_config(cnn_config(tmp_path, output=str(taken)))
    assert view.config().output == str(tmp_path / "cnn-mnist-3.safetensors")


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
    assert view.use_button.isEnabled()  # the Routing tab steps its EM routing
    with qtbot.waitSignal(view.use_model) as chosen:
        qtbot.mouseClick(view.use_button, LEFT)
    assert chosen.args == [ready.args[0]]
    assert meta["train_config"]["model_config"] == {"routing_iterations": 2}

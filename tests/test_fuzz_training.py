"""Training when things go wrong: a diverging loss, an output that cannot be written, a disk
that fills up, a kill while saving. Each stops with a sentence, keeps the last good
checkpoint, and a resume continues exactly where an uninterrupted run would be."""

import errno
import os
from pathlib import Path

import pytest
import torch

from capsviewer.training import checkpoints, trainer as trainer_module
from capsviewer.training.checkpoints import load_checkpoint, read_metadata
from capsviewer.training.config import TrainConfig
from capsviewer.training.evaluation import EvaluationProgress
from capsviewer.training.trainer import BatchProgress, EpochResult, Trainer, TrainingError
from capsviewer.training.resume import state_path

TINY_CNN = {"channels": [4, 8, 8], "hidden": 16}


def config(tmp_path, **overrides) -> TrainConfig:
    values = dict(model="cnn", model_config=TINY_CNN, epochs=2, batch_size=32, subset=64,
                  test_subset=64, device="cpu", seed=5, output=str(tmp_path / "m.safetensors"))
    values.update(overrides)
    return TrainConfig(**values)


def weights(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).model.state_dict()


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


@pytest.fixture
def read_only(monkeypatch):
    """Make a folder read-only, for root too (root ignores permission bits): creating a file
    or a folder in it fails with EACCES, as on a read-only mount."""
    folders = []

    def refuse(path):
        path = Path(os.fsdecode(path)).absolute()
        if any(path == f or f in path.parents for f in folders):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    real_open, real_mkdir = os.open, os.mkdir

    def guarded_open(path, flags, *args, **kwargs):
        if flags & (os.O_CREAT | getattr(os, "O_TMPFILE", 0)) or flags & os.O_WRONLY:
            refuse(path)
        return real_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        refuse(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        folders.append(folder.absolute())
        return folder
    return make


def test_a_diverging_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
        mnist_train, mnist_test, tmp_path, monkeypatch):
    run = Trainer(config(tmp_path, epochs=3), mnist_train, mnist_test)
    loss = run.model.loss
    batches = []

    def diverging(output, x, y):
        result = loss(output, x, y)
        batches.append(run.model.training)  # False: the test pass
        if batches.count(True) == 3:  # the first batch of epoch 2
            result.total.data.fill_(float("nan"))
        return result

    monkeypatch.setattr(run.model, "loss", diverging)
    events = []
    with pytest.raises(TrainingError) as stopped:
        for event in run.events():
            events.append(event)
    message = str(stopped.value)
    assert message.startswith("training diverged in epoch 2 by batch 1: the loss or the weights "
                              "are no longer finite numbers")
    assert f"the last good checkpoint (epoch 1) is kept in {tmp_path / 'm.safetensors'}" in message
    assert [e.epoch for e in events if isinstance(e, EpochResult)] == [1]
    assert batches == [True, True, False, True]  # it stopped at the first non-finite loss
    assert read_metadata(tmp_path / "m.safetensors")["epoch"] == 1
    assert all(torch.isfinite(w).all() for w in weights(tmp_path / "m.safetensors").values())


def test_nan_weights_are_never_saved(mnist_train, mnist_test, tmp_path, monkeypatch):
    run = Trainer(config(tmp_path, epochs=1), mnist_train, mnist_test)
    evaluate = run.evaluate

    def poisoned(*args):
        result = yield from evaluate(*args)
        run.model.classifier.weight.data[0, 0] = float("inf")
        return result

    monkeypatch.setattr(run, "evaluate", poisoned)
    with pytest.raises(TrainingError, match="training diverged after epoch 1.*nothing was saved"):
        run.run()
    assert not (tmp_path / "m.safetensors").exists() and leftovers(tmp_path) == []


def test_a_read_only_output_is_refused_before_training(mnist_train, mnist_test, tmp_path,
                                                       read_only):
    folder = read_only(tmp_path / "locked")
    events = []
    with pytest.raises(TrainingError) as refused:
        for event in Trainer(config(folder), mnist_train, mnist_test).events():
            events.append(event)
    assert events == []  # not one batch
    assert str(refused.value) == (f"cannot save checkpoints to {folder / 'm.safetensors'}: "
                                  f"cannot write in {folder}: Permission denied")


@pytest.mark.parametrize("where, phrase", [
    ("folder", "is a folder; give a file name such as"),
    ("under-a-file", "cannot create the folder"),
])
def test_an_output_that_is_not_a_file_name_is_refused(mnist_train, mnist_test, tmp_path, where,
                                                      phrase):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    output = tmp_path / ("folder" if where == "folder" else "file/m.safetensors")
    with pytest.raises(TrainingError, match=phrase):
        next(Trainer(config(tmp_path, output=str(output)), mnist_train, mnist_test).events())


def test_a_full_disk_is_found_before_training(mnist_train, mnist_test, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints.shutil, "disk_usage",
                        lambda folder: type("Usage", (), {"free": 5_000})())
    run = Trainer(config(tmp_path), mnist_train, mnist_test)
    needed = 4 * sum(t.numel() * t.element_size() for t in run.model.state_dict().values())
    with pytest.raises(TrainingError, match=f"has 0 MB free, and about {needed / 1e6:,.0f} MB "
                       "are needed"):
        next(run.events())


def test_a_failed_final_write_keeps_the_weights_elsewhere(mnist_train, mnist_test, tmp_path,
                                                          monkeypatch):
    rescue = tmp_path / "user-checkpoints"
    monkeypatch.setattr(trainer_module.paths, "checkpoints_dir", lambda: rescue)
    output = tmp_path / "run" / "m.safetensors"
    write = trainer_module.atomic_write_bytes
    written = []

    def disk_full(path, data):
        written.append(Path(path).name)
        if Path(path) == output and _state_epoch(output) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return write(path, data)

    monkeypatch.setattr(trainer_module, "atomic_write_bytes", disk_full)
    run = Trainer(config(tmp_path, output=str(output)), mnist_train, mnist_test)
    with pytest.raises(TrainingError) as stopped:
        run.run()
    kept = rescue / "m-epoch-2-rescued.safetensors"
    assert str(stopped.value) == (
        f"could not write {output}: No space left on device. The weights of epoch 2 were saved "
        f"to {kept} instead; the last checkpoint written there (epoch 1) is unchanged")
    assert read_metadata(kept)["epoch"] == 2 and read_metadata(output)["epoch"] == 1
    assert same_weights(weights(kept), run.model.state_dict())
    assert leftovers(tmp_path) == []


def test_a_kill_between_state_and_checkpoint_resumes_without_training_twice(
        mnist_train, mnist_test, tmp_path, monkeypatch):
    straight = Trainer(config(tmp_path, epochs=3, output=str(tmp_path / "straight.safetensors")),
                       mnist_train, mnist_test)
    straight.run()

    class Killed(BaseException):
        pass

    output = tmp_path / "m.safetensors"
    write = checkpoints.atomic_write_bytes

    def killed_after_the_state_of_epoch_2(path, data):
        if Path(path) == output and _state_epoch(output) == 2:
            # a torn temp file, as a kill inside the write leaves it
            (output.parent / f".{output.name}.abc123.tmp").write_bytes(data[: len(data) // 3])
            raise Killed
        return write(path, data)

    monkeypatch.setattr(trainer_module, "atomic_write_bytes", killed_after_the_state_of_epoch_2)
    with pytest.raises(Killed):
        Trainer(config(tmp_path, epochs=3), mnist_train, mnist_test).run()
    monkeypatch.undo()
    assert read_metadata(output)["epoch"] == 1 and _state_epoch(output) == 2
    assert leftovers(tmp_path) == [".m.safetensors.abc123.tmp"]

    trained = []
    resumed = Trainer(config(tmp_path, epochs=3, resume=True), mnist_train, mnist_test)
    finished = resumed.run(lambda e: isinstance(e, BatchProgress) and trained.append(e.epoch))
    assert set(trained) == {3}  # epoch 2 is not trained again
    assert [e.epoch for e in finished.history] == [1, 2, 3]
    assert same_weights(weights(output), weights(tmp_path / "straight.safetensors"))
    assert leftovers(tmp_path) == []


def _state_epoch(output) -> int:
    from capsviewer.training.checkpoints import load_tensors

    return load_tensors(state_path(output), kind="training-state")[1]["epoch"]


def test_a_finished_run_whose_checkpoint_was_lost_writes_it_again(mnist_train, mnist_test,
                                                                  tmp_path):
    Trainer(config(tmp_path, keep_epochs=True), mnist_train, mnist_test).run()
    output = tmp_path / "m.safetensors"
    saved = weights(output)
    output.unlink()
    (tmp_path / "m.epochs" / "epoch-002.safetensors").unlink()
    finished = Trainer(config(tmp_path, keep_epochs=True, resume=True), mnist_train,
                       mnist_test).run()
    assert finished.completed and [e.epoch for e in finished.history] == [1, 2]
    assert same_weights(weights(output), saved)
    assert same_weights(weights(tmp_path / "m.epochs" / "epoch-002.safetensors"), saved)


def test_the_cpu_test_pass_checks_cancel_between_small_batches(mnist_train, mnist_test,
                                                               tmp_path):
    run = Trainer(config(tmp_path, epochs=1, test_subset=250, eval_batch_size=500, output=None),
                  mnist_train, mnist_test)
    tested = [e.images for e in run.events() if isinstance(e, EvaluationProgress)]
    assert tested == [100, 200, 250]

import pytest
import torch

from capsviewer.training import (
    BatchProgress,
    EpochResult,
    EvaluationProgress,
    TrainConfig,
    Trainer,
    TrainingError,
    TrainingFinished,
    load_checkpoint,
)
from capsviewer.training.resume import state_path

TINY = {"conv_channels": 16, "primary_maps": 4, "decoder_hidden": [32, 64]}


def tiny_config(**overrides):
    values = dict(model_config=TINY, epochs=1, batch_size=32, subset=96, test_subset=64,
                  device="cpu", seed=3)
    values.update(overrides)
    return TrainConfig(**values)


def test_events_report_every_batch_and_epoch(mnist_train, mnist_test, tmp_path):
    config = tiny_config(epochs=2, eval_batch_size=25, output=str(tmp_path / "m.safetensors"))
    events = list(Trainer(config, mnist_train, mnist_test).events())
    batches = [e for e in events if isinstance(e, BatchProgress)]
    epochs = [e for e in events if isinstance(e, EpochResult)]
    kinds = [type(e).__name__[0] for e in events]  # B, E(valuationProgress), E(pochResult), T
    assert "".join(kinds) == "BBBEEEE" * 2 + "T"
    tested = [(e.images, e.total) for e in events if isinstance(e, EvaluationProgress)]
    assert tested == [(25, 64), (50, 64), (64, 64)] * 2  # the test pass after each epoch
    assert [(b.epoch, b.batch) for b in batches] == [(e, b) for e in (1, 2) for b in (1, 2, 3)]
    assert all(b.batches == 3 and b.images_per_second > 0 and b.eta_seconds >= 0 for b in batches)
    assert batches[-1].eta_seconds == 0
    assert batches[-1].learning_rate < 1e-3  # exponential decay per step
    assert [e.epoch for e in epochs] == [1, 2]
    assert isinstance(events[-1], TrainingFinished) and events[-1].completed
    meta = load_checkpoint(tmp_path / "m.safetensors").metadata
    assert meta["epoch"] == 2 and meta["metrics"]["test_accuracy"] == epochs[-1].test_accuracy
    assert meta["dataset"]["train_images"] == 96 and len(meta["dataset"]["train_sha256"]) == 64


def test_same_seed_same_weights(mnist_train, mnist_test):
    runs = []
    for _ in range(2):
        trainer = Trainer(tiny_config(), mnist_train, mnist_test)
        trainer.run()
        runs.append(trainer.model.state_dict())
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key
    other = Trainer(tiny_config(seed=4), mnist_train, mnist_test)
    other.run()
    assert not torch.equal(other.model.state_dict()["digit_weights"], runs[0]["digit_weights"])


def test_cancel_stops_between_batches(mnist_train, mnist_test):
    trainer = Trainer(tiny_config(epochs=3), mnist_train, mnist_test)
    seen = []

    def on_event(event):
        seen.append(event)
        if isinstance(event, BatchProgress) and event.batch == 2:
            trainer.cancel()

    finished = trainer.run(on_event)
    assert not finished.completed and finished.epochs_done == 0
    assert sum(isinstance(e, BatchProgress) for e in seen) == 2


def test_cancel_during_test_evaluation_stops_it(mnist_train, mnist_test, monkeypatch):
    trainer = Trainer(tiny_config(test_subset=None, eval_batch_size=50), mnist_train, mnist_test)
    import capsviewer.training.evaluation as evaluation

    batches_fetched = []
    original = evaluation.test_batches

    def counting(*args, **kwargs):
        for batch in original(*args, **kwargs):
            batches_fetched.append(1)
            if len(batches_fetched) == 3:
                trainer.cancel()
            yield batch

    monkeypatch.setattr(evaluation, "test_batches", counting)
    finished = trainer.run()
    assert not finished.completed and finished.epochs_done == 0
    assert len(batches_fetched) == 3  # of 200: the poll after the cancel stopped it


def test_pause_blocks_until_resumed(mnist_train, mnist_test, monkeypatch):
    """While paused the trainer polls and runs no batch; the next one comes after resume()."""
    trainer = Trainer(tiny_config(), mnist_train, mnist_test)
    events = trainer.events()
    next(events)  # first batch done
    trainer.pause()
    polls = []
    wait = trainer._running.wait

    def polled(timeout=None):
        polls.append(trainer.paused)
        if len(polls) == 3:
            trainer.resume()
        return wait(timeout)

    monkeypatch.setattr(trainer._running, "wait", polled)
    second = next(events)
    assert second.batch == 2 and polls == [True, True, True]  # resumed at the third poll
    trainer.cancel()
    assert isinstance(next(events), TrainingFinished)


def test_progress_is_thinned_with_count_weights(mnist_train, mnist_test):
    """With an interval longer than the run, one BatchProgress per epoch, whose loss and
    accuracy weigh each batch by its images (100 = 32 + 32 + 32 + 4)."""
    every = list(Trainer(tiny_config(subset=100), mnist_train, mnist_test).events())
    thinned = list(Trainer(tiny_config(subset=100, progress_interval=1e9), mnist_train,
                           mnist_test).events())
    batches = [e for e in every if isinstance(e, BatchProgress)]
    sizes = [32, 32, 32, 4]
    assert [b.batch for b in batches] == [1, 2, 3, 4]
    (one,) = [e for e in thinned if isinstance(e, BatchProgress)]
    assert one.batch == 4
    weighted = sum(b.loss * n for b, n in zip(batches, sizes)) / 100
    assert one.loss == pytest.approx(weighted, rel=1e-9)
    assert one.loss != pytest.approx(sum(b.loss for b in batches) / 4, rel=1e-6)
    assert one.accuracy == pytest.approx(sum(b.accuracy * n for b, n in zip(batches, sizes)) / 100)
    (epoch,) = [e for e in thinned if isinstance(e, EpochResult)]
    assert epoch.train_loss == pytest.approx(one.loss) and epoch.train_accuracy == one.accuracy


def test_a_pause_reports_the_batches_before_it(mnist_train, mnist_test, monkeypatch):
    """Thinned progress is not held back by a pause: the batches done so far are reported
    before the trainer waits."""
    trainer = Trainer(tiny_config(subset=100, progress_interval=1e9), mnist_train, mnist_test)
    step = trainer._step
    steps = []

    def counted(*args):
        steps.append(1)
        if len(steps) == 2:
            trainer.pause()
        return step(*args)

    monkeypatch.setattr(trainer, "_step", counted)
    events = trainer.events()
    flushed = next(events)
    assert isinstance(flushed, BatchProgress) and flushed.batch == 2 and trainer.paused
    assert len(steps) == 2  # reported before the third batch, which waits for resume()
    trainer.resume()
    rest = list(events)
    assert [e.batch for e in rest if isinstance(e, BatchProgress)] == [4]
    assert rest[-1].completed


def test_out_of_range_config_is_refused_with_a_sentence(mnist_train, mnist_test):
    with pytest.raises(TrainingError, match="epochs must be between 1 and 1,000, got 0"):
        Trainer(tiny_config(epochs=0), mnist_train, mnist_test)
    with pytest.raises(TrainingError, match="routing iterations apply to capsnet, "
                       "matrix-capsnet and em-capsnet, not to cnn"):
        Trainer(TrainConfig(model="cnn", model_config={"routing_iterations": 3}))
    with pytest.raises(TrainingError, match="learning rate must be a finite number"):
        Trainer(tiny_config(learning_rate=float("nan")), mnist_train, mnist_test)


def test_resume_continues_where_an_interrupted_run_stopped(mnist_train, mnist_test, tmp_path):
    out = str(tmp_path / "m.safetensors")
    straight = Trainer(tiny_config(epochs=2, output=str(tmp_path / "straight.safetensors")),
                       mnist_train, mnist_test)
    straight.run()
    first = Trainer(tiny_config(epochs=2, output=out), mnist_train, mnist_test)
    for event in first.events():
        if isinstance(event, EpochResult):
            break  # "crash" after epoch 1 was saved
    assert state_path(out).exists()
    resumed = Trainer(tiny_config(epochs=2, output=out, resume=True), mnist_train, mnist_test)
    finished = resumed.run()
    assert [e.epoch for e in finished.history] == [1, 2]
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.slow
def test_slow_short_cpu_run_learns_mnist(mnist_train, mnist_test):
    """The paper's CapsNet on 2,000 images for one epoch beats chance (10 %) by far."""
    config = TrainConfig(epochs=1, subset=2000, test_subset=1000, batch_size=32, device="cpu")
    finished = Trainer(config, mnist_train, mnist_test).run()
    assert finished.completed
    assert finished.history[-1].test_accuracy > 0.6


def test_the_learning_rate_decays_no_lower_than_min_lr(mnist_train, mnist_test):
    def rates(**options):
        events = Trainer(tiny_config(lr_decay=0.5, decay_steps=1, **options), mnist_train,
                         mnist_test).events()
        return [e.learning_rate for e in events if isinstance(e, BatchProgress)]

    assert rates() == pytest.approx([5e-4, 2.5e-4, 1.25e-4])  # halved every step
    assert rates(min_lr=2e-4) == pytest.approx([5e-4, 2.5e-4, 2e-4])

"""A Qt-free trainer that reports through a generator of events.

``Trainer.events()`` yields a :class:`BatchProgress` per batch, an :class:`EpochResult` per epoch
and a final :class:`TrainingFinished`; a GUI worker forwards them as signals, the CLI draws a
progress bar. ``cancel()`` and ``pause()`` are thread-safe and act between batches.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import capsviewer
from capsviewer.data import ImageSet, iterate_batches, load_dataset, random_shift, to_float
from capsviewer.models import build_model
from capsviewer.training.checkpoints import save_checkpoint
from capsviewer.training.devices import describe_device, select_device
from capsviewer.training.evaluation import EvaluationCancelled, evaluate
from capsviewer.training.resume import load_training_state, save_training_state, state_path


@dataclass
class TrainConfig:
    model: str = "capsnet"
    model_config: dict[str, Any] = field(default_factory=dict)  # e.g. {"routing_iterations": 3}
    dataset: str = "mnist"
    data_root: str | None = None
    download: bool = True  # fetch a missing data set (False: fail with a clear message)
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    # Exponential decay as in the authors' TensorFlow code: lr · 0.96^(step / 2000), per step.
    lr_decay: float = 0.96
    decay_steps: int = 2000
    max_shift: int = 2  # random shifts of up to 2 px, the paper's only augmentation
    subset: int | None = None  # train on a random subset of this many images
    test_subset: int | None = None
    eval_batch_size: int = 500
    seed: int = 0
    device: str = "auto"
    output: str | None = None  # checkpoint written after every epoch (None: keep in memory)
    resume: bool = False  # continue from ``output`` and its training state, if present


@dataclass(frozen=True)
class BatchProgress:
    epoch: int  # 1-based
    epochs: int
    batch: int  # 1-based within the epoch
    batches: int
    loss: float
    accuracy: float
    images_per_second: float
    elapsed_seconds: float
    eta_seconds: float
    learning_rate: float


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    seconds: float  # training time of this epoch, test evaluation excluded
    images_per_second: float
    checkpoint: str | None


@dataclass(frozen=True)
class TrainingFinished:
    completed: bool  # False when cancelled
    epochs_done: int
    history: tuple[EpochResult, ...]
    checkpoint: str | None
    seconds: float

    @property
    def best_test_accuracy(self) -> float | None:
        return max((e.test_accuracy for e in self.history), default=None)


Event = BatchProgress | EpochResult | TrainingFinished


class TrainingError(RuntimeError):
    pass


class Trainer:
    """Train one model. Data sets may be injected (tests, GUI); otherwise they are loaded."""

    def __init__(
        self,
        config: TrainConfig,
        train_set: ImageSet | None = None,
        test_set: ImageSet | None = None,
    ):
        self.config = config
        self.device = select_device(config.device)
        self._train_set, self._test_set = train_set, test_set
        self._cancel = threading.Event()
        self._running = threading.Event()
        self._running.set()
        torch.manual_seed(config.seed)
        self.model = build_model(config.model, config.model_config).to(self.device)

    # -- control, from any thread ---------------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()
        self._running.set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    # -- running ----------------------------------------------------------------------------
    def run(self, callback: Callable[[Event], None] | None = None) -> TrainingFinished:
        for event in self.events():
            if callback is not None:
                callback(event)
        return event

    def events(self) -> Iterator[Event]:
        cfg = self.config
        train = self._train_set or load_dataset(cfg.dataset, True, cfg.data_root, cfg.download)
        test = self._test_set or load_dataset(cfg.dataset, False, cfg.data_root, cfg.download)
        train = train.subset(cfg.subset, cfg.seed)
        test = test.subset(cfg.test_subset, cfg.seed)
        images, labels = train.images.to(self.device), train.labels.to(self.device)

        optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.learning_rate)
        gamma = cfg.lr_decay ** (1.0 / cfg.decay_steps)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)
        generator = torch.Generator().manual_seed(cfg.seed)
        history: list[EpochResult] = []
        first_epoch = 1
        if cfg.resume and cfg.output and state_path(cfg.output).exists():
            last_epoch, saved = load_training_state(
                cfg.output, self.model, optimizer, scheduler, generator, self.device
            )
            first_epoch, history = last_epoch + 1, [EpochResult(**h) for h in saved]
        batches = math.ceil(len(train) / cfg.batch_size)
        steps_left = batches * (cfg.epochs - first_epoch + 1)
        started = time.perf_counter()
        steps_done = 0
        checksum = train.checksum()
        checkpoint = history[-1].checkpoint if history else None

        for epoch in range(first_epoch, cfg.epochs + 1):
            self.model.train()
            epoch_start = time.perf_counter()
            loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
            correct_sum = torch.zeros((), dtype=torch.long, device=self.device)
            seen = 0
            batch_iter = iterate_batches(
                images, labels, cfg.batch_size, shuffle=True, generator=generator
            )
            for batch, (x, y) in enumerate(batch_iter, start=1):
                if not self._wait_if_paused():
                    yield self._finished(False, history, checkpoint, started)
                    return
                x = to_float(random_shift(x, cfg.max_shift, generator))
                try:
                    output = self.model(x, y)
                    loss = self.model.loss(output, x, y).total
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                except torch.OutOfMemoryError as error:
                    raise TrainingError(
                        f"out of memory on {self.device} at batch size {cfg.batch_size}; "
                        "try a smaller --batch-size"
                    ) from error
                scheduler.step()
                correct = (output.scores.detach().argmax(1) == y).sum()
                loss_sum += loss.detach().double() * len(y)
                correct_sum += correct
                seen += len(y)
                steps_done += 1
                elapsed = time.perf_counter() - started
                yield BatchProgress(
                    epoch, cfg.epochs, batch, batches,
                    loss=loss.item(), accuracy=correct.item() / len(y),
                    images_per_second=seen / max(time.perf_counter() - epoch_start, 1e-9),
                    elapsed_seconds=elapsed,
                    eta_seconds=elapsed / steps_done * (steps_left - steps_done),
                    learning_rate=scheduler.get_last_lr()[0],
                )
            seconds = time.perf_counter() - epoch_start
            try:
                result = evaluate(self.model, test, self.device, cfg.eval_batch_size,
                                  should_stop=self._cancel.is_set)
            except EvaluationCancelled:
                yield self._finished(False, history, checkpoint, started)
                return
            epoch_result = EpochResult(
                epoch, cfg.epochs, loss_sum.item() / seen, correct_sum.item() / seen,
                result.loss, result.accuracy, seconds, seen / seconds, None,
            )
            if cfg.output:
                checkpoint = str(self._save(epoch_result, history, train, checksum))
                epoch_result = dataclasses.replace(epoch_result, checkpoint=checkpoint)
                save_training_state(cfg.output, optimizer, scheduler, generator, epoch,
                                    history + [epoch_result])
            history.append(epoch_result)
            yield epoch_result
        yield self._finished(True, history, checkpoint, started)

    def _wait_if_paused(self) -> bool:
        """Block while paused; False once cancelled."""
        while not self._running.wait(0.05):
            pass
        return not self._cancel.is_set()

    def _finished(self, completed, history, checkpoint, started) -> TrainingFinished:
        return TrainingFinished(
            completed, len(history), tuple(history), checkpoint, time.perf_counter() - started
        )

    def _save(self, result: EpochResult, history, train: ImageSet, checksum: str) -> Path:
        cfg = self.config
        epochs = [*history, result]
        return save_checkpoint(
            cfg.output,
            self.model,
            {
                "epoch": result.epoch,
                "seed": cfg.seed,
                "train_config": dataclasses.asdict(cfg),
                "metrics": {
                    "test_accuracy": result.test_accuracy,
                    "test_loss": result.test_loss,
                    "train_accuracy": result.train_accuracy,
                    "train_loss": result.train_loss,
                },
                "history": [dataclasses.asdict(h) for h in epochs],
                "dataset": {
                    "name": train.name,
                    "train_images": len(train),
                    "test_images": cfg.test_subset or "all",
                    "train_sha256": checksum,
                },
                "device": describe_device(self.device),
                "training_seconds": round(sum(h.seconds for h in epochs), 2),
                "torch_version": torch.__version__,
                "capsviewer_version": capsviewer.__version__,
                "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )

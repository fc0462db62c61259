"""A Qt-free trainer that reports through a generator of events.

``Trainer.events()`` yields :class:`BatchProgress` as batches finish,
:class:`EvaluationProgress` during each epoch's test pass, an :class:`EpochResult` per epoch
and a final :class:`TrainingFinished`; a GUI worker forwards them as signals, the CLI draws
progress bars. The run is four named steps, composed by ``events()``: :meth:`Trainer.setup`
(data, optimiser, schedule, resume, DDP/compile wrapping), :meth:`Trainer.train_epoch` (the
batch loop), :meth:`Trainer.evaluate` (the test pass) and :meth:`Trainer.save` (checkpoint
and training state). ``cancel()`` and ``pause()`` are thread-safe and act between batches.

Progress is thinned here, once: at most one BatchProgress per ``progress_interval`` seconds
(every batch on the CPU unless asked otherwise; 0.1 s on a GPU, so the batch loop never waits
for the device), plus an epoch's last batch and the batches done when a pause begins. Each
carries the loss and accuracy of all images since the previous one, weighted by count.

What a batch holds comes from the task (:mod:`capsviewer.data.tasks`): single images, shifted,
or MultiMNIST's pairs of overlapping digits, composed on the fly; nothing else here differs.

Speed: the whole data set sits on the training device and each epoch's order and shifts (and
MultiMNIST partners) are drawn once, so a batch is a gather on the device; metrics accumulate
there and are read only when reported; the convolutions run in bf16 under autocast where the
hardware has it (``precision``), with channels-last weights; Adam is the fused kernel. Under
``torchrun`` the model is wrapped in DistributedDataParallel (see :mod:`capsviewer.training.distributed`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import capsviewer
from capsviewer import paths
from capsviewer.data import ImageSet
from capsviewer.data.datasets import unpublished_note
from capsviewer.data.batches import shard
from capsviewer.data.tasks import Batch, TestSet, get_task
from capsviewer.models import build_model
from capsviewer.training import distributed
from capsviewer.training.checkpoints import (
    CheckpointError,
    atomic_write_bytes,
    checkpoint_bytes,
    load_checkpoint,
    output_problem,
    remove_stale_temp_files,
)
from capsviewer.training.config import TrainConfig
from capsviewer.training.devices import autocast, describe_device, resolve_precision, select_device
from capsviewer.training.evaluation import (
    EvaluationCancelled,
    EvaluationProgress,
    evaluation_steps,
)
from capsviewer.training.metrics import count_correct
from capsviewer.training.resume import load_training_state, save_training_state, state_path

log = logging.getLogger(__name__)
CPU_TEST_BATCH = 100  # test images per batch on a CPU at most: cancel is polled between them


def epoch_checkpoint(output: str | os.PathLike, epoch: int) -> Path:
    """Where ``--keep-epochs`` keeps epoch ``epoch``: a folder beside the checkpoint (not in
    its folder, where the newest file would become the app's model)."""
    output = Path(output)
    return output.parent / f"{output.stem}.epochs" / f"epoch-{epoch:03d}.safetensors"


@dataclass(frozen=True)
class BatchProgress:
    epoch: int  # 1-based
    epochs: int
    batch: int  # 1-based within the epoch
    batches: int
    # Over the images since the previous BatchProgress (this batch alone when every batch is
    # reported): Σ loss·n / Σ n and Σ correct / Σ n, so a short last batch weighs what it holds.
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
    # MultiMNIST: the share of test digits among their image's two longest capsules (the
    # accuracies above count an image correct only when both are).
    test_digit_accuracy: float | None = None


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


Event = BatchProgress | EvaluationProgress | EpochResult | TrainingFinished


class TrainingError(RuntimeError):
    pass


@dataclass
class Run:
    """What the steps of one run hand each other (built by :meth:`Trainer.setup`)."""

    train: ImageSet
    test: TestSet  # single images, or MultiMNIST's fixed pairs
    images: torch.Tensor  # the training images, uint8 on the device
    labels: torch.Tensor
    net: nn.Module  # the model as trained: wrapped for DDP or compiled when asked
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator  # order and shifts, saved with the training state
    first_epoch: int
    epochs: int  # the last epoch
    batches: int  # per epoch
    checksum: str  # of the training images, recorded in the checkpoint
    history: list[EpochResult] = field(default_factory=list)
    checkpoint: str | None = None
    started: float = field(default_factory=time.perf_counter)
    steps_done: int = 0
    saved_epoch: int = 0  # the last epoch whose checkpoint was written (0: none)

    @property
    def steps_left(self) -> int:
        return self.batches * (self.epochs - self.first_epoch + 1) - self.steps_done


@dataclass(frozen=True)
class EpochTotals:
    """One epoch's training, summed over this process's images."""

    loss_sum: float  # Σ loss·n
    correct: float
    images: int
    seconds: float


class _Window:
    """Loss and correct predictions summed on the device since the last report (read only when
    reported: reading waits for the device)."""

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)  # Σ loss·n, Σ correct
        self.images = 0

    def add(self, loss: torch.Tensor, correct: torch.Tensor, count: int) -> None:
        self.sums += torch.stack([loss.detach().double() * count, correct.double()])
        self.images += count

    def take(self) -> tuple[float, float, int]:
        loss_sum, correct = self.sums.tolist()
        taken = (loss_sum, correct, self.images)
        self.sums.zero_()
        self.images = 0
        return taken


class Trainer:
    """Train one model. Data sets may be injected (tests, GUI); otherwise they are loaded."""

    def __init__(
        self,
        config: TrainConfig,
        train_set: ImageSet | None = None,
        test_set: ImageSet | None = None,
    ):
        problems = config.problems()
        if problems:
            raise TrainingError("; ".join(problems))
        self.config = config
        self.processes = distributed.current()  # one process unless run under torchrun
        self.device = distributed.process_device(select_device(config.device), self.processes)
        self.precision = resolve_precision(config.precision, self.device)
        self._train_set, self._test_set = train_set, test_set
        self.data_notes: list[str] = []  # data loaded from disk that is not the published set
        self._cancel = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self.task = get_task(config.dataset, config.max_shift, config.augmentation)
        torch.manual_seed(config.seed)
        try:
            self.model = build_model(config.architecture, config.model_values()).to(self.device)
        except (KeyError, ValueError) as error:
            raise TrainingError(str(error).strip("'\"")) from error
        self.initialised_from = self._initialise(config.init_from) if config.init_from else None
        channels_last = config.channels_last
        if channels_last is None:
            channels_last = self.precision == "bf16"
        if channels_last:
            self.model.to(memory_format=torch.channels_last)

    def _initialise(self, path: str) -> dict:
        """Load the weights of checkpoint ``path`` (same architecture and config)."""
        source = load_checkpoint(path)
        if source.model.architecture != self.config.architecture:
            raise TrainingError(f"{path} holds a {source.model.architecture}, not a "
                                f"{self.config.architecture}")
        if source.model.config != self.model.config:
            raise TrainingError(f"{path} has another {self.config.model} config than this run")
        self.model.load_state_dict(source.model.state_dict())
        meta = source.metadata
        return {"file": os.path.basename(path), "epoch": meta.get("epoch"),
                "averaged_epochs": [a.get("epoch") for a in meta.get("averaged", [])] or None,
                "test_accuracy": meta.get("metrics", {}).get("test_accuracy"),
                "training_seconds": meta.get("training_seconds")}

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

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    # -- running ----------------------------------------------------------------------------
    def run(self, callback: Callable[[Event], None] | None = None) -> TrainingFinished:
        for event in self.events():
            if callback is not None:
                callback(event)
        return event

    def events(self) -> Iterator[Event]:
        """The run as events: setup, then per epoch train_epoch, evaluate and save."""
        with _backend_settings(self.device, self.precision):
            run = self.setup()
            for epoch in range(run.first_epoch, self.config.epochs + 1):
                totals = yield from self.train_epoch(run, epoch)
                result = None
                if totals is not None:
                    result = yield from self.evaluate(run, epoch, totals)
                if result is None:  # cancelled
                    yield self._finished(False, run)
                    return
                result = self.save(run, result)
                run.history.append(result)
                yield result
            yield self._finished(True, run)

    def setup(self) -> Run:
        """Data on the device, optimiser and schedule, the state of an interrupted run when
        resuming, and the model wrapped for DDP or compiled when asked. The output is checked
        first: a folder that cannot be written fails here, not after an epoch."""
        cfg, processes = self.config, self.processes
        if cfg.output and processes.is_main:
            self._check_output()
        train = self._train_set or self.task.load(True, cfg.data_root, cfg.download)
        test = self._test_set or self.task.load(False, cfg.data_root, cfg.download)
        for loaded in (train, test) if self._train_set is None and processes.is_main else ():
            note = unpublished_note(loaded)
            if note:
                log.warning("warning: %s", note)
                self.data_notes.append(note)
        train = train.subset(cfg.subset, cfg.seed)
        test = self.task.test_set(test, cfg.test_subset, cfg.seed)
        if cfg.batch_size < processes.world_size:
            raise TrainingError(
                f"batch size {cfg.batch_size} is smaller than the {processes.world_size} processes"
            )
        fused = self.device.type in ("cpu", "cuda")
        optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.learning_rate,
                                     fused=fused or None)
        gamma = cfg.lr_decay ** (1.0 / cfg.decay_steps)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)
        generator = torch.Generator().manual_seed(cfg.seed)
        history: list[EpochResult] = []
        first_epoch = 1
        if cfg.resume and cfg.output:
            history = self._resume(optimizer, scheduler, generator)
            first_epoch = history[-1].epoch + 1 if history else 1
        net = self.model
        if processes.enabled:
            net = DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if cfg.compile:
            net = torch.compile(net)
        count = len(train)
        batches = math.ceil(count / cfg.batch_size)
        if processes.enabled and 0 < count % cfg.batch_size < processes.world_size:
            batches -= 1  # a last batch too small to give every process an image is skipped
        # All of MNIST is 47 MB as uint8: it lives on the device, and a batch is a gather.
        return Run(
            train=train, test=test,
            images=train.images.to(self.device), labels=train.labels.to(self.device),
            net=net, optimizer=optimizer, scheduler=scheduler, generator=generator,
            first_epoch=first_epoch, epochs=cfg.epochs, batches=batches,
            checksum=train.checksum(), history=history,
            checkpoint=history[-1].checkpoint if history else None, saved_epoch=len(history),
        )

    def train_epoch(self, run: Run, epoch: int) -> Generator[BatchProgress, None, EpochTotals | None]:
        """One pass over the training images; yields the thinned progress, returns the
        epoch's totals (None when cancelled)."""
        cfg, processes = self.config, self.processes
        interval = cfg.progress_interval
        if interval is None:
            interval = 0.0 if self.device.type == "cpu" else 0.1
        count = len(run.train)
        self.model.train()
        epoch_start = last_report = time.perf_counter()
        # The epoch's order and shifts (or pairs), drawn at once and copied to the device once.
        plan = self.task.draw_epoch(run.train.labels, run.generator, self.device)
        positions = torch.arange(count, device=self.device)
        window = _Window(self.device)
        totals = [0.0, 0.0, 0]  # this process's Σ loss·n, Σ correct, images

        def report(batch: int) -> BatchProgress:
            loss_sum, correct, images = window.take()  # waits for the device
            if not math.isfinite(loss_sum):
                raise TrainingError(self._diverged(run, f"in epoch {epoch} by batch {batch}"))
            totals[0] += loss_sum
            totals[1] += correct
            totals[2] += images
            now = time.perf_counter()
            elapsed = now - run.started
            return BatchProgress(
                epoch, cfg.epochs, batch, run.batches,
                loss=loss_sum / images,
                accuracy=correct / images,
                images_per_second=totals[2] * processes.world_size / max(now - epoch_start, 1e-9),
                elapsed_seconds=elapsed,
                eta_seconds=elapsed / run.steps_done * run.steps_left,
                learning_rate=run.optimizer.param_groups[0]["lr"],
            )

        for batch in range(1, run.batches + 1):
            if self.paused and window.images:
                yield report(batch - 1)  # what ran before the pause, shown while it lasts
                last_report = time.perf_counter()
            if not self._wait_if_paused():
                return None
            part = positions[(batch - 1) * cfg.batch_size : batch * cfg.batch_size]
            share = 1.0
            if processes.enabled:
                # Gradients are averaged over processes: weigh each share by its size.
                local = shard(part, processes.rank, processes.world_size)
                share, part = len(local) * processes.world_size / len(part), local
            data = self.task.batch(run.images, run.labels, plan, part)
            output, loss = self._step(run, data, share)
            window.add(loss, count_correct(output.scores.detach(), data.labels), len(data.labels))
            run.steps_done += 1
            if (interval <= 0 or batch == run.batches
                    or time.perf_counter() - last_report >= interval):
                yield report(batch)
                last_report = time.perf_counter()
        seconds = time.perf_counter() - epoch_start
        loss_sum, correct, seen = distributed.sum_over_processes(
            torch.tensor(totals, dtype=torch.float64, device=self.device), processes
        ).tolist()
        return EpochTotals(loss_sum, correct, int(seen), seconds)

    def evaluate(self, run: Run, epoch: int, totals: EpochTotals
                 ) -> Generator[EvaluationProgress, None, EpochResult | None]:
        """The test pass after an epoch, yielding its progress; returns None when cancelled
        during it."""
        cfg = self.config
        batch_size = cfg.eval_batch_size
        if self.device.type == "cpu":
            batch_size = min(batch_size, CPU_TEST_BATCH)
        try:
            result = yield from evaluation_steps(
                self.model, run.test, self.device, batch_size,
                should_stop=self._cancel.is_set, precision=self.precision,
                processes=self.processes)
        except EvaluationCancelled:
            return None
        return EpochResult(
            epoch, cfg.epochs, totals.loss_sum / totals.images, totals.correct / totals.images,
            result.loss, result.accuracy, totals.seconds, totals.images / totals.seconds, None,
            result.digit_accuracy,
        )

    def save(self, run: Run, result: EpochResult) -> EpochResult:
        """Write the training state, then the checkpoint (and the epoch's copy with
        keep_epochs), each atomically, on the main process; returns ``result`` with the
        checkpoint's path. Weights or figures that are not finite are never saved."""
        cfg = self.config
        figures = (result.train_loss, result.test_loss, result.train_accuracy,
                   result.test_accuracy)
        if not all(map(math.isfinite, figures)) or not all(
                torch.isfinite(p).all() for p in self.model.parameters()):
            raise TrainingError(self._diverged(run, f"after epoch {result.epoch}"))
        if not cfg.output:
            return result
        run.checkpoint = str(cfg.output)
        result = dataclasses.replace(result, checkpoint=run.checkpoint)
        if self.processes.is_main:
            metadata = self._checkpoint_metadata(run, result)
            data = None
            try:
                save_training_state(cfg.output, self.model, run.optimizer, run.scheduler,
                                    run.generator, result.epoch, metadata["history"], metadata)
                data = checkpoint_bytes(self.model, metadata)
                atomic_write_bytes(cfg.output, data)
                if cfg.keep_epochs:
                    atomic_write_bytes(epoch_checkpoint(cfg.output, result.epoch), data)
            except OSError as error:
                raise TrainingError(self._rescue(run, error, data or checkpoint_bytes(
                    self.model, metadata), result.epoch)) from error
            run.saved_epoch = result.epoch
        return result

    def _check_output(self) -> None:
        """Refuse an output that cannot be written, before any training: a folder, a
        read-only place, a disk without room for the checkpoint and its training state; and
        a resume with nothing to resume from."""
        cfg = self.config
        output, state = Path(cfg.output), state_path(cfg.output)
        if cfg.resume and not state.exists() and output.exists():
            raise TrainingError(
                f"cannot resume: {output} has no training state beside it ({state.name}); "
                "without --resume a new run starts and replaces it")
        weights = sum(t.numel() * t.element_size() for t in self.model.state_dict().values())
        # The state (weights and two Adam moments) and the checkpoint, each beside its
        # temp file while it is written; with keep_epochs one more checkpoint per epoch.
        needed = 4 * weights + (cfg.epochs * weights if cfg.keep_epochs else 0)
        problem = output_problem(cfg.output, needed)
        if problem:
            raise TrainingError(f"cannot save checkpoints to {cfg.output}: {problem}")

    def _resume(self, optimizer, scheduler, generator) -> list[EpochResult]:
        """Load an interrupted run's state (none: a fresh start); write again a checkpoint
        that a kill while saving left behind the state. Returns the finished epochs."""
        cfg = self.config
        output, state = Path(cfg.output), state_path(cfg.output)
        for path in (output, state):
            remove_stale_temp_files(path)
        if not state.exists():  # (with a checkpoint but no state, _check_output refused)
            return []
        try:
            resumed = load_training_state(output, self.model, optimizer, scheduler, generator,
                                          self.device)
            history = [EpochResult(**h) for h in resumed.history]
        except TypeError as error:
            raise TrainingError(f"{state} is damaged: its history does not fit") from error
        except CheckpointError as error:
            raise TrainingError(str(error)) from error
        kept = epoch_checkpoint(output, resumed.epoch)
        if self.processes.is_main and resumed.checkpoint_metadata is not None and (
                resumed.checkpoint_behind or (cfg.keep_epochs and not kept.exists())):
            data = checkpoint_bytes(self.model, resumed.checkpoint_metadata)
            remove_stale_temp_files(kept)
            atomic_write_bytes(output, data)
            if cfg.keep_epochs:
                atomic_write_bytes(kept, data)
        return history

    def _rescue(self, run: Run, error: OSError, data: bytes, epoch: int) -> str:
        """After a failed write: the checkpoint of ``epoch`` written somewhere else, and a
        message saying where (or that no place could take it)."""
        output = Path(self.config.output)
        reason = f"could not write {error.filename or output}: {error.strerror or error}"
        kept = (f"the last checkpoint written there (epoch {run.saved_epoch}) is unchanged"
                if run.saved_epoch else "nothing was written there")
        name = f"{output.stem}-epoch-{epoch}-rescued{output.suffix or '.safetensors'}"
        for folder in (paths.checkpoints_dir(), Path(tempfile.gettempdir())):
            target = folder / name
            if folder.resolve() == output.parent.resolve() or target.exists():
                continue
            try:
                atomic_write_bytes(target, data)
            except OSError:
                continue
            return f"{reason}. The weights of epoch {epoch} were saved to {target} instead; {kept}"
        return f"{reason}, and no other folder could take the weights of epoch {epoch}; {kept}"

    def _diverged(self, run: Run, when: str) -> str:
        kept = (f"the last good checkpoint (epoch {run.saved_epoch}) is kept in "
                f"{self.config.output}" if run.saved_epoch else "nothing was saved")
        return (f"training diverged {when}: the loss or the weights are no longer finite "
                f"numbers (a learning rate of {self.config.learning_rate:g} may be too high); "
                f"{kept}")

    def _step(self, run: Run, data: Batch, share: float):
        """One optimisation step; returns the model output and the (unweighted) loss."""
        try:
            with autocast(self.device, self.precision):
                output = run.net(data.images, data.labels)
            loss = self.model.loss(output, data.targets, data.labels).total
            run.optimizer.zero_grad(set_to_none=True)
            (loss * share if share != 1.0 else loss).backward()
            run.optimizer.step()
        except torch.OutOfMemoryError as error:
            raise TrainingError(
                f"out of memory on {self.device} at batch size {self.config.batch_size}; "
                "try a smaller --batch-size"
            ) from error
        run.scheduler.step()
        if self.config.min_lr > 0:  # ExponentialLR decays from the group's lr: it stays here
            for group in run.optimizer.param_groups:
                group["lr"] = max(group["lr"], self.config.min_lr)
        return output, loss

    def _wait_if_paused(self) -> bool:
        """Block while paused; False once cancelled."""
        while not self._running.wait(0.05):
            pass
        return not self._cancel.is_set()

    def _finished(self, completed: bool, run: Run) -> TrainingFinished:
        return TrainingFinished(completed, len(run.history), tuple(run.history), run.checkpoint,
                                time.perf_counter() - run.started)

    def _checkpoint_metadata(self, run: Run, result: EpochResult) -> dict:
        cfg = self.config
        epochs = [*run.history, result]
        return {
            "epoch": result.epoch,
            "seed": cfg.seed,
            "train_config": dataclasses.asdict(cfg),
            "metrics": {
                "test_accuracy": result.test_accuracy,
                **({"test_digit_accuracy": result.test_digit_accuracy}
                   if result.test_digit_accuracy is not None else {}),
                "test_loss": result.test_loss,
                "train_accuracy": result.train_accuracy,
                "train_loss": result.train_loss,
            },
            "history": [dataclasses.asdict(h) for h in epochs],
            "dataset": {
                "name": self.task.name,
                "train_images": len(run.train),
                "test_images": cfg.test_subset or "all",
                "train_sha256": run.checksum,
                **self.task.metadata(run.train, run.test),
                **({"published": not self.data_notes} if self._train_set is None else {}),
            },
            **({"initialised_from": self.initialised_from} if self.initialised_from else {}),
            "device": describe_device(self.device),
            "precision": self.precision,
            "processes": self.processes.world_size,
            "training_seconds": round(sum(h.seconds for h in epochs), 2),
            "torch_version": torch.__version__,
            "capsviewer_version": capsviewer.__version__,
            "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }


@contextmanager
def _backend_settings(device: torch.device, precision: str):
    """On CUDA: cuDNN autotuning, and TF32 matrix products unless the plain fp32 path is asked
    for (then no TF32 in convolutions either). Restored afterwards."""
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    tf32 = precision != "fp32"
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = saved

"""A Qt-free trainer that reports through a generator of events.

``Trainer.events()`` yields :class:`BatchProgress` as batches finish (every batch on the CPU;
on a GPU at most every ``progress_interval`` seconds, so the batch loop never waits for the
device), :class:`EvaluationProgress` during each epoch's test pass, an :class:`EpochResult`
per epoch and a final :class:`TrainingFinished`; a GUI worker forwards them as signals, the
CLI draws progress bars. ``cancel()`` and ``pause()`` are thread-safe and act between batches.

Speed: the whole data set sits on the training device and each epoch's order and shifts are
drawn once, so a batch is a gather on the device; metrics accumulate there and are read only
when reported; the convolutions run in bf16 under autocast where the hardware has it
(``precision``), with channels-last weights; Adam is the fused kernel. Under ``torchrun`` the
model is wrapped in DistributedDataParallel (see :mod:`capsviewer.training.distributed`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

import capsviewer
from capsviewer.data import ImageSet, load_dataset, to_float
from capsviewer.data.batches import draw_shifts, shard, shift_images
from capsviewer.models import build_model
from capsviewer.training import distributed
from capsviewer.training.checkpoints import load_checkpoint, save_checkpoint
from capsviewer.training.devices import autocast, describe_device, resolve_precision, select_device
from capsviewer.training.evaluation import (
    EvaluationCancelled,
    EvaluationProgress,
    evaluation_steps,
)
from capsviewer.training.resume import load_training_state, save_training_state, state_path


def epoch_checkpoint(output: str | os.PathLike, epoch: int) -> Path:
    """Where ``--keep-epochs`` keeps epoch ``epoch``: a folder beside the checkpoint (not in
    its folder, where the newest file would become the app's model)."""
    output = Path(output)
    return output.parent / f"{output.stem}.epochs" / f"epoch-{epoch:03d}.safetensors"


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
    keep_epochs: bool = False  # also copy each epoch's checkpoint to epoch_checkpoint(output, n)
    init_from: str | None = None  # start from this checkpoint's weights (fine-tuning)
    # "auto": bf16 convolutions (mixed precision) where the hardware does bf16 natively, else
    # fp32; "fp32" is the plain path (no TF32 either). See devices.resolve_precision.
    precision: str = "auto"
    channels_last: bool | None = None  # channels-last conv weights; None: with bf16
    compile: bool = False  # torch.compile the model (worth it on GPUs; minutes on a CPU)
    # Seconds between BatchProgress events; None: every batch on the CPU, 0.1 s elsewhere
    # (reading the metrics makes the host wait for the device).
    progress_interval: float | None = None


@dataclass(frozen=True)
class BatchProgress:
    epoch: int  # 1-based
    epochs: int
    batch: int  # 1-based within the epoch
    batches: int
    loss: float  # mean over the batches since the previous BatchProgress (this one alone on CPUs)
    accuracy: float  # likewise
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


Event = BatchProgress | EvaluationProgress | EpochResult | TrainingFinished


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
        self.processes = distributed.current()  # one process unless run under torchrun
        self.device = distributed.process_device(select_device(config.device), self.processes)
        self.precision = resolve_precision(config.precision, self.device)
        self._train_set, self._test_set = train_set, test_set
        self._cancel = threading.Event()
        self._running = threading.Event()
        self._running.set()
        torch.manual_seed(config.seed)
        self.model = build_model(config.model, config.model_config).to(self.device)
        self.initialised_from = self._initialise(config.init_from) if config.init_from else None
        channels_last = config.channels_last
        if channels_last is None:
            channels_last = self.precision == "bf16"
        if channels_last:
            self.model.to(memory_format=torch.channels_last)

    def _initialise(self, path: str) -> dict:
        """Load the weights of checkpoint ``path`` (same architecture and config)."""
        source = load_checkpoint(path)
        if source.model.architecture != self.config.model:
            raise TrainingError(f"{path} holds a {source.model.architecture}, not a "
                                f"{self.config.model}")
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

    # -- running ----------------------------------------------------------------------------
    def run(self, callback: Callable[[Event], None] | None = None) -> TrainingFinished:
        for event in self.events():
            if callback is not None:
                callback(event)
        return event

    def events(self) -> Iterator[Event]:
        with _backend_settings(self.device, self.precision):
            yield from self._events()

    def _events(self) -> Iterator[Event]:
        cfg, processes = self.config, self.processes
        train = self._train_set or load_dataset(cfg.dataset, True, cfg.data_root, cfg.download)
        test = self._test_set or load_dataset(cfg.dataset, False, cfg.data_root, cfg.download)
        train = train.subset(cfg.subset, cfg.seed)
        test = test.subset(cfg.test_subset, cfg.seed)
        if cfg.batch_size < processes.world_size:
            raise TrainingError(
                f"batch size {cfg.batch_size} is smaller than the {processes.world_size} processes"
            )
        # All of MNIST is 47 MB as uint8: it lives on the device, and a batch is a gather.
        images, labels = train.images.to(self.device), train.labels.to(self.device)

        fused = self.device.type in ("cpu", "cuda")
        optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.learning_rate,
                                     fused=fused or None)
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
        net = self.model
        if processes.enabled:
            net = DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if cfg.compile:
            net = torch.compile(net)
        interval = cfg.progress_interval
        if interval is None:
            interval = 0.0 if self.device.type == "cpu" else 0.1
        count = len(train)
        batches = math.ceil(count / cfg.batch_size)
        if processes.enabled and 0 < count % cfg.batch_size < processes.world_size:
            batches -= 1  # a last batch too small to give every process an image is skipped
        steps_left = batches * (cfg.epochs - first_epoch + 1)
        started = time.perf_counter()
        steps_done = 0
        checksum = train.checksum()
        checkpoint = history[-1].checkpoint if history else None

        for epoch in range(first_epoch, cfg.epochs + 1):
            self.model.train()
            epoch_start = last_report = time.perf_counter()
            # The epoch's order and shifts, drawn at once and copied to the device once.
            order = torch.randperm(count, generator=generator).to(self.device)
            shifts = None
            if cfg.max_shift > 0:
                shifts = draw_shifts(count, cfg.max_shift, generator).to(self.device)
            window = torch.zeros(2, dtype=torch.float64, device=self.device)  # Σ loss·n, Σ correct
            window_images = 0
            totals = [0.0, 0.0, 0]  # this process's Σ loss·n, Σ correct, images
            for batch in range(1, batches + 1):
                if not self._wait_if_paused():
                    yield self._finished(False, history, checkpoint, started)
                    return
                index = order[(batch - 1) * cfg.batch_size : batch * cfg.batch_size]
                share = 1.0
                if processes.enabled:
                    # Gradients are averaged over processes: weigh each share by its size.
                    local = shard(index, processes.rank, processes.world_size)
                    share, index = len(local) * processes.world_size / len(index), local
                x = images[index]
                if shifts is not None:
                    x = shift_images(x, shifts[:, index], cfg.max_shift)
                x, y = to_float(x), labels[index]
                output, loss = self._step(net, optimizer, x, y, share)
                scheduler.step()
                correct = (output.scores.detach().argmax(1) == y).sum()
                window += torch.stack([loss.detach().double() * len(y), correct.double()])
                window_images += len(y)
                steps_done += 1
                now = time.perf_counter()
                if interval <= 0 or batch == batches or now - last_report >= interval:
                    window_loss, window_correct = window.tolist()  # waits for the device
                    window.zero_()
                    totals[0] += window_loss
                    totals[1] += window_correct
                    totals[2] += window_images
                    now = last_report = time.perf_counter()
                    elapsed = now - started
                    yield BatchProgress(
                        epoch, cfg.epochs, batch, batches,
                        loss=window_loss / window_images,
                        accuracy=window_correct / window_images,
                        images_per_second=totals[2] * processes.world_size
                        / max(now - epoch_start, 1e-9),
                        elapsed_seconds=elapsed,
                        eta_seconds=elapsed / steps_done * (steps_left - steps_done),
                        learning_rate=scheduler.get_last_lr()[0],
                    )
                    window_images = 0
            seconds = time.perf_counter() - epoch_start
            loss_sum, correct_sum, seen = distributed.sum_over_processes(
                torch.tensor(totals, dtype=torch.float64, device=self.device), processes
            ).tolist()
            try:
                result = yield from evaluation_steps(
                    self.model, test, self.device, cfg.eval_batch_size,
                    should_stop=self._cancel.is_set, precision=self.precision,
                    processes=processes)
            except EvaluationCancelled:
                yield self._finished(False, history, checkpoint, started)
                return
            epoch_result = EpochResult(
                epoch, cfg.epochs, loss_sum / seen, correct_sum / seen,
                result.loss, result.accuracy, seconds, seen / seconds, None,
            )
            if cfg.output and processes.is_main:
                checkpoint = str(self._save(epoch_result, history, train, checksum))
                if cfg.keep_epochs:
                    kept = epoch_checkpoint(cfg.output, epoch)
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(checkpoint, kept)
                epoch_result = dataclasses.replace(epoch_result, checkpoint=checkpoint)
                save_training_state(cfg.output, optimizer, scheduler, generator, epoch,
                                    history + [epoch_result])
            elif cfg.output:
                checkpoint = cfg.output  # written by rank 0
                epoch_result = dataclasses.replace(epoch_result, checkpoint=checkpoint)
            history.append(epoch_result)
            yield epoch_result
        yield self._finished(True, history, checkpoint, started)

    def _step(self, net, optimizer, x, y, share: float):
        """One optimisation step; returns the model output and the (unweighted) loss."""
        try:
            with autocast(self.device, self.precision):
                output = net(x, y)
            loss = self.model.loss(output, x, y).total
            optimizer.zero_grad(set_to_none=True)
            (loss * share if share != 1.0 else loss).backward()
            optimizer.step()
        except torch.OutOfMemoryError as error:
            raise TrainingError(
                f"out of memory on {self.device} at batch size {self.config.batch_size}; "
                "try a smaller --batch-size"
            ) from error
        return output, loss

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
                **({"initialised_from": self.initialised_from} if self.initialised_from else {}),
                "device": describe_device(self.device),
                "precision": self.precision,
                "processes": self.processes.world_size,
                "training_seconds": round(sum(h.seconds for h in epochs), 2),
                "torch_version": torch.__version__,
                "capsviewer_version": capsviewer.__version__,
                "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )


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

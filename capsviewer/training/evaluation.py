"""Test-set evaluation of any registered model."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import torch
from torch import nn

from capsviewer.data import ImageSet, iterate_batches, to_float
from capsviewer.training.devices import autocast
from capsviewer.training.distributed import SINGLE, Processes, sum_over_processes


class EvaluationCancelled(Exception):
    pass


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    correct: int
    count: int
    scores: torch.Tensor | None = field(default=None, repr=False, compare=False)  # (N, classes)

    @property
    def error_percent(self) -> float:
        return 100.0 * (1.0 - self.accuracy)


@dataclass(frozen=True)
class EvaluationProgress:
    images: int  # evaluated so far (by this process, under data parallelism)
    total: int


def evaluate(
    model: nn.Module,
    data: ImageSet,
    device: torch.device | str = "cpu",
    batch_size: int = 500,
    should_stop: Callable[[], bool] | None = None,
    *,
    progress: Callable[[EvaluationProgress], None] | None = None,
    **options,
) -> Evaluation:
    """Loss (decoder masked by the true label, as in training) and accuracy over ``data``;
    ``progress`` is called after every batch. Options as for :func:`evaluation_steps`."""
    steps = evaluation_steps(model, data, device, batch_size, should_stop, **options)
    while True:
        try:
            step = next(steps)
        except StopIteration as done:
            return done.value
        if progress is not None:
            progress(step)


@torch.no_grad()
def evaluation_steps(
    model: nn.Module,
    data: ImageSet,
    device: torch.device | str = "cpu",
    batch_size: int = 500,
    should_stop: Callable[[], bool] | None = None,
    *,
    precision: str = "fp32",
    processes: Processes = SINGLE,
    keep_scores: bool = False,
    **forward_options,
) -> Generator[EvaluationProgress, None, Evaluation]:
    """:func:`evaluate` as a generator: yields :class:`EvaluationProgress` after every batch and
    returns the :class:`Evaluation` (``result = yield from evaluation_steps(...)``).
    ``should_stop`` is polled between batches; when it returns True, EvaluationCancelled.
    ``precision`` "bf16" runs the forward pass under autocast. Under data parallelism every
    process evaluates its share and the sums are combined (call it on every process).
    ``keep_scores`` also returns every image's class scores (fp32, CPU; single process only)."""
    if keep_scores and processes.enabled:
        raise ValueError("keep_scores needs a single process")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    images, labels = data.images, data.labels
    if processes.enabled:
        share = slice(processes.rank, None, processes.world_size)
        images, labels = images[share], labels[share]
    images, labels = images.to(device), labels.to(device)  # one copy, not one per batch
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    kept: list[torch.Tensor] = []
    done = 0
    try:
        for x, y in iterate_batches(images, labels, batch_size):
            if should_stop is not None and should_stop():
                raise EvaluationCancelled
            x = to_float(x)
            with autocast(device, precision):
                output = model(x, y, **forward_options)
            total_loss += model.loss(output, x, y).total.double() * len(y)
            correct += (output.scores.argmax(dim=1) == y).sum()
            if keep_scores:
                kept.append(output.scores.float().cpu())
            done += len(y)
            yield EvaluationProgress(done, len(labels))
    finally:
        model.train(was_training)
    total_loss, correct = sum_over_processes(torch.stack([total_loss, correct]), processes).tolist()
    count = len(data)
    scores = torch.cat(kept) if keep_scores else None
    return Evaluation(total_loss / count, correct / count, int(correct), count, scores)


@torch.no_grad()
def predict_classes(model: nn.Module, images: torch.Tensor, device: torch.device | str = "cpu",
                    batch_size: int = 500, **forward_options) -> torch.Tensor:
    """The predicted class of every image (N, 1, H, W), fp32, as a CPU tensor (N,)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        return torch.cat([
            model(to_float(images[i:i + batch_size].to(device)), **forward_options)
            .scores.argmax(dim=1).cpu()
            for i in range(0, len(images), batch_size)
        ])
    finally:
        model.train(was_training)

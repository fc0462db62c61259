"""Test-set evaluation of any registered model."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import torch
from torch import nn

from capsviewer.data import to_float
from capsviewer.data.tasks import TestSet, test_batches
from capsviewer.training.devices import autocast
from capsviewer.training.distributed import SINGLE, Processes, sum_over_processes
from capsviewer.training.metrics import correct as correct_images, label_hits


class EvaluationCancelled(Exception):
    pass


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float  # MultiMNIST: both digits among the two longest capsules (top-2)
    correct: int
    count: int
    scores: torch.Tensor | None = field(default=None, repr=False, compare=False)  # (N, classes)
    digit_accuracy: float | None = None  # MultiMNIST: the share of digits among the two longest

    @property
    def error_percent(self) -> float:
        return 100.0 * (1.0 - self.accuracy)


@dataclass(frozen=True)
class EvaluationProgress:
    images: int  # evaluated so far (by this process, under data parallelism)
    total: int


def evaluate(
    model: nn.Module,
    data: TestSet,
    device: torch.device | str = "cpu",
    batch_size: int = 500,
    should_stop: Callable[[], bool] | None = None,
    *,
    progress: Callable[[EvaluationProgress], None] | None = None,
    **options,
) -> Evaluation:
    """Loss (decoder masked by the true label, as in training) and accuracy over ``data``, single
    images or MultiMNIST pairs; ``progress`` is called after every batch. Options as for
    :func:`evaluation_steps`."""
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
    data: TestSet,
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
    share = slice(None)
    if processes.enabled:
        share = slice(processes.rank, None, processes.world_size)
    total = len(data.labels[share])
    # Σ loss·n, images correct, digits among the longest (MultiMNIST)
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    kept: list[torch.Tensor] = []
    done = 0
    try:
        for batch in test_batches(data, batch_size, device, share):
            if should_stop is not None and should_stop():
                raise EvaluationCancelled
            y = batch.labels
            with autocast(device, precision):
                output = model(batch.images, y, **forward_options)
            hits = label_hits(output.scores, y).sum() if y.ndim == 2 else sums.new_zeros(())
            sums += torch.stack([model.loss(output, batch.targets, y).total.double() * len(y),
                                 correct_images(output.scores, y).sum().double(), hits.double()])
            if keep_scores:
                kept.append(output.scores.float().cpu())
            done += len(y)
            yield EvaluationProgress(done, total)
    finally:
        model.train(was_training)
    total_loss, correct, hits = sum_over_processes(sums, processes).tolist()
    count = len(data)
    scores = torch.cat(kept) if keep_scores else None
    digits = data.labels.shape[1] if data.labels.ndim == 2 else None
    return Evaluation(total_loss / count, correct / count, int(correct), count, scores,
                      hits / (count * digits) if digits else None)


@torch.no_grad()
def predict_classes(model: nn.Module, images: torch.Tensor, device: torch.device | str = "cpu",
                    batch_size: int = 500, **forward_options) -> torch.Tensor:
    """The predicted class of every image (N, 1, H, W), fp32, as a CPU tensor (N,); for a model
    of T digits per image (MultiMNIST) its T classes in ascending order, (N, T)."""
    device = torch.device(device)
    digits = getattr(getattr(model, "config", None), "num_targets", 1)
    was_training = model.training
    model.eval()
    try:
        scores = [model(to_float(images[i:i + batch_size].to(device)), **forward_options).scores
                  for i in range(0, len(images), batch_size)]
        if digits == 1:
            return torch.cat([s.argmax(dim=1).cpu() for s in scores])
        return torch.cat([s.topk(digits, dim=1).indices.sort(dim=1).values.cpu() for s in scores])
    finally:
        model.train(was_training)

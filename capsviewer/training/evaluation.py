"""Test-set evaluation of any registered model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from capsviewer.data import ImageSet, iterate_batches, to_float


class EvaluationCancelled(Exception):
    pass


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    correct: int
    count: int

    @property
    def error_percent(self) -> float:
        return 100.0 * (1.0 - self.accuracy)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: ImageSet,
    device: torch.device | str = "cpu",
    batch_size: int = 500,
    should_stop: Callable[[], bool] | None = None,
    **forward_options,
) -> Evaluation:
    """Loss (decoder masked by the true label, as in training) and accuracy over ``data``.
    ``should_stop`` is polled between batches; when it returns True, EvaluationCancelled."""
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    try:
        for images, labels in iterate_batches(data.images, data.labels, batch_size):
            if should_stop is not None and should_stop():
                raise EvaluationCancelled
            x, y = to_float(images.to(device)), labels.to(device)
            output = model(x, y, **forward_options)
            total_loss += model.loss(output, x, y).total.double() * len(y)
            correct += (output.scores.argmax(dim=1) == y).sum()
    finally:
        model.train(was_training)
    count = len(data)
    return Evaluation(total_loss.item() / count, correct.item() / count, int(correct), count)

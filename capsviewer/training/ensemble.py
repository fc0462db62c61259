"""Several trained models voting together: the mean of their class scores (capsule lengths,
CNN probabilities), measured on a test set. For reports; the app explores one network."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from capsviewer.data import ImageSet, iterate_batches, to_float
from capsviewer.training.devices import autocast
from capsviewer.training.evaluation import EvaluationCancelled


@dataclass(frozen=True)
class EnsembleEvaluation:
    correct: int
    count: int
    disagreements: int  # images where the members' predictions are not all the same
    wrong: tuple[int, ...]  # indices (into the evaluated set) the ensemble gets wrong

    @property
    def accuracy(self) -> float:
        return self.correct / self.count

    @property
    def error_percent(self) -> float:
        return 100.0 * (1.0 - self.accuracy)


@torch.no_grad()
def evaluate_ensemble(
    models: Sequence[nn.Module],
    data: ImageSet,
    device: torch.device | str = "cpu",
    batch_size: int = 500,
    should_stop: Callable[[], bool] | None = None,
    *,
    precisions: Sequence[str] | None = None,
) -> EnsembleEvaluation:
    """Accuracy of the mean class score of ``models`` (two or more, same classes) over ``data``.
    ``precisions`` gives each model's forward precision ("fp32" or "bf16"; default fp32)."""
    if len(models) < 2:
        raise ValueError("an ensemble needs at least two models")
    precisions = list(precisions or ["fp32"] * len(models))
    if len(precisions) != len(models):
        raise ValueError("one precision per model")
    device = torch.device(device)
    modes = [model.training for model in models]
    for model in models:
        model.eval()
    correct = disagreements = 0
    wrong: list[torch.Tensor] = []
    offset = 0
    try:
        for x, y in iterate_batches(data.images, data.labels, batch_size):
            if should_stop is not None and should_stop():
                raise EvaluationCancelled
            x, y = to_float(x.to(device)), y.to(device)
            scores = []
            for model, precision in zip(models, precisions):
                with autocast(device, precision):
                    scores.append(model(x).scores.float())
            if len({s.shape for s in scores}) != 1:
                raise ValueError("the models do not score the same classes")
            stacked = torch.stack(scores)  # (models, B, classes)
            votes = stacked.argmax(dim=2)
            disagreements += int((votes != votes[0]).any(dim=0).sum())
            hits = stacked.mean(dim=0).argmax(dim=1) == y
            correct += int(hits.sum())
            wrong.append((~hits).nonzero().flatten().cpu() + offset)
            offset += len(y)
    finally:
        for model, mode in zip(models, modes):
            model.train(mode)
    return EnsembleEvaluation(correct, len(data), disagreements,
                              tuple(torch.cat(wrong).tolist()) if wrong else ())

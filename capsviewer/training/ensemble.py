"""Several trained models voting together: the mean of their class scores (capsule lengths,
CNN probabilities), from scores each model's evaluation kept. For reports; the app explores
one network."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from capsviewer.training.metrics import correct


@dataclass(frozen=True)
class EnsembleEvaluation:
    correct: int
    count: int
    disagreements: int  # images where the members' predictions (top T for T digits) differ
    wrong: tuple[int, ...]  # indices (into the evaluated set) the ensemble gets wrong

    @property
    def accuracy(self) -> float:
        return self.correct / self.count

    @property
    def error_percent(self) -> float:
        return 100.0 * (1.0 - self.accuracy)


def evaluate_ensemble(scores: Sequence[torch.Tensor], labels: torch.Tensor) -> EnsembleEvaluation:
    """Accuracy of the mean of two or more models' class scores, each (N, classes), against
    ``labels`` (N,), or (N, T) for T digits per image (MultiMNIST: top-T accuracy)."""
    if len(scores) < 2:
        raise ValueError("an ensemble needs at least two models")
    if len({tuple(s.shape) for s in scores}) != 1:
        raise ValueError("the models do not score the same classes")
    stacked = torch.stack([s.float() for s in scores])  # (models, N, classes)
    digits = 1 if labels.ndim == 1 else labels.shape[1]
    votes = stacked.topk(digits, dim=2).indices.sort(dim=2).values  # (models, N, T)
    hits = correct(stacked.mean(dim=0), labels.to(stacked.device))
    return EnsembleEvaluation(
        correct=int(hits.sum()), count=len(labels),
        disagreements=int((votes != votes[0]).any(dim=2).any(dim=0).sum()),
        wrong=tuple((~hits).nonzero().flatten().tolist()))

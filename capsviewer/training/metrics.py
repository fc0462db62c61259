"""Accuracy from class scores, for one digit per image (labels (B,)) or T digits (labels (B, T),
MultiMNIST), on whole batches."""

from __future__ import annotations

import torch


def label_hits(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: is label t of image b among its T highest scores. Its mean is the
    per-digit accuracy."""
    top = scores.topk(labels.shape[1], dim=1).indices  # (B, T)
    return (labels[:, :, None] == top[:, None, :]).any(dim=-1)


def correct(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) bool. One digit: the highest score is the label's. T digits: the T highest scores
    are exactly the T labels (the paper's MultiMNIST criterion: both digits among the two
    longest capsules)."""
    if labels.ndim == 1:
        return scores.argmax(dim=1) == labels
    return label_hits(scores, labels).all(dim=1)


def count_correct(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """How many images of the batch are classified correctly (a tensor on the scores' device)."""
    return correct(scores, labels).sum()

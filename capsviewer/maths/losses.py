"""Losses of the CapsNet paper: margin loss (eq. 4) plus a down-weighted reconstruction loss."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class LossBreakdown(NamedTuple):
    total: torch.Tensor
    margin: torch.Tensor  # or the classification loss of a non-capsule model
    reconstruction: torch.Tensor  # summed squared error per image (0 for models without decoder)


def margin_loss(
    lengths: torch.Tensor,
    labels: torch.Tensor,
    m_plus: float = 0.9,
    m_minus: float = 0.1,
    down_weight: float = 0.5,
) -> torch.Tensor:
    """L = Σ_k T_k max(0, m⁺ − ‖v_k‖)² + λ (1 − T_k) max(0, ‖v_k‖ − m⁻)², summed over classes
    k and averaged over the batch. ``labels`` (B,): one class per image; (B, T): T classes
    present in each image (MultiMNIST: T = 2), T_k = 1 for each of them."""
    present = class_targets(labels, lengths.shape[-1]).to(lengths.dtype)
    loss = present * F.relu(m_plus - lengths).pow(2) + down_weight * (1 - present) * F.relu(
        lengths - m_minus
    ).pow(2)
    return loss.sum(dim=-1).mean()


def class_targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """T_k (B, classes): 1 for every class in ``labels`` (B,) or (B, T), else 0."""
    present = F.one_hot(labels, num_classes)
    return present if labels.ndim == 1 else present.amax(dim=1)


def check_labels(labels: torch.Tensor, targets: int, batch: int) -> None:
    """Labels are (B,) for one digit per image, (B, T) for T; anything else is refused."""
    expected = (batch,) if targets == 1 else (batch, targets)
    if tuple(labels.shape) != expected:
        raise ValueError(f"labels of shape {tuple(labels.shape)} for {batch} images with "
                         f"{targets} digit(s) each; expected {expected}")


def reconstruction_error(reconstruction: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Sum of squared pixel differences per image, averaged over the batch. With T digits per
    image, (B, T, C, H, W) each (every digit against its own image), the T errors add up."""
    if reconstruction.shape != images.shape:
        raise ValueError(f"reconstruction {tuple(reconstruction.shape)} and its target "
                         f"{tuple(images.shape)} differ in shape")
    return (reconstruction - images).pow(2).flatten(1).sum(dim=1).mean()


def capsule_loss(
    lengths: torch.Tensor,
    labels: torch.Tensor,
    reconstruction: torch.Tensor,
    images: torch.Tensor,
    reconstruction_weight: float = 0.0005,
) -> LossBreakdown:
    margin = margin_loss(lengths, labels)
    recon = reconstruction_error(reconstruction, images)
    return LossBreakdown(margin + reconstruction_weight * recon, margin, recon)


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of class logits (B, K) for labels (B,); for (B, T) labels (T digits per
    image) binary cross-entropy against T_k, summed over the classes. Averaged over the batch."""
    if labels.ndim == 1:
        return F.cross_entropy(logits, labels)
    present = class_targets(labels, logits.shape[-1]).to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, present, reduction="none")
    return loss.sum(dim=-1).mean()


def spread_loss(
    activations: torch.Tensor, labels: torch.Tensor, margin: float | torch.Tensor
) -> torch.Tensor:
    """Spread loss of matrix capsules (Hinton et al. 2018, eq. 3):
    L = Σ_{i≠t} max(0, m − (a_t − a_i))², summed over the wrong classes i and averaged over the
    batch, for class activations (B, K) and the target class t of each image."""
    target = activations.gather(1, labels[:, None])  # a_t (B, 1)
    loss = F.relu(margin - (target - activations)).pow(2)
    wrong = 1 - F.one_hot(labels, activations.shape[-1]).to(activations.dtype)
    return (loss * wrong).sum(dim=-1).mean()

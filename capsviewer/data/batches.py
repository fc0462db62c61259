"""Batches and augmentation on whole tensors (no per-image Python work)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels → float32 in [0, 1]."""
    return images.float().div_(255)


def random_shift(
    images: torch.Tensor, max_shift: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Shift each image by its own random (dy, dx) in [−max_shift, max_shift], zero-filled.

    The paper's only augmentation ("shifted by up to 2 pixels in each direction with zero
    padding"). torchvision's transforms draw one set of parameters per call, so a batch would
    share one shift; this draws one per image and applies them all in one gather.
    """
    if max_shift <= 0:
        return images
    batch, _, height, width = images.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (2, batch), generator=generator)
    shifts = shifts.to(images.device)
    padded = F.pad(images, (max_shift,) * 4)
    rows = torch.arange(height, device=images.device) + max_shift - shifts[0, :, None]
    cols = torch.arange(width, device=images.device) + max_shift - shifts[1, :, None]
    index = torch.arange(batch, device=images.device)[:, None, None]
    # padded[b, :, rows[b, y], cols[b, x]] → (B, H, W, C), back to (B, C, H, W)
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def iterate_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images, labels) slices; the last batch may be smaller."""
    count = len(labels)
    order = torch.randperm(count, generator=generator) if shuffle else None
    for start in range(0, count, batch_size):
        if order is None:
            yield images[start : start + batch_size], labels[start : start + batch_size]
        else:
            index = order[start : start + batch_size].to(images.device)
            yield images[index], labels[index]

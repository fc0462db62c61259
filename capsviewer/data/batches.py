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
    return shift_images(images, draw_shifts(len(images), max_shift, generator), max_shift)


def draw_shifts(
    count: int, max_shift: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(2, count) random offsets (dy, dx) in [−max_shift, max_shift], drawn on the CPU."""
    return torch.randint(-max_shift, max_shift + 1, (2, count), generator=generator)


def shift_images(
    images: torch.Tensor, shifts: torch.Tensor, max_shift: int, pad: int = 0
) -> torch.Tensor:
    """Shift image b by (shifts[0, b], shifts[1, b]) pixels, zero-filled; |shift| ≤ max_shift.

    ``pad`` > 0 first centres each image on a canvas ``pad`` pixels larger on every side
    (MultiMNIST: 28×28 digits on 36×36), in the same gather.
    Give ``shifts`` on the images' device (a whole epoch's, drawn once) and nothing here waits
    for the host: the trainer's batch loop stays free of host–device copies.
    """
    batch, _, height, width = images.shape
    shifts = shifts.to(images.device)
    padded = F.pad(images, (max_shift + pad,) * 4)
    rows = torch.arange(height + 2 * pad, device=images.device) + max_shift - shifts[0, :, None]
    cols = torch.arange(width + 2 * pad, device=images.device) + max_shift - shifts[1, :, None]
    index = torch.arange(batch, device=images.device)[:, None, None]
    # padded[b, :, rows[b, y], cols[b, x]] → (B, H, W, C), back to (B, C, H, W)
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def shard(batch: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This process's share of a global batch of indices under data parallelism: every
    ``world_size``-th one from ``rank``. The shares are disjoint, cover the batch and differ
    in size by at most one, so each step sees exactly the images a single process would."""
    return batch[rank::world_size]


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

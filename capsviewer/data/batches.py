"""Batches of whole tensors (no per-image Python work); the transforms are in
:mod:`capsviewer.data.transforms`."""

from __future__ import annotations

from collections.abc import Iterator

import torch


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

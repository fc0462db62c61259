"""MultiMNIST (Sabour, Frosst & Hinton 2017, Section 6): two MNIST digits of different classes,
each padded to 36×36 and shifted by up to 4 pixels in each direction, overlaid.

A pair is first *drawn* (:func:`draw_pairs`: which two digits, how far each moves; indices
only, a whole epoch at once if wanted) and then *composed* (:func:`compose_pairs`: one gather
for a whole batch, on the images' device). Training pairs are drawn afresh every epoch; the
test set (:func:`fixed_test_pairs`) is fixed by a seed and needs only the MNIST test split.

Determinism: all randomness comes from a seeded ``torch.Generator`` on the CPU, in a fixed
order (partners, then shifts), through ``torch.rand`` (float64) and ``torch.randint`` only; the
class grouping is a stable sort. The same seed gives the same bytes on any machine; a torch
release that changed its CPU generator would change them, and a test pins the test set's
sha256 to catch that.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from capsviewer.data.transforms import draw_shifts, shift_images
from capsviewer.data.datasets import ImageSet, tensors_sha256

PAD = 4  # 28×28 digits centred on 36×36 canvases
MAX_SHIFT = 4  # "shifted up to 4 pixels in each direction"
IMAGE_SIZE = 28 + 2 * PAD
TEST_PAIRS = 10_000  # one pair per MNIST test digit (the paper drew 1,000 per digit)
TEST_SEED = 2017

# How the two shifted digits are overlaid. "sum": pixel-wise sum clipped at 255, what the
# authors' released generator does (research/capsules/input_data/mnist/mnist_shift.py,
# np.minimum(a + b, 255)), so the default; "max": pixel-wise maximum, what most replications
# do. They differ only where both strokes have ink; the sum makes crossings brighter.
OVERLAYS = ("sum", "max")


@dataclass(frozen=True)
class PairIndex:
    """Which two digits of a split make each pair, and how far each is shifted."""

    digits: torch.Tensor  # (N, 2) int64 indices into the split; their classes differ
    shifts: torch.Tensor  # (N, 2, 2) int64: (dy, dx) of each digit, |·| ≤ MAX_SHIFT

    def __len__(self) -> int:
        return len(self.digits)

    def __getitem__(self, index) -> PairIndex:
        return PairIndex(self.digits[index], self.shifts[index])

    def to(self, device: torch.device | str) -> PairIndex:
        return PairIndex(self.digits.to(device), self.shifts.to(device))


@dataclass(frozen=True)
class PairBatch:
    """Composed pairs: the model's input, both labels and each digit alone (the targets of
    its reconstruction). uint8 like the splits; ``to_float`` them for a model."""

    images: torch.Tensor  # (N, 1, 36, 36) uint8: the two digits overlaid
    labels: torch.Tensor  # (N, 2) int64: the classes of the first and second digit
    digits: torch.Tensor  # (N, 2, 1, 36, 36) uint8: each digit alone, shifted as overlaid
    pairs: PairIndex

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index) -> PairBatch:
        return PairBatch(self.images[index], self.labels[index], self.digits[index],
                         self.pairs[index])

    def checksum(self) -> str:
        """sha256 of images, labels and digits, to record which pairs a model was tested on."""
        return tensors_sha256(*(t.cpu() for t in (self.images, self.labels, self.digits)))


def draw_partners(
    labels: torch.Tensor, first: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """For each index in ``first``, the index of another image of a different class, uniform
    over all such images (the authors draw and reject same-class partners; counting within
    the images grouped by class gives the same distribution in one draw)."""
    labels, first = labels.cpu(), first.cpu()
    by_class = torch.sort(labels, stable=True).indices
    counts = torch.bincount(labels)
    starts = counts.cumsum(0) - counts
    own = labels[first]
    others = len(labels) - counts[own]
    if (others == 0).any():
        raise ValueError("every image has the same class: no pair of different classes exists")
    draw = torch.rand(len(first), generator=generator, dtype=torch.float64)
    position = (draw * others).long().clamp_(max=others - 1)
    position += counts[own] * (position >= starts[own])  # step over the image's own class
    return by_class[position]


def draw_pairs(
    labels: torch.Tensor,
    first: torch.Tensor,
    generator: torch.Generator | None = None,
    max_shift: int = MAX_SHIFT,
) -> PairIndex:
    """Pair each image ``first[n]`` with a digit of another class and draw both shifts."""
    second = draw_partners(labels, first, generator)
    shifts = draw_shifts(2 * len(first), max_shift, generator)  # (2, 2N): dy row, dx row
    return PairIndex(torch.stack([first.cpu(), second], 1), shifts.T.reshape(-1, 2, 2))


def compose_pairs(
    images: torch.Tensor,
    labels: torch.Tensor,
    pairs: PairIndex,
    overlay: str = "sum",
    max_shift: int = MAX_SHIFT,
) -> PairBatch:
    """Place both digits of every pair on 36×36 canvases, shift them and overlay them, for a
    whole batch in one gather on the images' device. ``images`` uint8 (M, 1, 28, 28)."""
    if overlay not in OVERLAYS:
        raise ValueError(f"unknown overlay {overlay!r}; known: {', '.join(OVERLAYS)}")
    if images.dtype != torch.uint8:
        raise TypeError(f"pairs are composed from uint8 images, not {images.dtype}")
    pairs = pairs.to(images.device)
    shifts = pairs.shifts.flatten(0, 1).T  # (2, 2N), digit-major within each pair
    alone = shift_images(images[pairs.digits.flatten()], shifts, max_shift, PAD)
    digits = alone.unflatten(0, (len(pairs), 2))
    first, second = digits.unbind(1)
    if overlay == "max":
        overlaid = torch.maximum(first, second)
    else:
        overlaid = (first.short() + second).clamp_(max=255).to(torch.uint8)
    return PairBatch(overlaid, labels.to(images.device)[pairs.digits], digits, pairs)


def fixed_test_pairs(
    test: ImageSet, size: int = TEST_PAIRS, seed: int = TEST_SEED, overlay: str = "sum"
) -> PairBatch:
    """The fixed MultiMNIST test set: pair n puts test digit n (mod the split's size) with a
    partner of another class, both shifted; from the test split alone."""
    return compose_pairs(test.images, test.labels, fixed_test_index(test, size, seed), overlay)


def fixed_test_index(test: ImageSet, size: int = TEST_PAIRS, seed: int = TEST_SEED) -> PairIndex:
    """Which digits and shifts make :func:`fixed_test_pairs` (nothing composed)."""
    if size < 1:
        raise ValueError(f"the test set needs at least one pair, not {size}")
    generator = torch.Generator().manual_seed(seed)
    return draw_pairs(test.labels, torch.arange(size) % len(test), generator)

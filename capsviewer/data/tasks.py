"""What a model learns from: a dataset's images one at a time, or MultiMNIST's pairs of
overlapping MNIST digits (:mod:`capsviewer.data.multimnist`). The trainer and the test pass see
only :class:`Batch`es (input, labels, what the decoder reproduces); a task says which images to
load and how a batch is composed from them, so single digits and pairs share every other line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from capsviewer.data.augmentation import (
    AUGMENTATIONS,
    EFFICIENT_CAPSNET,
    SHIFT,
    apply_recipe,
    draw_recipe,
)
from capsviewer.data.datasets import (  # noqa: F401  (the task names, re-exported)
    DATASETS,
    MULTIMNIST,
    TASK_TITLES,
    TASKS,
    ImageSet,
    load_dataset,
)
from capsviewer.data.multimnist import (
    MAX_SHIFT,
    TEST_PAIRS,
    TEST_SEED,
    PairBatch,
    PairIndex,
    compose_pairs,
    draw_pairs,
    fixed_test_pairs,
)
from capsviewer.data.transforms import draw_shifts, shift_images, to_float


TestSet = ImageSet | PairBatch  # the fixed test images (uint8), with each digit alone for pairs


@dataclass(frozen=True)
class Batch:
    images: torch.Tensor  # (B, C, H, W) float in [0, 1]: the model's input
    labels: torch.Tensor  # (B,), or (B, T) for T digits per image
    targets: torch.Tensor  # what the decoder reproduces: ``images``, or each digit alone (B, T, C, H, W)


@dataclass(frozen=True)
class EpochPlan:
    """One epoch's random draws, made at once: the order of the training images and, per
    task, their shifts (by image) or their partners and shifts (by position in the order)."""

    order: torch.Tensor  # (N,) image indices, on the training device
    draws: torch.Tensor | PairIndex | None


def source_dataset(task: str) -> str:
    """The dataset whose images a task is built from (MultiMNIST: MNIST)."""
    return "mnist" if task == MULTIMNIST else task


def get_task(name: str, max_shift: int = 2, augmentation: str = SHIFT) -> Task:
    """The task ``name`` (one of TASKS); ``augmentation`` (one of AUGMENTATIONS) and
    ``max_shift`` (its shifts) are the single-image augmentation."""
    if name == MULTIMNIST:
        return Pairs()
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(TASKS)}")
    if augmentation not in AUGMENTATIONS:
        raise KeyError(f"unknown augmentation {augmentation!r}; known: {', '.join(AUGMENTATIONS)}")
    return Singles(name, max_shift, augmentation)


class Task(ABC):
    name: str

    def load(self, train: bool, root: str | os.PathLike | None = None, download: bool = True,
             should_stop: Callable[[], bool] | None = None) -> ImageSet:
        """The split of the source dataset the task's images come from (``should_stop``: a
        download stops when it says so)."""
        return load_dataset(source_dataset(self.name), train, root, download,
                            should_stop=should_stop)

    @abstractmethod
    def test_set(self, test: ImageSet, subset: int | None = None, seed: int = 0) -> TestSet:
        """What the models are tested on, from the test split (``subset``: fewer)."""

    @abstractmethod
    def draw_epoch(self, labels: torch.Tensor, generator: torch.Generator,
                   device: torch.device) -> EpochPlan:
        """An epoch's order and draws for training images of these ``labels``."""

    @abstractmethod
    def batch(self, images: torch.Tensor, labels: torch.Tensor, plan: EpochPlan,
              positions: torch.Tensor) -> Batch:
        """The batch of the images at ``positions`` of the epoch's order (on the device)."""

    @abstractmethod
    def metadata(self, train: ImageSet, test: TestSet) -> dict:
        """What a checkpoint records about the task beyond its sizes."""


class Singles(Task):
    """One image per input, shifted by up to ``max_shift`` pixels (the paper's augmentation),
    or augmented by Efficient-CapsNet's recipe (:mod:`capsviewer.data.augmentation`)."""

    def __init__(self, name: str, max_shift: int, augmentation: str = SHIFT):
        self.name, self.max_shift, self.augmentation = name, max_shift, augmentation

    def test_set(self, test: ImageSet, subset: int | None = None, seed: int = 0) -> ImageSet:
        return test.subset(subset, seed)

    def metadata(self, train: ImageSet, test: ImageSet) -> dict:
        return {"name": train.name}  # an injected set may be another than the config names

    def draw_epoch(self, labels, generator, device) -> EpochPlan:
        order = torch.randperm(len(labels), generator=generator).to(device)
        draws = None  # by image index
        if self.augmentation == EFFICIENT_CAPSNET:
            draws = draw_recipe(len(labels), generator=generator).to(device)
        elif self.max_shift > 0:
            draws = draw_shifts(len(labels), self.max_shift, generator).to(device)
        return EpochPlan(order, draws)

    def batch(self, images, labels, plan, positions) -> Batch:
        index = plan.order[positions]
        x = images[index]
        if self.augmentation == EFFICIENT_CAPSNET:
            x = apply_recipe(to_float(x), plan.draws[:, index])
        else:
            if plan.draws is not None:
                x = shift_images(x, plan.draws[:, index], self.max_shift)
            x = to_float(x)
        return Batch(x, labels[index], x)


class Pairs(Task):
    """MultiMNIST: every training digit, in a fresh order each epoch, with a fresh partner of
    another class and fresh shifts; tested on the fixed seeded pairs of the test split."""

    name = MULTIMNIST

    def __init__(self, overlay: str = "sum", test_seed: int = TEST_SEED,
                 test_pairs: int = TEST_PAIRS):
        self.overlay, self.test_seed, self.test_pairs = overlay, test_seed, test_pairs

    def test_set(self, test: ImageSet, subset: int | None = None, seed: int = 0) -> PairBatch:
        """The fixed test pairs; ``subset``: the first that many of them."""
        pairs = fixed_test_pairs(test, self.test_pairs, self.test_seed, self.overlay)
        return pairs if subset is None else pairs[:subset]

    def draw_epoch(self, labels, generator, device) -> EpochPlan:
        order = torch.randperm(len(labels), generator=generator)
        return EpochPlan(order.to(device), draw_pairs(labels, order, generator).to(device))

    def batch(self, images, labels, plan, positions) -> Batch:
        pairs = compose_pairs(images, labels, plan.draws[positions], self.overlay)
        return Batch(to_float(pairs.images), pairs.labels, to_float(pairs.digits))

    def metadata(self, train: ImageSet, test: PairBatch) -> dict:
        return {"source": "mnist", "overlay": self.overlay, "max_shift": MAX_SHIFT,
                "test_seed": self.test_seed, "test_pairs": len(test),
                "test_sha256": test.checksum()}


def test_batches(data: TestSet, batch_size: int, device: torch.device | str,
                 share: slice = slice(None)) -> Iterator[Batch]:
    """The test set in batches on ``device`` (``share``: this process's part under data
    parallelism); one copy to the device, not one per batch."""
    images, labels = data.images[share].to(device), data.labels[share].to(device)
    digits = data.digits[share].to(device) if isinstance(data, PairBatch) else None
    for start in range(0, len(labels), batch_size):
        part = slice(start, start + batch_size)
        x = to_float(images[part])
        yield Batch(x, labels[part], x if digits is None else to_float(digits[part]))

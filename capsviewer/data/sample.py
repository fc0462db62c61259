"""The sample of the MNIST test set that ships with capsviewer (its first 1,000 images), and the
test set to browse: the full one when it is on this machine, else that sample."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from capsviewer.data.datasets import (
    DatasetUnavailable,
    ImageSet,
    image_set,
    load_dataset,
    read_split,
)
from capsviewer.data.download import Progress
from capsviewer.resources import resource_path

SAMPLE_SIZE = 1000
SAMPLE_METADATA = {
    "dataset": "mnist",
    "split": "test",
    "images": f"the first {SAMPLE_SIZE} of the 10000 test images, in order",
    "source": "The MNIST database of handwritten digits, Yann LeCun, Corinna Cortes and "
              "Christopher J. C. Burges, http://yann.lecun.com/exdb/mnist/",
    "licence": "CC BY-SA 3.0, https://creativecommons.org/licenses/by-sa/3.0/",
}


def sample_path(name: str = "mnist") -> Path:
    return resource_path("data", f"{name}-test-{SAMPLE_SIZE}.safetensors")


def load_sample(name: str = "mnist") -> ImageSet:
    """The shipped sample of ``name``'s test set (``is_sample``); FileNotFoundError if none ships."""
    return image_set(name, False, *read_sample(name), is_sample=True)


def read_sample(name: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    """The shipped sample as numpy arrays (images, labels), without importing torch."""
    from safetensors.numpy import load_file

    path = sample_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no sample of {name} ships with capsviewer")
    arrays = load_file(str(path))
    return arrays["images"], arrays["labels"]


def read_test_set(name: str = "mnist", root: str | os.PathLike | None = None
                  ) -> tuple[np.ndarray, np.ndarray, bool]:
    """What :func:`load_test_set` gives without a download, as numpy arrays and without
    importing torch: (images, labels, is_sample). DatasetUnavailable when neither is here."""
    try:
        return (*read_split(name, train=False, root=root), False)
    except DatasetUnavailable:
        if not sample_path(name).is_file():
            raise
    return (*read_sample(name), True)


def load_test_set(
    name: str = "mnist",
    root: str | os.PathLike | None = None,
    download: bool = False,
    images_needed: int = 1,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ImageSet:
    """The full test set when it is in the data root; else the shipped sample, if it holds the
    first ``images_needed`` images (they are the same images); else, with ``download``, the
    test set downloaded (never the training set). DatasetUnavailable says where files go."""
    try:
        return load_dataset(name, train=False, root=root, download=False)
    except DatasetUnavailable:
        if sample_path(name).is_file() and images_needed <= SAMPLE_SIZE:
            return load_sample(name)
        if not download:
            raise
    return load_dataset(name, train=False, root=root, download=True, progress=progress,
                        should_stop=should_stop)

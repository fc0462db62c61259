"""Datasets (MNIST, Fashion-MNIST) and tensor-level batching and augmentation."""

from capsviewer.data.batches import iterate_batches
from capsviewer.data.datasets import (
    DATASET_TITLES,
    DATASETS,
    ENV_VAR,
    DatasetUnavailable,
    ImageSet,
    default_data_root,
    load_dataset,
    resolve_data_root,
)
from capsviewer.data.transforms import random_shift, to_float

__all__ = [
    "DATASET_TITLES",
    "DATASETS",
    "ENV_VAR",
    "DatasetUnavailable",
    "ImageSet",
    "default_data_root",
    "iterate_batches",
    "load_dataset",
    "random_shift",
    "resolve_data_root",
    "to_float",
]

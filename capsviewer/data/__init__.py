"""Datasets (MNIST, Fashion-MNIST) and tensor-level batching and augmentation.

Importing the package does not import torch (the app shows its window first): the batching
and transform helpers are loaded on first use."""

from capsviewer import lazy_exports
from capsviewer.data.datasets import (
    DATASET_TITLES,
    DATASETS,
    ENV_VAR,
    DatasetUnavailable,
    ImageSet,
    default_data_root,
    image_set,
    load_dataset,
    read_split,
    resolve_data_root,
)
from capsviewer.data.download import DownloadCancelled
from capsviewer.data.sample import SAMPLE_SIZE, load_sample, load_test_set, read_test_set

__getattr__ = lazy_exports(__name__, {"iterate_batches": "batches", "random_shift": "transforms",
                                       "to_float": "transforms"})


__all__ = [
    "DATASET_TITLES",
    "DATASETS",
    "ENV_VAR",
    "DatasetUnavailable",
    "DownloadCancelled",
    "ImageSet",
    "SAMPLE_SIZE",
    "default_data_root",
    "image_set",
    "iterate_batches",
    "load_dataset",
    "load_sample",
    "load_test_set",
    "random_shift",
    "read_split",
    "read_test_set",
    "resolve_data_root",
    "to_float",
]

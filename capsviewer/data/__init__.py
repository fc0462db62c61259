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
from capsviewer.data.download import DownloadCancelled
from capsviewer.data.sample import SAMPLE_SIZE, load_sample, load_test_set
from capsviewer.data.transforms import random_shift, to_float

__all__ = [
    "DATASET_TITLES",
    "DATASETS",
    "ENV_VAR",
    "DatasetUnavailable",
    "DownloadCancelled",
    "ImageSet",
    "SAMPLE_SIZE",
    "default_data_root",
    "iterate_batches",
    "load_dataset",
    "load_sample",
    "load_test_set",
    "random_shift",
    "resolve_data_root",
    "to_float",
]

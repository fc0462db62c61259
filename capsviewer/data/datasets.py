"""MNIST and Fashion-MNIST in torchvision's layout, held in memory as uint8 tensors.

Files already on disk are read directly (IDX format, no torchvision import: it costs the app
over a second of start-up). Importing this module, and reading a split as numpy arrays
(:func:`read_split`), do not import torch either: the app shows its test-set browser before
torch is loaded. A missing split (the training or the test set, each two files) is
downloaded from torchvision's mirrors, checked against its MD5 sums, and unpacked.

The data root is, in order: the ``root`` argument (``--data-root``), the environment variable
``CAPSVIEWER_DATA``, or the user's data directory.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from capsviewer import paths
from capsviewer.checks import printable
from capsviewer.data.download import DownloadError, Progress, download as download_file

ENV_VAR = "CAPSVIEWER_DATA"
DATA_ROOT_HELP = (f"dataset folder in torchvision's layout (default: ${ENV_VAR}, else the user "
                  "data directory, where missing datasets are downloaded)")
# Debian's dataset-fashion-mnist package puts the four canonical .gz files here.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


SIDE = 28  # MNIST's and Fashion-MNIST's images are 28×28

_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class DatasetSpec:
    folder: str  # torchvision's class name; it keeps files in <root>/<folder>/raw
    classes: tuple[str, ...]
    files: tuple[str, ...] = _FILES

    @property
    def torchvision_class(self) -> type:
        from torchvision import datasets

        return getattr(datasets, self.folder)

    def split_files(self, train: bool) -> tuple[str, str]:
        return self.files[:2] if train else self.files[2:]

    def sources(self, file: str) -> tuple[list[str], str]:
        """The URLs of ``file``.gz (torchvision's mirrors) and its MD5 sum."""
        dataset = self.torchvision_class
        return [f"{mirror}{file}.gz" for mirror in dataset.mirrors], dict(dataset.resources)[f"{file}.gz"]


DATASETS = {
    "mnist": DatasetSpec("MNIST", tuple(str(d) for d in range(10))),
    "fashion-mnist": DatasetSpec(
        "FashionMNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}


DATASET_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
# What training and evaluation take as --dataset: the datasets, and MultiMNIST's pairs of
# overlapping MNIST digits (composed by capsviewer.data.tasks; named here, without torch).
MULTIMNIST = "multimnist"
TASKS = (*DATASETS, MULTIMNIST)
TASK_TITLES = {**DATASET_TITLES, MULTIMNIST: "MultiMNIST"}


class DatasetUnavailable(RuntimeError):
    """The dataset is neither on disk nor downloadable; the message says where files go."""


@dataclass(frozen=True)
class ImageSet:
    """A whole split in memory: images uint8 (N, 1, 28, 28) and labels int64 (N,), torch
    tensors (:func:`image_set` makes one from numpy arrays)."""

    name: str
    train: bool
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    is_sample: bool = False  # the test-set sample that ships with capsviewer, not the full split

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, size: int | None, seed: int = 0) -> ImageSet:
        """A reproducible random subset of ``size`` images (all of them when None)."""
        if size is None or size >= len(self):
            return self
        if size < 1:
            raise ValueError(f"subset size must be positive, got {size}")
        import torch

        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:size]
        return ImageSet(self.name, self.train, self.images[order], self.labels[order], self.classes,
                        self.is_sample)

    def checksum(self) -> str:
        """sha256 of images and labels, to record which data a model saw."""
        return tensors_sha256(self.images, self.labels)


def tensors_sha256(*tensors: torch.Tensor) -> str:
    """sha256 of the tensors' bytes, one after the other (CPU tensors)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


# tensors_sha256(images, labels) of the published splits (MNIST's label counts check out:
# 5,923 zeros … 5,949 nines in training, 980 … 1,009 in the test set).
PUBLISHED = {
    ("mnist", True): "248860264fc8de75429139750649e4041df8987541c2956f067961c6b579f69a",
    ("mnist", False): "a0863a96c44e5666edbb30c4071ee79ca0514c621e6349c5967fc78e7305c891",
}


def unpublished_note(images: ImageSet) -> str | None:
    """A sentence when a whole split is not the published dataset's (altered or corrupted
    files, or other data in its layout); None when it is, or when that cannot be told."""
    known = PUBLISHED.get((images.name, images.train))
    if known is None or images.is_sample or images.checksum() == known:
        return None
    split = "training" if images.train else "test"
    return (f"the {DATASET_TITLES[images.name]} {split} set in the data folder is not the "
            "published one (its images or labels differ): results will not compare with "
            "the paper's or with models trained on it")


def default_data_root() -> Path:
    return paths.datasets_dir()


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return default_data_root()


def load_dataset(
    name: str = "mnist",
    train: bool = True,
    root: str | os.PathLike | None = None,
    download: bool = True,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ImageSet:
    """Load a split; its files missing from ``root`` are downloaded if ``download`` is set
    (only that split's: browsing the test set never fetches the training set)."""
    return image_set(name, train, *read_split(name, train, root, download, progress, should_stop))


def read_split(
    name: str = "mnist",
    train: bool = True,
    root: str | os.PathLike | None = None,
    download: bool = False,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A split as numpy arrays, images uint8 (N, 28, 28) and labels uint8 (N,), without
    importing torch; as :func:`load_dataset` otherwise (nothing is downloaded by default)."""
    if name not in DATASETS:
        raise DatasetUnavailable(f"unknown dataset {printable(repr(name), 60)}; capsviewer "
                                 f"knows {', '.join(DATASETS)}")
    spec = DATASETS[name]
    root = resolve_data_root(root)
    if name == "fashion-mnist" and not _has_files(spec, root, train):
        root = _debian_fashion_mnist(spec) or root
    raw = root / spec.folder / "raw"
    for file in spec.split_files(train):
        if not (raw / file).exists():
            _fetch(name, root, train, file, download, progress, should_stop)
    image_file, label_file = (raw / f for f in spec.split_files(train))
    images, labels = _read_idx(image_file, 3), _read_idx(label_file, 1)
    _check_split(spec, image_file, images, label_file, labels)
    return images, labels


def image_set(name: str, train: bool, images: np.ndarray, labels: np.ndarray,
              is_sample: bool = False) -> ImageSet:
    """An ImageSet sharing the memory of uint8 arrays, images (N, 28, 28) or (N, 1, 28, 28)."""
    import torch

    images = torch.from_numpy(np.ascontiguousarray(images).reshape(len(images), 1, 28, 28))
    return ImageSet(name, train, images, torch.from_numpy(np.asarray(labels)).long(),
                    DATASETS[name].classes, is_sample)


def _check_split(spec: DatasetSpec, image_file: Path, images: np.ndarray, label_file: Path,
                 labels: np.ndarray) -> None:
    """A split as capsviewer's models need it: 28×28 images, one label each, every label a
    class of the dataset."""
    def fail(reason: str) -> DatasetUnavailable:
        return DatasetUnavailable(f"{reason}; replace the files (delete them to download "
                                  "them again)")

    if tuple(images.shape[1:]) != (SIDE, SIDE):
        raise fail(f"{image_file} holds {images.shape[1]}×{images.shape[2]} images, not "
                   f"{SIDE}×{SIDE}")
    if len(images) == 0:
        raise fail(f"{image_file} holds no images")
    if len(images) != len(labels):
        raise fail(f"{image_file} holds {len(images):,} images but {label_file} "
                   f"{len(labels):,} labels")
    largest = int(labels.max())
    if largest >= len(spec.classes):
        raise fail(f"{label_file} holds the label {largest}, and there are only "
                   f"{len(spec.classes)} classes (0 to {len(spec.classes) - 1})")


def _fetch(name: str, root: Path, train: bool, file: str, download: bool,
           progress: Progress | None, should_stop: Callable[[], bool] | None) -> None:
    """Put ``file`` in place: unpack its .gz, downloading that first if it is missing."""
    spec = DATASETS[name]
    raw = root / spec.folder / "raw"
    archive = raw / f"{file}.gz"
    if not archive.exists():
        if not download:
            raise DatasetUnavailable(missing_message(name, root, train, "it is not on this machine"))
        urls, md5 = spec.sources(file)
        try:
            download_file(urls, archive, md5, progress, should_stop)
        except DownloadError as error:
            raise DatasetUnavailable(missing_message(name, root, train,
                                                     f"the download failed ({error})")) from error
    _gunzip(archive, raw / file)


def _gunzip(archive: Path, target: Path) -> None:
    partial = target.with_suffix(".tmp")
    try:
        with gzip.open(archive, "rb") as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (OSError, EOFError) as error:
        partial.unlink(missing_ok=True)
        raise DatasetUnavailable(f"{archive} is damaged ({error}); delete it to download again") from error
    partial.replace(target)


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes (MNIST's format) with ``ndim`` dimensions: magic,
    dimensions, then the data."""
    try:
        if not path.is_file():
            raise DatasetUnavailable(f"{path} is not a file (a folder or a device); put the "
                                     "dataset file there")
        data = path.read_bytes()
    except OSError as error:
        raise DatasetUnavailable(f"cannot read {path}: {error.strerror or error}") from error
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08 or data[3] != ndim:
        raise DatasetUnavailable(f"{path} is not an IDX file of {ndim}-D bytes; delete it to "
                                 "download again")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetUnavailable(f"{path} is truncated; delete it to download again")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) != header + math.prod(dims):
        raise DatasetUnavailable(f"{path} is truncated; delete it to download again")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims).copy()


def _has_files(spec: DatasetSpec, root: Path, train: bool) -> bool:
    raw = root / spec.folder / "raw"
    return all((raw / f).exists() for f in spec.split_files(train))


def _debian_fashion_mnist(spec: DatasetSpec) -> Path | None:
    """Unpack Debian's Fashion-MNIST .gz files once into the user cache; None if absent."""
    sources = [DEBIAN_FASHION_MNIST / f"{f}.gz" for f in spec.files]
    if not all(p.exists() for p in sources):
        return None
    cache = paths.cache_dir("debian-datasets")
    raw = cache / spec.folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for source in sources:
        if not (raw / source.stem).exists():
            _gunzip(source, raw / source.stem)
    return cache


def missing_message(name: str, root: Path, train: bool, reason: str) -> str:
    """Why a split is unavailable and where its files go, in one paragraph."""
    spec, title = DATASETS[name], DATASET_TITLES[name]
    files = " and ".join(spec.split_files(train))
    return (
        f"The {title} {'training' if train else 'test'} set is not available: {reason}. "
        f"Put {files} (or their .gz) in {root / spec.folder / 'raw'}, or point capsviewer at "
        f"another data folder with --data-root or ${ENV_VAR}."
    )

"""MNIST and Fashion-MNIST in torchvision's layout, held in memory as uint8 tensors.

Files already on disk are read directly (IDX format, no torchvision import: it costs the app
over a second of start-up); torchvision downloads the ones that are missing.

The data root is, in order: the ``root`` argument (``--data-root``), the environment variable
``CAPSVIEWER_DATA``, or the user's data directory, where torchvision downloads the files.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ENV_VAR = "CAPSVIEWER_DATA"
# Debian's dataset-fashion-mnist package puts the four canonical .gz files here.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


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


DATASETS = {
    "mnist": DatasetSpec("MNIST", tuple(str(d) for d in range(10))),
    "fashion-mnist": DatasetSpec(
        "FashionMNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}


DATASET_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


class DatasetUnavailable(RuntimeError):
    """The dataset is neither on disk nor downloadable; the message says where files go."""


@dataclass(frozen=True)
class ImageSet:
    """A whole split in memory: images uint8 (N, 1, 28, 28) and labels int64 (N,)."""

    name: str
    train: bool
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, size: int | None, seed: int = 0) -> ImageSet:
        """A reproducible random subset of ``size`` images (all of them when None)."""
        if size is None or size >= len(self):
            return self
        if size < 1:
            raise ValueError(f"subset size must be positive, got {size}")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:size]
        return ImageSet(self.name, self.train, self.images[order], self.labels[order], self.classes)

    def checksum(self) -> str:
        """sha256 of images and labels, to record which data a model saw."""
        return tensors_sha256(self.images, self.labels)


def tensors_sha256(*tensors: torch.Tensor) -> str:
    """sha256 of the tensors' bytes, one after the other (CPU tensors)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def default_data_root() -> Path:
    import platformdirs  # here, not at import: the core must import where it is absent

    return platformdirs.user_data_path("capsviewer") / "datasets"


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
) -> ImageSet:
    """Load a split, downloading it into ``root`` if it is missing and ``download`` is set."""
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    root = resolve_data_root(root)
    if name == "fashion-mnist" and not _has_files(spec, root):
        root = _debian_fashion_mnist(spec) or root
    if _has_files(spec, root):
        raw = root / spec.folder / "raw"
        images, labels = (_read_idx(raw / f) for f in spec.split_files(train))
        return ImageSet(name, train, images.unsqueeze(1).contiguous(), labels.long(), spec.classes)
    try:
        ds = spec.torchvision_class(str(root), train=train, download=False)
    except RuntimeError:
        if not download:
            raise DatasetUnavailable(_missing_message(spec, root, "downloading is switched off")) from None
        try:
            ds = spec.torchvision_class(str(root), train=train, download=True)
        except Exception as error:  # torchvision raises RuntimeError/URLError/OSError offline
            raise DatasetUnavailable(_missing_message(spec, root, f"download failed: {error}")) from error
    images = ds.data.unsqueeze(1).contiguous()
    return ImageSet(name, train, images, ds.targets.long(), spec.classes)


def _read_idx(path: Path) -> torch.Tensor:
    """An IDX file of unsigned bytes (MNIST's format): magic, dimensions, then the data."""
    data = path.read_bytes()
    if len(data) < 8 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise DatasetUnavailable(f"{path} is not an IDX file of bytes; delete it to download again")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    if len(data) != 4 + 4 * ndim + int(np.prod(dims)):
        raise DatasetUnavailable(f"{path} is truncated; delete it to download again")
    return torch.from_numpy(np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims).copy())


def _has_files(spec: DatasetSpec, root: Path) -> bool:
    raw = root / spec.folder / "raw"
    return all((raw / f).exists() for f in spec.files)


def _debian_fashion_mnist(spec: DatasetSpec) -> Path | None:
    """Unpack Debian's Fashion-MNIST .gz files once into the user cache; None if absent."""
    sources = [DEBIAN_FASHION_MNIST / f"{f}.gz" for f in spec.files]
    if not all(p.exists() for p in sources):
        return None
    import platformdirs

    cache = platformdirs.user_cache_path("capsviewer") / "debian-datasets"
    raw = cache / spec.folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for source in sources:
        target = raw / source.stem
        if not target.exists():
            partial = target.with_suffix(".tmp")
            with gzip.open(source, "rb") as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
            partial.replace(target)
    return cache


def _missing_message(spec: DatasetSpec, root: Path, reason: str) -> str:
    raw = root / spec.folder / "raw"
    return (
        f"{spec.folder} is not available: {reason}.\n"
        f"Put the files {', '.join(spec.files)} (or their .gz) in {raw},\n"
        f"or point capsviewer at another data root with --data-root or ${ENV_VAR}."
    )

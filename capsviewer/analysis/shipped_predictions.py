"""The shipped models' predicted class for every MNIST test image, shipped with them, so the
app's "Misclassified only" filter is there at once (computing them takes the CapsNet from
15 s to minutes on a CPU).

One small file per model in ``capsviewer/resources/predictions`` (10,000 uint8 classes, as
safetensors). Its metadata names what the predictions belong to, and each is checked before
use: the checkpoint file's sha256, the routing iterations R (the model's own; another R is
computed), and the sha256 of the test set (images and labels, :meth:`ImageSet.checksum`) or
of the shipped sample, which holds its first images. Written by
``python tools/make_shipped_predictions.py --data-root ../shared/data``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from capsviewer.resources import resource_path

FOLDER = ("predictions",)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def shipped_predictions(checkpoint_sha256: str, data_sha256: str,
                        iterations: int | None) -> np.ndarray | None:
    """The shipped predictions of the checkpoint whose file has ``checkpoint_sha256``, routed
    with R = ``iterations`` (None for a CNN), for the test images whose checksum is
    ``data_sha256`` (the full test set or the shipped sample); None when none ship."""
    from safetensors import safe_open

    folder = resource_path(*FOLDER)
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else ():
        with safe_open(str(path), framework="numpy") as file:
            meta = file.metadata() or {}
            if meta.get("checkpoint_sha256") != checkpoint_sha256:
                continue
            if meta.get("routing_iterations", "") != ("" if iterations is None else str(iterations)):
                continue
            if data_sha256 == meta.get("test_sha256"):
                return file.get_tensor("predicted").astype(np.int64)
            if data_sha256 == meta.get("sample_sha256"):
                size = int(meta["sample_size"])
                return file.get_tensor("predicted")[:size].astype(np.int64)
    return None


def write_shipped_predictions(checkpoint: Path, predicted: np.ndarray, iterations: int | None,
                              test_sha256: str, sample_sha256: str, sample_size: int) -> Path:
    """Write the predictions of ``checkpoint`` for the whole test set (``predicted``, (N,))."""
    from safetensors.numpy import save_file

    folder = resource_path(*FOLDER)
    folder.mkdir(exist_ok=True)
    path = folder / f"{Path(checkpoint).stem}.safetensors"
    metadata = {
        "checkpoint": Path(checkpoint).name,
        "checkpoint_sha256": file_sha256(checkpoint),
        "routing_iterations": "" if iterations is None else str(iterations),
        "test_sha256": test_sha256,
        "sample_sha256": sample_sha256,
        "sample_size": str(sample_size),
        "computed_with": "capsviewer.analysis.inspection.predict_all, fp32, batches of 100",
    }
    save_file({"predicted": np.asarray(predicted, dtype=np.uint8)}, str(path), metadata=metadata)
    return path

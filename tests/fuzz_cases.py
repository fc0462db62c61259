"""Crafted bad inputs for the fuzz tests, generated deterministically: checkpoints (files,
headers, metadata, tensors), dataset folders, image files. Each case is a name and a writer."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from capsviewer.models import build_model
from capsviewer.training.checkpoints import FORMAT, METADATA_KEY, save_checkpoint, serialise

TINY_CNN = {"channels": [4, 8, 8], "hidden": 16}
ESCAPE = "\x1b[2J\x1b[31mred\x1b]0;title\x07\u202e"  # clear screen, colour, window title, bidi


def tiny_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("cnn", TINY_CNN)


def good_metadata(**changes) -> dict:
    meta = {"format": FORMAT, "format_version": 1, "architecture": "cnn", "config":
            tiny_cnn().config.to_dict(), "epoch": 1, "dataset": {"name": "mnist"}}
    meta.update(changes)
    return meta


def with_header(text: str, tensors: dict | None = None) -> bytes:
    """A safetensors file whose capsviewer metadata is ``text`` verbatim."""
    import safetensors.torch

    tensors = tensors if tensors is not None else tiny_cnn().state_dict()
    return safetensors.torch.save({k: v.contiguous() for k, v in tensors.items()},
                                  metadata={METADATA_KEY: text})


def with_metadata(**changes) -> bytes:
    return with_header(json.dumps(good_metadata(**changes)))


def with_tensor(key: str, value: torch.Tensor | None) -> bytes:
    """The tiny CNN with one tensor replaced (None: removed)."""
    tensors = dict(tiny_cnn().state_dict())
    if value is None:
        del tensors[key]
    else:
        tensors[key] = value
    return serialise(tensors, good_metadata())


def _weight(fill=None, dtype=torch.float32) -> torch.Tensor:
    w = tiny_cnn().state_dict()["classifier.weight"].clone()
    if fill is not None:
        w[3, 5] = fill
    return w.to(dtype)


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch EXPLOITED",))


def _unlimited_int(digits: int) -> str:
    return "1" * digits


# Header and metadata cases: (name, bytes). Every one must be refused with a sentence.
METADATA_CASES: dict[str, Callable[[], bytes]] = {
    "json-null": lambda: with_header("null"),
    "json-list": lambda: with_header("[1, 2]"),
    "json-string": lambda: with_header('"cnn"'),
    "json-number": lambda: with_header("42"),
    "not-json": lambda: with_header("{\"format\": "),
    "nested-100000": lambda: with_header('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    "nested-50": lambda: with_header(json.dumps(good_metadata()) [:-1] + ', "x": '
                                     + "[" * 50 + "]" * 50 + "}"),
    "int-5000-digits": lambda: with_header(json.dumps(good_metadata())[:-1] + ', "epoch": '
                                           + _unlimited_int(5000) + "}"),
    "nan-literal": lambda: with_header(json.dumps(good_metadata())[:-1] + ', "seed": NaN}'),
    "infinity-literal": lambda: with_header(json.dumps(good_metadata())[:-1]
                                            + ', "training_seconds": Infinity}'),
    "float-overflow": lambda: with_header(json.dumps(good_metadata())[:-1]
                                          + ', "training_seconds": 1e999}'),
    "architecture-number": lambda: with_metadata(architecture=5),
    "architecture-null": lambda: with_metadata(architecture=None),
    "architecture-list": lambda: with_metadata(architecture=["cnn"]),
    "architecture-unknown": lambda: with_metadata(architecture="resnet"),
    "architecture-escape": lambda: with_metadata(architecture=ESCAPE),
    "config-list": lambda: with_metadata(config=[1, 2]),
    "config-string": lambda: with_metadata(config="big"),
    "config-negative": lambda: with_metadata(config={**TINY_CNN, "hidden": -16}),
    "config-huge": lambda: with_metadata(config={**TINY_CNN, "hidden": 10**12}),
    "config-text-number": lambda: with_metadata(config={**TINY_CNN, "hidden": "16"}),
    "config-bool-number": lambda: with_metadata(config={**TINY_CNN, "hidden": True}),
    "config-unknown-key": lambda: with_metadata(config={**TINY_CNN, "evil": 1}),
    "config-layers-text": lambda: with_metadata(config={**TINY_CNN, "channels": "abc"}),
    "config-dropout-2": lambda: with_metadata(config={**TINY_CNN, "dropout": 2.0}),
    "config-layers-do-not-fit": lambda: with_metadata(architecture="capsnet",
                                                      config={"image_size": 8}),
    "config-even-kernels": lambda: with_metadata(config={**TINY_CNN, "kernel_sizes": [4, 4, 4]}),
    "dataset-string": lambda: with_metadata(dataset="mnist"),
    "dataset-name-number": lambda: with_metadata(dataset={"name": 5}),
    "dataset-negative-images": lambda: with_metadata(dataset={"name": "mnist", "train_images": -1}),
    "epoch-negative": lambda: with_metadata(epoch=-1),
    "epoch-text": lambda: with_metadata(epoch="3"),
    "epoch-fraction": lambda: with_metadata(epoch=1.5),
    "epoch-bool": lambda: with_metadata(epoch=True),
    "metrics-list": lambda: with_metadata(metrics=[0.9]),
    "metrics-accuracy-2": lambda: with_metadata(metrics={"test_accuracy": 2.0}),
    "metrics-text": lambda: with_metadata(metrics={"test_accuracy": "high"}),
    "metrics-null": lambda: with_metadata(metrics={"test_loss": None}),
    "history-mapping": lambda: with_metadata(history={"epoch": 1}),
    "history-numbers": lambda: with_metadata(history=[1, 2]),
    "seed-2-to-70": lambda: with_metadata(seed=2**70),
    "seed-negative": lambda: with_metadata(seed=-5),
    "train-config-list": lambda: with_metadata(train_config=[]),
    "train-config-negative-lr": lambda: with_metadata(train_config={"learning_rate": -1}),
    "train-config-huge-epochs": lambda: with_metadata(train_config={"epochs": 10**9}),
    "train-config-model-config": lambda: with_metadata(train_config={"model_config": 5}),
    "initialised-from-text": lambda: with_metadata(initialised_from="x"),
    "initialised-from-epoch-text": lambda: with_metadata(initialised_from={"epoch": "a"}),
    "averaged-mapping": lambda: with_metadata(averaged={}),
    "averaged-epoch-list": lambda: with_metadata(averaged=[{"epoch": []}]),
    "format-version-bool": lambda: with_metadata(format_version=True),
    "format-version-99": lambda: with_metadata(format_version=99),
    "format-version-text": lambda: with_metadata(format_version="1"),
    "format-other": lambda: with_metadata(format="other"),
    "training-state-kind": lambda: with_metadata(kind="training-state"),
    "unknown-kind": lambda: with_metadata(kind="playlist"),
    "precision-fp8": lambda: with_metadata(precision="fp8"),
    "processes-zero": lambda: with_metadata(processes=0),
    "no-capsviewer-metadata": lambda: _foreign(),
}


def _foreign() -> bytes:
    import safetensors.torch

    return safetensors.torch.save({"w": torch.zeros(3)})


# Whole-file cases: the bytes are not a readable safetensors file at all.
FILE_CASES: dict[str, Callable[[], bytes]] = {
    "empty": lambda: b"",
    "four-bytes": lambda: b"\x01\x02\x03\x04",
    "header-size-huge": lambda: struct.pack("<Q", 2**63) + b"{}",
    "header-size-past-end": lambda: struct.pack("<Q", 1000) + b"{" + b" " * 10,
    "header-not-json": lambda: struct.pack("<Q", 4) + b"{{{{",
    "header-offsets-past-end": lambda: _bad_offsets(),
    "truncated-middle": lambda: with_metadata()[: len(with_metadata()) // 2],
    "pickle": lambda: pickle.dumps(Exploit()),
    "torch-save-zip": lambda: _torch_save(),
    **{f"random-{n}": (lambda n=n: random.Random(n).randbytes(64 + 97 * n)) for n in range(6)},
}


def _bad_offsets() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]},
                         "__metadata__": {METADATA_KEY: json.dumps(good_metadata())}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * 16


def _torch_save() -> bytes:
    buffer = io.BytesIO()
    torch.save({"x": Exploit()}, buffer)
    return buffer.getvalue()


# Tensor cases: the header is fine, the weights are not (refused when the model is loaded).
TENSOR_CASES: dict[str, Callable[[], bytes]] = {
    "weight-nan": lambda: with_tensor("classifier.weight", _weight(float("nan"))),
    "weight-inf": lambda: with_tensor("classifier.weight", _weight(float("inf"))),
    "weight-bool": lambda: with_tensor("classifier.weight", _weight(dtype=torch.bool)),
    "weight-int8": lambda: with_tensor("classifier.weight", _weight(dtype=torch.int8)),
    "weight-int64": lambda: with_tensor("classifier.weight", _weight(dtype=torch.int64)),
    "weight-fp8-e4m3": lambda: with_tensor("classifier.weight", _weight(dtype=torch.float8_e4m3fn)),
    "weight-fp8-e5m2": lambda: with_tensor("classifier.weight", _weight(dtype=torch.float8_e5m2)),
    "weight-complex": lambda: with_tensor("classifier.weight", _weight(dtype=torch.complex64)),
    "weight-wrong-shape": lambda: with_tensor("classifier.weight", torch.zeros(3, 3)),
    "weight-missing": lambda: with_tensor("classifier.weight", None),
    "weight-extra": lambda: with_tensor("evil", torch.zeros(1)),
    "config-of-other-shapes": lambda: with_metadata(config={**TINY_CNN,
                                                            "kernel_sizes": [99, 99, 99]}),
}

# Stored smaller on purpose: loaded and cast back (not refused).
ACCEPTED_TENSOR_CASES: dict[str, Callable[[], bytes]] = {
    "weights-fp16": lambda: _saved(dtype=torch.float16),
    "weights-bf16": lambda: _saved(dtype=torch.bfloat16),
}


def _saved(dtype=None) -> bytes:
    buffer = Path(os.environ.get("TMPDIR", "/tmp")) / f".fuzz-{os.getpid()}.safetensors"
    try:
        save_checkpoint(buffer, tiny_cnn(), {"epoch": 1}, dtype=dtype)
        return buffer.read_bytes()
    finally:
        buffer.unlink(missing_ok=True)


def write_special(folder: Path) -> list[Path]:
    """Things in a model folder that are not files: a folder, a FIFO, a dangling link."""
    made = []
    folder.joinpath("folder.safetensors").mkdir()
    made.append(folder / "folder.safetensors")
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "fifo.safetensors")
        made.append(folder / "fifo.safetensors")
    link = folder / "dangling.safetensors"
    link.symlink_to(folder / "does-not-exist.safetensors")
    made.append(link)
    return made


# -- dataset folders -----------------------------------------------------------------------

def idx(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes (MNIST's format)."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def random_split(images: int = 50, side: int = 28, seed: int = 0) -> tuple[bytes, bytes]:
    rng = np.random.default_rng(seed)
    return (idx(rng.integers(0, 256, (images, side, side), dtype=np.uint8)),
            idx(rng.integers(0, 10, images, dtype=np.uint8)))


IMAGES, LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


def _labels(values) -> bytes:
    return idx(np.asarray(values, np.uint8))


# name → {file: bytes, or "dir"/"fifo"/None (absent)}; the expected phrase of the message.
DATASET_CASES: dict[str, tuple[Callable[[], dict], str]] = {
    "images-14x14": (lambda: {IMAGES: random_split(side=14)[0], LABELS: random_split()[1]},
                     "14×14 images"),
    "labels-255": (lambda: {IMAGES: random_split()[0], LABELS: _labels([255] + [1] * 49)},
                   "the label 255"),
    "labels-short": (lambda: {IMAGES: random_split()[0], LABELS: _labels([1] * 10)},
                     "50 images but"),
    "no-images": (lambda: {IMAGES: idx(np.zeros((0, 28, 28), np.uint8)), LABELS: _labels([])},
                  "no images"),
    "images-a-folder": (lambda: {IMAGES: "dir", LABELS: random_split()[1]}, "is not a file"),
    "images-a-fifo": (lambda: {IMAGES: "fifo", LABELS: random_split()[1]}, "is not a file"),
    "labels-a-folder": (lambda: {IMAGES: random_split()[0], LABELS: "dir"}, "is not a file"),
    "images-truncated": (lambda: {IMAGES: random_split()[0][:1000], LABELS: random_split()[1]},
                         "truncated"),
    "header-only": (lambda: {IMAGES: bytes([0, 0, 8, 3]), LABELS: random_split()[1]},
                    "truncated"),
    "claims-2-to-32-images": (lambda: {IMAGES: bytes([0, 0, 8, 3]) + struct.pack(
        ">3I", 2**32 - 1, 28, 28) + b"\0" * 100, LABELS: random_split()[1]}, "truncated"),
    "wrong-magic": (lambda: {IMAGES: b"\x1f\x8b" + random_split()[0][2:], LABELS: random_split()[1]},
                    "not an IDX file"),
    "labels-as-images": (lambda: {IMAGES: random_split()[1], LABELS: random_split()[1]},
                         "not an IDX file of 3-D"),
    "floats-not-bytes": (lambda: {IMAGES: bytes([0, 0, 0x0D, 3]) + random_split()[0][4:],
                                  LABELS: random_split()[1]}, "not an IDX file"),
    "empty-files": (lambda: {IMAGES: b"", LABELS: b""}, "not an IDX file"),
}


def write_dataset(root: Path, files: dict) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, content in files.items():
        if content == "dir":
            (raw / name).mkdir()
        elif content == "fifo":
            os.mkfifo(raw / name)
        elif content is not None:
            (raw / name).write_bytes(content)
    return root


# -- image files ---------------------------------------------------------------------------

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
MODES = ("L", "RGB", "RGBA", "P", "1", "I;16", "I", "F", "LA", "CMYK")


def _pixels(rng: random.Random, mode: str, size: tuple[int, int]) -> Image.Image:
    w, h = size
    kind = rng.choice(("noise", "blank", "digit", "stripe"))
    array = np.zeros((h, w), np.float64)
    if kind == "noise":
        array = np.random.default_rng(rng.randrange(2**32)).random((h, w))
    elif kind == "digit":
        array[h // 4: 3 * h // 4 + 1, w // 3: w // 3 + max(1, w // 8)] = 1.0
    elif kind == "stripe":
        array[:, ::2] = 1.0
    if mode == "F":
        return Image.fromarray(array.astype(np.float32))
    if mode == "I;16":
        return Image.fromarray((array * 65535).astype(np.uint16))
    if mode == "I":
        return Image.fromarray((array * 100_000).astype(np.int32))
    return Image.fromarray((array * 255).astype(np.uint8)).convert(mode)


def image_cases(count: int, seed: int = 23) -> list[tuple[str, bytes]]:
    """``count`` image files: valid ones of every format, mode and shape, and damaged ones
    (truncated, bytes flipped, headers garbled), the same for a given seed."""
    rng = random.Random(seed)
    cases = []
    while len(cases) < count:
        fmt, mode = rng.choice(FORMATS), rng.choice(MODES)
        size = rng.choice(((1, 1), (1, 40), (3, 2), (28, 28), (64, 17), (200, 150), (300, 300)))
        image = _pixels(rng, mode, size)
        buffer = io.BytesIO()
        try:
            image.save(buffer, fmt)
        except (OSError, ValueError, KeyError):  # a mode this format cannot store
            continue
        data = buffer.getvalue()
        damage = rng.choice(("none", "none", "truncate", "flip", "header", "zero-tail"))
        if damage == "truncate":
            data = data[: rng.randrange(1, max(2, len(data)))]
        elif damage == "flip":
            data = bytearray(data)
            for _ in range(rng.randrange(1, 20)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            data = bytes(data)
        elif damage == "header":
            cut = min(len(data), 32)
            data = rng.randbytes(cut) + data[cut:]
        elif damage == "zero-tail":
            data = data[: len(data) // 2] + b"\0" * (len(data) - len(data) // 2)
        cases.append((f"{len(cases):03d}-{fmt}-{mode.replace(';', '')}-{size[0]}x{size[1]}-"
                      f"{damage}.{fmt.lower()}", data))
    return cases

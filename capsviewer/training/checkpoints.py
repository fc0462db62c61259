"""Checkpoints: safetensors weights with JSON metadata in the header, written atomically.

Nothing here unpickles: a pickle can run arbitrary code when loaded, so ``torch.load`` files
are recognised and refused with a message instead.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from capsviewer.models import MODELS, build_model

FORMAT = "capsviewer-checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "capsviewer"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why and what to do."""


@dataclass
class Checkpoint:
    model: nn.Module
    metadata: dict[str, Any]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temp file beside ``path``, fsync, then rename over ``path``: a crash
    at any point leaves either the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def save_tensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> Path:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    data = safetensors.torch.save(tensors, metadata={METADATA_KEY: json.dumps(metadata)})
    return atomic_write_bytes(path, data)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    metadata: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype | None = None,
) -> Path:
    """Save ``model`` with its architecture, config and ``metadata``; ``dtype`` (e.g.
    torch.float16) stores floating-point weights smaller, cast back on load."""
    tensors = {
        k: v.to(dtype) if dtype is not None and v.is_floating_point() else v
        for k, v in model.state_dict().items()
    }
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": model.architecture,
        "config": model.config.to_dict(),
        **(metadata or {}),
    }
    return save_tensors(path, tensors, header)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a checkpoint, reading only its header."""
    path = _check_file(path)
    with _open(path) as f:
        return _capsviewer_metadata(path, f.metadata())


def epochs_trained(metadata: dict[str, Any]) -> int | None:
    """Epochs behind a checkpoint: its own run's, plus those of the checkpoint that run was
    initialised from (fine-tuning, ``initialised_from``); None when the metadata has none."""
    epoch = metadata.get("epoch")
    if epoch is None:
        return None
    return epoch + ((metadata.get("initialised_from") or {}).get("epoch") or 0)


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """All tensors and the metadata of a capsviewer safetensors file."""
    path = _check_file(path)
    with _open(path) as f:
        metadata = _capsviewer_metadata(path, f.metadata())
        try:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as error:
            raise CheckpointError(f"{path} is damaged: {error}") from error
    return {k: v.to(device) for k, v in tensors.items()}, metadata


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model a checkpoint describes and load its weights, validating every shape."""
    tensors, metadata = load_tensors(path)
    architecture = metadata.get("architecture")
    if architecture not in MODELS:
        raise CheckpointError(
            f"{path} holds an unknown architecture {architecture!r}; "
            f"this capsviewer knows {', '.join(MODELS)}"
        )
    try:
        model = build_model(architecture, metadata.get("config"))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has an invalid {architecture} config: {error}") from error
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in tensors]
    problems += [f"unexpected {k}" for k in tensors if k not in expected]
    problems += [
        f"{k}: file has {tuple(tensors[k].shape)}, model needs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if problems:
        raise CheckpointError(
            f"{path} does not match the {architecture} architecture it names: "
            + "; ".join(problems[:5])
            + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
        )
    model.load_state_dict({k: tensors[k].to(v.dtype) for k, v in expected.items()})
    return Checkpoint(model.to(device).eval(), metadata)


def _check_file(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: 8-byte little-endian header size, then the JSON header ("{"). Its first
    # byte may be 0x80 like a pickle's protocol opcode, so the "{" decides.
    if head[8:9] != b"{" and (head[:1] == b"\x80" or head[:4] == b"PK\x03\x04"):
        raise CheckpointError(
            f"{path} is a pickle (torch.save) file. capsviewer loads only safetensors "
            "checkpoints and never unpickles: loading a pickle can run arbitrary code."
        )
    if len(head) < 8:
        raise CheckpointError(f"{path} is truncated or not a safetensors file ({len(head)} bytes)")
    (header_size,) = struct.unpack("<Q", head[:8])
    if header_size > path.stat().st_size - 8:
        raise CheckpointError(
            f"{path} is truncated or not a safetensors file (its header claims {header_size} "
            f"bytes, the file has {path.stat().st_size})"
        )
    return path


def _open(path: Path):
    try:
        return safetensors.safe_open(str(path), framework="pt")
    except Exception as error:  # SafetensorError is not exported under a stable name
        raise CheckpointError(f"{path} is truncated or not a safetensors file: {error}") from error


def _capsviewer_metadata(path: Path, raw: dict[str, str] | None) -> dict[str, Any]:
    if not raw or METADATA_KEY not in raw:
        raise CheckpointError(
            f"{path} is a safetensors file but not a capsviewer checkpoint (no capsviewer "
            "metadata): weights from another project cannot be loaded as they are"
        )
    try:
        metadata = json.loads(raw[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} has corrupt capsviewer metadata: {error}") from error
    if metadata.get("format") != FORMAT or not isinstance(metadata.get("format_version"), int):
        raise CheckpointError(f"{path} has metadata of an unknown format")
    if metadata["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer capsviewer (format {metadata['format_version']}); "
            "upgrade capsviewer to load it"
        )
    return metadata

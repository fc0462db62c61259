"""Checkpoints: safetensors weights with JSON metadata in the header, written atomically.

Nothing here unpickles: a pickle can run arbitrary code when loaded, so ``torch.load`` files
are recognised and refused with a message instead.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from capsviewer.checks import printable
from capsviewer.models import build_model
from capsviewer.training.metadata import MetadataError, checkpoint_problem, parse

FORMAT = "capsviewer-checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "capsviewer"
CHECKPOINT_KIND, STATE_KIND = "checkpoint", "training-state"  # metadata "kind" (none: a model)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why and what to do."""


@dataclass
class Checkpoint:
    model: nn.Module
    metadata: dict[str, Any]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temp file beside ``path``, fsync, then rename over ``path``: a crash
    at any point leaves either the old file or the new one, never a torn one. Temp files that
    a killed writer left beside ``path`` are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            _lock(f.fileno())  # while it is held, this temp file is not stale
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)
    return path


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Delete the temp files of :func:`atomic_write_bytes` for ``path`` that no live writer
    holds (a writer locks its temp file; one killed mid-write leaves it unlocked)."""
    path, removed = Path(path), []
    prefix = _temp_prefix(path)
    try:
        candidates = [p for p in path.parent.iterdir()  # plain files only: opening a FIFO
                      if p.name.startswith(prefix) and p.name.endswith(".tmp")  # would block
                      and p.is_file() and not p.is_symlink()]
    except OSError:
        return removed
    for candidate in candidates:
        try:
            with open(candidate, "rb") as f:
                if not _lock(f.fileno(), wait=False):
                    continue  # being written right now
                candidate.unlink()
            removed.append(candidate)
        except OSError:  # gone already, or (Windows) open in another process
            continue
    return removed


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def _lock(fd: int, wait: bool = True) -> bool:
    """An exclusive advisory lock on ``fd`` (POSIX); True when held. Where there is no flock
    (Windows) an open file cannot be deleted anyway, so this is not needed there."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def serialise(tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> bytes:
    """A safetensors file's bytes: ``tensors`` (as CPU copies) and ``metadata`` as JSON."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return safetensors.torch.save(tensors, metadata={METADATA_KEY: json.dumps(metadata)})


def save_tensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> Path:
    return atomic_write_bytes(path, serialise(tensors, metadata))


def checkpoint_bytes(model: nn.Module, metadata: dict[str, Any] | None = None, *,
                     dtype: torch.dtype | None = None) -> bytes:
    """The file :func:`save_checkpoint` writes, as bytes."""
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
    return serialise(tensors, header)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    metadata: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype | None = None,
) -> Path:
    """Save ``model`` with its architecture, config and ``metadata``; ``dtype`` (e.g.
    torch.float16) stores floating-point weights smaller, cast back on load."""
    return atomic_write_bytes(path, checkpoint_bytes(model, metadata, dtype=dtype))


def output_problem(path: str | os.PathLike, needed: int = 0) -> str | None:
    """Why a file cannot be written at ``path`` (a phrase), or None: it is a folder, its
    folder cannot be made or written, or has less than ``needed`` bytes free."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder; give a file name such as {path / 'model.safetensors'}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"cannot create the folder {path.parent}: {error.strerror or error}"
    return folder_problem(path.parent, needed)


def folder_problem(folder: str | os.PathLike, needed: int = 0) -> str | None:
    """Why files cannot be written in ``folder`` (a phrase), or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"capsviewer")
            probe.flush()
        free = shutil.disk_usage(folder).free
    except OSError as error:
        return f"cannot write in {folder}: {error.strerror or error}"
    if free < needed:
        return (f"{folder} has {free / 1e6:,.0f} MB free, and about {needed / 1e6:,.0f} MB "
                "are needed")
    return None


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a checkpoint, reading only its header; CheckpointError names the file
    and says what is wrong when it is not a usable capsviewer checkpoint."""
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


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu",
                 kind: str = CHECKPOINT_KIND):
    """All tensors and the metadata of a capsviewer safetensors file of ``kind`` (a
    checkpoint, or a run's "training-state")."""
    path = _check_file(path)
    with _open(path) as f:
        metadata = _capsviewer_metadata(path, f.metadata(), kind)
        try:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as error:  # SafetensorError, a dtype this torch lacks, OSError
            raise CheckpointError(f"{path} is damaged: {printable(error)}") from error
    return {k: v.to(device) for k, v in tensors.items()}, metadata


# Weights may be stored in these dtypes (a smaller one is cast back on load); anything else
# (bool, integers, fp8, complex) is not what a capsviewer checkpoint stores and is refused.
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model a checkpoint describes and load its weights, validating every name,
    shape and dtype, and that every weight is a finite number."""
    tensors, metadata = load_tensors(path)
    architecture = metadata["architecture"]
    with torch.device("meta"):  # the shapes the file must have, nothing allocated yet
        expected = build_model(architecture, metadata.get("config")).state_dict()
    problems = [f"missing {k}" for k in expected if k not in tensors]
    problems += [f"unexpected {printable(k, 60)}" for k in tensors if k not in expected]
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
    for key, needed in expected.items():
        stored = tensors[key]
        allowed = WEIGHT_DTYPES if needed.is_floating_point() else (needed.dtype,)
        if stored.dtype not in allowed:
            raise CheckpointError(
                f"{path} stores {key} as {str(stored.dtype).removeprefix('torch.')}, not as "
                f"{' or '.join(str(d).removeprefix('torch.') for d in allowed)}: it was not "
                "written by capsviewer, or was altered")
        if stored.is_floating_point() and not torch.isfinite(stored).all():
            raise CheckpointError(
                f"{path} holds weights that are not finite numbers (NaN or infinity) in "
                f"{key}: the training that wrote it diverged, so the model cannot be used")
    model = build_model(architecture, metadata.get("config"))
    model.load_state_dict({k: tensors[k].to(v.dtype) for k, v in model.state_dict().items()})
    return Checkpoint(model.to(device).eval(), metadata)


def _check_file(path) -> Path:
    path = Path(path)
    try:
        if not path.is_file():
            raise CheckpointError(f"no checkpoint file at {path}" if not path.exists() else
                                  f"{path} is not a file (a folder or a device)")
        with open(path, "rb") as f:
            head = f.read(9)
        size = path.stat().st_size
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {error.strerror or error}") from error
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
    if header_size > size - 8:
        raise CheckpointError(
            f"{path} is truncated or not a safetensors file (its header claims {header_size} "
            f"bytes, the file has {size})"
        )
    return path


def _open(path: Path):
    try:
        return safetensors.safe_open(str(path), framework="pt")
    except Exception as error:  # SafetensorError is not exported under a stable name
        raise CheckpointError(f"{path} is truncated or not a safetensors file: "
                              f"{printable(error)}") from error


def _capsviewer_metadata(path: Path, raw: dict[str, str] | None,
                         kind: str = CHECKPOINT_KIND) -> dict[str, Any]:
    if not raw or METADATA_KEY not in raw:
        raise CheckpointError(
            f"{path} is a safetensors file but not a capsviewer checkpoint (no capsviewer "
            "metadata): weights from another project cannot be loaded as they are"
        )
    try:
        metadata = parse(raw[METADATA_KEY])
    except MetadataError as error:
        raise CheckpointError(f"{path} has corrupt capsviewer metadata: it {error}") from None
    version = metadata.get("format_version")
    if metadata.get("format") != FORMAT or isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{path} has metadata of an unknown format")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer capsviewer (format {version}); "
            "upgrade capsviewer to load it"
        )
    found = metadata.get("kind", CHECKPOINT_KIND)
    if found != kind:
        if found == STATE_KIND:
            raise CheckpointError(
                f"{path} is the training state of an interrupted run (optimizer and random "
                "generators, for --resume), not a model: open the checkpoint beside it")
        raise CheckpointError(f"{path} is a capsviewer checkpoint, not a training state file"
                              if found == CHECKPOINT_KIND else
                              f"{path} holds capsviewer data of an unknown kind")
    if kind == CHECKPOINT_KIND:
        problem = checkpoint_problem(metadata)
        if problem:
            raise CheckpointError(f"{path} {problem}")
    return metadata

"""Training state (optimizer, schedule, random generators, history) beside a checkpoint, so an
interrupted run resumes after its last finished epoch. Stored as safetensors + JSON too."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from capsviewer.training.checkpoints import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    load_tensors,
    save_tensors,
)


def state_path(checkpoint: str | Path) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".state.safetensors")


def save_training_state(checkpoint, optimizer, scheduler, generator, epoch: int, history) -> Path:
    opt = optimizer.state_dict()
    tensors = {"rng.generator": generator.get_state(), "rng.torch": torch.get_rng_state()}
    plain_state: dict[str, dict] = {}
    for index, values in opt["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                plain_state.setdefault(str(index), {})[name] = value
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": "training-state",
        "epoch": epoch,
        "param_groups": opt["param_groups"],
        "optimizer_plain_state": plain_state,
        "scheduler": scheduler.state_dict(),
        "history": [asdict(h) for h in history],
    }
    return save_tensors(state_path(checkpoint), tensors, metadata)


def load_training_state(checkpoint, model: nn.Module, optimizer, scheduler, generator, device):
    """Load weights from ``checkpoint`` and the rest from its state file; returns the last
    finished epoch and the history so far (as dicts)."""
    weights, _ = load_tensors(checkpoint, device)
    tensors, meta = load_tensors(state_path(checkpoint))
    if meta.get("kind") != "training-state":
        raise CheckpointError(f"{state_path(checkpoint)} is not a training state file")
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise CheckpointError(
            f"cannot resume from {checkpoint}: it was trained with another model config"
        ) from error
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in meta["optimizer_plain_state"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    for param, values in optimizer.state.items():
        for name, value in values.items():
            # Moments come back contiguous; give them the parameter's layout (channels-last
            # weights), which the fused optimizer kernels assume.
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                values[name] = torch.empty_like(param, dtype=value.dtype).copy_(value)
    scheduler.load_state_dict(meta["scheduler"])
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    return meta["epoch"], meta["history"]

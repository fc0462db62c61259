"""Training state (weights, optimizer, schedule, random generators, history and the
checkpoint's metadata) beside a checkpoint, so an interrupted run resumes after its last
finished epoch. Stored as safetensors + JSON too.

Each epoch writes the state first, then the checkpoint, each atomically. The state alone is
enough to go on: a run killed between the two writes resumes from the state, rewriting the
checkpoint it lacks, and never trains an epoch twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from capsviewer.training.checkpoints import (
    FORMAT,
    FORMAT_VERSION,
    STATE_KIND,
    CheckpointError,
    load_tensors,
    read_metadata,
    save_tensors,
)
from capsviewer.training.metadata import EPOCH_RESULT, items, mapping, number

WEIGHTS = "model."  # prefix of the model's tensors in the state file
STATE_SCHEMA = mapping({
    "epoch": number(int, 1), "history": items(EPOCH_RESULT), "param_groups": items(mapping()),
    "optimizer_plain_state": mapping(values=mapping()), "scheduler": mapping(),
    "checkpoint": mapping(),
})


def state_path(checkpoint: str | Path) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".state.safetensors")


def save_training_state(checkpoint, model: nn.Module, optimizer, scheduler, generator,
                        epoch: int, history: list[dict], checkpoint_metadata: dict) -> Path:
    """Write the state after ``epoch``; ``checkpoint_metadata`` is the header the checkpoint
    of that epoch gets, so that it can be written again from the state alone."""
    opt = optimizer.state_dict()
    tensors = {"rng.generator": generator.get_state(), "rng.torch": torch.get_rng_state()}
    tensors.update({WEIGHTS + k: v for k, v in model.state_dict().items()})
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
        "kind": STATE_KIND,
        "epoch": epoch,
        "param_groups": opt["param_groups"],
        "optimizer_plain_state": plain_state,
        "scheduler": scheduler.state_dict(),
        "history": history,
        "checkpoint": checkpoint_metadata,
    }
    return save_tensors(state_path(checkpoint), tensors, metadata)


@dataclass
class ResumedState:
    epoch: int  # the last finished epoch
    history: list[dict[str, Any]]
    checkpoint_metadata: dict[str, Any] | None  # None: a state written before it was kept
    checkpoint_behind: bool  # the checkpoint lacks the state's last epoch: write it again


def load_training_state(checkpoint, model: nn.Module, optimizer, scheduler, generator,
                        device) -> ResumedState:
    """Load the weights and the rest of an interrupted run from the state beside
    ``checkpoint``; CheckpointError says why when it cannot be resumed."""
    path = state_path(checkpoint)
    tensors, meta = load_tensors(path, kind=STATE_KIND)
    problem = STATE_SCHEMA(meta)
    if problem:
        raise CheckpointError(f"{path} is damaged: {problem}")
    epoch = meta["epoch"]
    stored = _checkpoint_epoch(checkpoint)
    weights = {k[len(WEIGHTS):]: v for k, v in tensors.items() if k.startswith(WEIGHTS)}
    if not weights:  # an older state file: the weights are the checkpoint's
        if stored != epoch:
            raise CheckpointError(
                f"cannot resume from {checkpoint}: it holds epoch {stored} but its training "
                f"state epoch {epoch}, and that state has no weights of its own")
        weights, _ = load_tensors(checkpoint)
    try:
        model.load_state_dict({k: v.to(device) for k, v in weights.items()})
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        for index, values in meta["optimizer_plain_state"].items():
            state.setdefault(int(index), {}).update(values)
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        scheduler.load_state_dict(meta["scheduler"])
        generator.set_state(tensors["rng.generator"])
        torch.set_rng_state(tensors["rng.torch"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:
        raise CheckpointError(
            f"cannot resume from {checkpoint}: its training state does not fit this run "
            f"(another model, config or optimizer): {str(error).splitlines()[0][:200]}"
        ) from error
    for param, values in optimizer.state.items():
        for name, value in values.items():
            # Moments come back contiguous; give them the parameter's layout (channels-last
            # weights), which the fused optimizer kernels assume.
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                values[name] = torch.empty_like(param, dtype=value.dtype).copy_(value)
    return ResumedState(epoch, meta["history"], meta.get("checkpoint"), stored != epoch)


def _checkpoint_epoch(checkpoint) -> int | None:
    """The epoch the checkpoint holds; None when it is missing or unreadable (a kill while
    it was first written leaves none)."""
    try:
        return read_metadata(checkpoint).get("epoch")
    except CheckpointError:
        return None

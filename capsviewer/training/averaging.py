"""Checkpoint averaging: the mean of several checkpoints' weights (Polyak averaging of epoch
snapshots, as in stochastic weight averaging), one model of the same architecture and config.

Plain means are right for these models: none has batch-norm statistics to recompute. Integer
buffers (a step counter) are taken from the last checkpoint, and so is the metadata.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from capsviewer.training.checkpoints import Checkpoint, CheckpointError, load_checkpoint


def average_checkpoints(paths: Sequence[str | os.PathLike]) -> Checkpoint:
    """The averaged model (on the CPU) with the last checkpoint's metadata plus ``averaged``:
    each source's file name, epoch and stored test accuracy. Raises CheckpointError unless all
    are readable checkpoints of one architecture, config and dataset."""
    if len(paths) < 2:
        raise CheckpointError("averaging needs two checkpoints or more")
    loaded = [load_checkpoint(path) for path in paths]
    first = loaded[0].metadata
    for path, checkpoint in zip(paths[1:], loaded[1:]):
        meta = checkpoint.metadata
        for key, what in (("architecture", "architecture"), ("config", "config")):
            if meta.get(key) != first.get(key):
                raise CheckpointError(
                    f"{path} has another {what} than {paths[0]}: only checkpoints of one model "
                    "can be averaged")
        if _dataset(meta) != _dataset(first):
            raise CheckpointError(
                f"{path} was trained on {_dataset(meta)}, {paths[0]} on {_dataset(first)}")
    model = loaded[-1].model
    states = [c.model.state_dict() for c in loaded]
    averaged = {
        key: (torch.stack([s[key].double() for s in states]).mean(0).to(value.dtype)
              if value.is_floating_point() else value)
        for key, value in states[-1].items()
    }
    model.load_state_dict(averaged)
    metadata = dict(loaded[-1].metadata)
    metadata["averaged"] = [
        {"file": os.path.basename(path), "epoch": c.metadata.get("epoch"),
         "test_accuracy": c.metadata.get("metrics", {}).get("test_accuracy")}
        for path, c in zip(paths, loaded)
    ]
    metadata.pop("metrics", None)  # the sources' figures; the average has to be measured
    return Checkpoint(model.eval(), metadata)


def round_trip(model: torch.nn.Module, dtype: torch.dtype | None) -> None:
    """Round every floating-point weight through ``dtype`` in place (what storing it in that
    dtype and loading it back does); None leaves the model as it is."""
    if dtype is None:
        return
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(dtype))


def _dataset(metadata: dict) -> str:
    return metadata.get("dataset", {}).get("name", "mnist")

"""Where the app finds its models: the shipped ones, then those the user trained."""

from __future__ import annotations

import os
from pathlib import Path

from capsviewer.data import DATASETS
from capsviewer.resources import resource_path
from capsviewer import paths
from capsviewer.training.checkpoints import CheckpointError, read_metadata

SHIPPED_MODELS = resource_path("models")
MODELS_ENV_VAR = "CAPSVIEWER_MODELS"


def user_checkpoint_dir() -> Path:
    """Where the app saves checkpoints it trains (per-user data directory)."""
    return paths.checkpoints_dir()


def model_dirs() -> list[Path]:
    """Search order: $CAPSVIEWER_MODELS, the shipped models, the user's checkpoints, ./checkpoints."""
    dirs = [Path(p) for p in os.environ.get(MODELS_ENV_VAR, "").split(os.pathsep) if p]
    return dirs + [SHIPPED_MODELS, user_checkpoint_dir(), Path.cwd() / "checkpoints"]


def find_models(dataset: str = "mnist", dirs: list[Path] | None = None) -> dict[str, Path]:
    """The first readable checkpoint per architecture trained on ``dataset``, by search order;
    within a folder the newest file wins. Unreadable files are skipped, not fatal."""
    found: dict[str, Path] = {}
    for folder in dirs if dirs is not None else model_dirs():
        if not folder.is_dir():
            continue
        files = sorted(folder.glob("*.safetensors"), key=lambda p: p.stat().st_mtime, reverse=True)
        for path in files:
            if path.name.endswith(".state.safetensors"):
                continue
            try:
                meta = read_metadata(path)
            except (CheckpointError, OSError):
                continue
            if meta.get("dataset", {}).get("name", dataset) != dataset:
                continue
            found.setdefault(meta["architecture"], path)
    return found


def dataset_of(models: dict[str, Path]) -> str:
    """The dataset of the first readable checkpoint among ``models`` (MNIST without one)."""
    for path in models.values():
        try:
            name = read_metadata(path).get("dataset", {}).get("name", "mnist")
        except (CheckpointError, OSError):
            continue
        return name if name in DATASETS else "mnist"
    return "mnist"

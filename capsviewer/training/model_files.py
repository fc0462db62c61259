"""Where the app finds its models: the shipped ones, then those the user trained."""

from __future__ import annotations

import os
from pathlib import Path

from capsviewer.data import DATASETS
from capsviewer.resources import resource_path
from capsviewer import paths
from capsviewer.checks import printable
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


class FoundModels(dict):
    """Architecture → checkpoint path, and ``skipped``: the files in the search folders that
    could not be read, each with the reason."""

    def __init__(self):
        super().__init__()
        self.skipped: list[tuple[Path, str]] = []


def skipped_note(found, shown: int = 3) -> str | None:
    """One line naming the files :func:`find_models` skipped (the first ``shown`` with their
    reasons); None when it skipped none (or ``found`` is a plain mapping)."""
    skipped = getattr(found, "skipped", [])
    if not skipped:
        return None
    reasons = "; ".join(printable(reason, 160) for _, reason in skipped[:shown])
    more = len(skipped) - shown
    return (f"Skipped {len(skipped)} model file(s) that cannot be used: {reasons}"
            + (f"; and {more} more" if more > 0 else ""))


def find_models(dataset: str = "mnist", dirs: list[Path] | None = None) -> FoundModels:
    """The first readable checkpoint per architecture trained on ``dataset``, by search order;
    within a folder the newest file wins. Unreadable files are skipped, not fatal, and listed
    in the result's ``skipped``."""
    found = FoundModels()
    for folder in dirs if dirs is not None else model_dirs():
        for path in _newest_first(folder, found.skipped):
            if path.name.endswith(".state.safetensors"):
                continue
            try:
                meta = read_metadata(path)
            except CheckpointError as error:
                found.skipped.append((path, str(error)))
                continue
            trained_on = (meta.get("dataset") or {}).get("name", dataset)
            if trained_on == dataset:
                found.setdefault(meta["architecture"], path)
    return found


def _newest_first(folder: Path, skipped: list) -> list[Path]:
    """The .safetensors files in ``folder``, newest first (none if it cannot be listed)."""
    try:
        if not folder.is_dir():
            return []
        candidates = list(folder.glob("*.safetensors"))
    except OSError as error:
        skipped.append((folder, f"cannot list {folder}: {error.strerror or error}"))
        return []
    dated = []
    for path in candidates:
        try:
            dated.append((path.stat().st_mtime, path))
        except OSError as error:  # a dangling link, say
            skipped.append((path, f"cannot read {path}: {error.strerror or error}"))
    return [path for _, path in sorted(dated, key=lambda item: item[0], reverse=True)]


def dataset_of(models: dict[str, Path]) -> str:
    """The dataset of the first readable checkpoint among ``models`` (MNIST without one)."""
    for path in models.values():
        try:
            name = (read_metadata(path).get("dataset") or {}).get("name", "mnist")
        except CheckpointError:
            continue
        return name if name in DATASETS else "mnist"
    return "mnist"

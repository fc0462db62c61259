"""What the window works on: the loaded models, the device and the test set. Loading runs on
a compute lane; results and errors come back as signals."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PySide6.QtCore import QObject, Signal, Slot

from capsviewer.app.compute import ComputeLane
from capsviewer.data import DATASETS, DatasetUnavailable, ImageSet, load_dataset
from capsviewer.models import display_name
from capsviewer.training import describe_device, load_checkpoint, select_device


@dataclass
class LoadedModel:
    model: torch.nn.Module
    metadata: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def architecture(self) -> str:
        return self.model.architecture

    @property
    def dataset(self) -> str:
        return self.metadata.get("dataset", {}).get("name", "mnist")

    def summary(self) -> str:
        parts = [display_name(self.architecture)]
        accuracy = self.metadata.get("metrics", {}).get("test_accuracy")
        if accuracy is not None:
            parts.append(f"test {accuracy:.2%}")
        if self.path is not None:
            parts.append(self.path.name)
        return " · ".join(parts)


class ModelSession(QObject):
    """Models of one dataset at a time: loading a checkpoint trained on another dataset
    switches to it (its test set, its class names) and unloads the other models."""

    models_changed = Signal()
    dataset_changed = Signal(str)
    test_set_changed = Signal(object)  # ImageSet | None
    error = Signal(str, str)  # title, message
    status = Signal(str)

    def __init__(self, lane: ComputeLane, device: str = "auto", data_root: str | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.lane = lane
        self.device = select_device(device)
        self.data_root = data_root
        self.models: dict[str, LoadedModel] = {}
        self.test_set: ImageSet | None = None
        self.dataset = "mnist"
        self.download = True

    @property
    def class_names(self) -> tuple[str, ...]:
        return DATASETS[self.dataset].classes

    @property
    def capsnet(self) -> torch.nn.Module | None:
        entry = self.models.get("capsnet")
        return entry.model if entry else None

    @property
    def cnn(self) -> torch.nn.Module | None:
        entry = self.models.get("cnn")
        return entry.model if entry else None

    def device_text(self) -> str:
        return describe_device(self.device)

    # -- models ---------------------------------------------------------------------------------
    def load_checkpoint(self, path: str | Path) -> None:
        path = Path(path)
        self.status.emit(f"Loading {path.name}…")
        self.lane.submit(f"load:{path}", _load, path, self.device,
                         on_done=self._loaded, on_error=lambda e: self._failed(path, e))

    @Slot(object)
    def _loaded(self, entry: LoadedModel) -> None:
        if entry.dataset not in DATASETS:
            self.error.emit("Could not load model", f"{entry.path}: trained on an unknown "
                            f"dataset {entry.dataset!r}; capsviewer knows {', '.join(DATASETS)}")
            return
        if entry.dataset != self.dataset:
            self.switch_dataset(entry.dataset)
        self.models[entry.architecture] = entry
        self.status.emit(f"Loaded {entry.summary()}")
        self.models_changed.emit()

    def _failed(self, path: Path, error: BaseException) -> None:
        self.error.emit("Could not load model", f"{path}:\n{error}")

    def set_device(self, name: str) -> None:
        device = select_device(name)  # DeviceUnavailable reaches the caller
        self.lane.submit("device", _moved_copies, dict(self.models), device,
                         on_done=lambda models: self._moved(device, models),
                         on_error=lambda e: self.error.emit("Could not change device", str(e)))

    def _moved(self, device: torch.device, models: dict[str, LoadedModel]) -> None:
        self.device = device
        self.models = models
        self.status.emit(f"Models on {self.device_text()}")
        self.models_changed.emit()

    # -- data -----------------------------------------------------------------------------------
    def switch_dataset(self, dataset: str) -> None:
        """Work on ``dataset``: its models are gone (load them next), its test set loads."""
        if dataset == self.dataset:
            return
        self.dataset = dataset
        self.models = {}
        self.test_set = None
        self.dataset_changed.emit(dataset)
        self.models_changed.emit()
        self.load_test_set(dataset, self.download)

    def load_test_set(self, dataset: str | None = None, download: bool | None = None) -> None:
        self.dataset = dataset or self.dataset
        self.download = self.download if download is None else download
        self.lane.submit("test-set", load_dataset, self.dataset, False, self.data_root,
                         self.download, on_done=self._test_set_loaded,
                         on_error=self._test_set_failed)

    def _test_set_loaded(self, images: ImageSet) -> None:
        if images.name != self.dataset:  # a switch came while it loaded
            return
        self.test_set = images
        self.test_set_changed.emit(images)

    def _test_set_failed(self, error: BaseException) -> None:
        self.test_set = None
        self.test_set_changed.emit(None)
        text = str(error) if isinstance(error, DatasetUnavailable) else f"{type(error).__name__}: {error}"
        self.error.emit("Test set unavailable",
                        f"{text}\n\nYou can still draw a digit or open an image file.")


def _load(path: Path, device: torch.device) -> LoadedModel:
    checkpoint = load_checkpoint(path, device)
    checkpoint.model.eval()
    return LoadedModel(checkpoint.model, checkpoint.metadata, path)


def _moved_copies(models: dict[str, LoadedModel], device: torch.device) -> dict[str, LoadedModel]:
    """Copies on ``device``: jobs still running keep the originals on the old device."""
    return {k: LoadedModel(copy.deepcopy(v.model).to(device), v.metadata, v.path)
            for k, v in models.items()}

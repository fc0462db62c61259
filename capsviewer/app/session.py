"""Loading what the window works on, into the app state: the models, the device and the test
set. Loading runs on a compute lane; errors and status lines come back as signals."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from PySide6.QtCore import QObject, Signal, Slot

from capsviewer.app.compute import ComputeLane
from capsviewer.app.errors import explain
from capsviewer.app.state import EM_MODELS, AppState, LoadedModel
from capsviewer.data import (
    DATASET_TITLES,
    DATASETS,
    DatasetUnavailable,
    DownloadCancelled,
    ImageSet,
    load_dataset,
    load_test_set,
    resolve_data_root,
)
from capsviewer.data.tasks import MULTIMNIST
from capsviewer.training import describe_device, load_checkpoint, select_device
from capsviewer.training.model_files import SHIPPED_MODELS

__all__ = ["LoadedModel", "ModelSession"]


class ModelSession(QObject):
    """Models of one dataset at a time: loading a checkpoint trained on another dataset
    switches to it (its test set, its class names) and unloads the other models. What is
    loaded lives in ``state``; this object only loads."""

    error = Signal(str, str, str)  # title, sentence, details (for "Show Details…")
    status = Signal(str)
    pair_model_loaded = Signal(object)  # LoadedModel of a MultiMNIST checkpoint (Overlap tab)
    download_progress = Signal(object)  # (bytes done, bytes in all, file name), worker thread

    def __init__(self, state: AppState, lane: ComputeLane, device: str = "auto",
                 data_root: str | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.state = state
        self.lane = lane
        self.data_root = data_root
        state.device = select_device(device)

    # Read-through views of the state, for callers that think in terms of a session.
    @property
    def models(self) -> dict[str, LoadedModel]:
        return dict(self.state.models)

    @property
    def test_set(self) -> ImageSet | None:
        return self.state.test_set

    @property
    def dataset(self) -> str:
        return self.state.dataset

    @property
    def device(self) -> torch.device:
        return self.state.device

    @property
    def capsnet(self):
        return self.state.capsnet

    @property
    def cnn(self):
        return self.state.cnn

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.state.class_names

    def device_text(self) -> str:
        return describe_device(self.state.device)

    # -- models ---------------------------------------------------------------------------------
    def load_checkpoint(self, path: str | Path) -> None:
        path = Path(path)
        self.status.emit(f"Loading {path.name}…")
        self.lane.submit(f"load:{path}", load_model_entry, path, self.state.device,
                         on_done=self._loaded, on_error=lambda e: self._failed(path, e))

    @Slot(object)
    def _loaded(self, entry: LoadedModel) -> None:
        if entry.dataset == MULTIMNIST:  # two digits per image: the Overlap tab's model
            self.pair_model_loaded.emit(entry)
            return
        if entry.dataset not in DATASETS:
            self.error.emit("Could not load model", f"{entry.path} was trained on an unknown "
                            f"dataset {entry.dataset!r}; capsviewer knows {', '.join(DATASETS)}.",
                            "")
            return
        if entry.dataset != self.state.dataset:
            self.switch_dataset(entry.dataset)
        self.status.emit(f"Loaded {entry.summary(file=False)}")  # the file: in the model label
        models = dict(self.state.models)
        if entry.architecture in EM_MODELS:  # one EM model: the one loaded last is stepped
            models = {k: v for k, v in models.items() if k not in EM_MODELS}
        self.state.set_models({**models, entry.architecture: entry})

    def _failed(self, path: Path, error: BaseException) -> None:
        self.error.emit("Could not load model", *explain(error, f"loading {path.name}"))

    def set_device(self, name: str) -> None:
        device = select_device(name)  # DeviceUnavailable reaches the caller
        models = dict(self.state.models)
        if self.state.pair_model is not None:
            models[PAIR_MODEL] = self.state.pair_model
        self.lane.submit("device", _moved_copies, models, device,
                         on_done=lambda models: self._moved(device, models),
                         on_error=lambda e: self.error.emit(
                             "Could not change device", *explain(e, "moving the models")))

    def _moved(self, device: torch.device, models: dict[str, LoadedModel]) -> None:
        with self.state.events.paused():
            self.state.device = device
            if PAIR_MODEL in models:
                self.state.pair_model = models.pop(PAIR_MODEL)
            self.state.set_models(models)
        self.status.emit(f"Models on {self.device_text()}")

    # -- data -----------------------------------------------------------------------------------
    def switch_dataset(self, dataset: str) -> None:
        """Work on ``dataset``: its models are gone (load them next), its test set loads."""
        if dataset == self.state.dataset:
            return
        with self.state.events.paused():
            self.state.dataset = dataset
            self.state.set_models({})
            self.state.test_set = None
            self.state.choose_image(None)
        self.load_test_set(dataset)

    def load_test_set(self, dataset: str | None = None) -> None:
        """The full test set when it is in the data root, else the sample that ships with
        capsviewer; never a download (see :meth:`download_test_set`)."""
        self.state.dataset = dataset or self.state.dataset
        self.lane.submit("test-set", load_test_set, self.state.dataset, self.data_root,
                         on_done=self._test_set_loaded, on_error=self._test_set_failed)

    def set_data_root(self, root: str) -> None:
        self.data_root = root
        self.load_test_set()

    def download_test_set(self) -> None:
        """Download the current dataset's test set (never its training set), then use it."""
        self.status.emit(f"Downloading the {DATASET_TITLES[self.state.dataset]} test set into "
                         f"{resolve_data_root(self.data_root)}…")
        self.lane.submit("download", load_dataset, self.state.dataset, False, self.data_root, True,
                         lambda *progress: self.download_progress.emit(progress),
                         self.lane.should_stop, on_done=self._test_set_loaded,
                         on_error=self._test_set_failed)

    def _test_set_loaded(self, images: ImageSet) -> None:
        if images.name != self.state.dataset:  # a switch came while it loaded
            return
        self.state.test_set = images

    def _test_set_failed(self, error: BaseException) -> None:
        if isinstance(error, DownloadCancelled):
            return
        if isinstance(error, DatasetUnavailable):  # a note, not a dialog
            if self.state.test_set is not None:  # a failed download: the sample stays
                self.status.emit(f"{error} The sample stays in use.")
                return
            self.state.test_set = None
            self.status.emit(f"{error} You can still draw a digit or open an image file.")
            return
        self.state.test_set = None
        self.error.emit("Test set unavailable", *explain(error, "loading the test set"))


PAIR_MODEL = "pair"  # the MultiMNIST model's key while models move to another device


def load_model_entry(path: Path, device: torch.device) -> LoadedModel:
    checkpoint = load_checkpoint(path, device)
    checkpoint.model.eval()
    shipped = path.resolve().parent == Path(SHIPPED_MODELS).resolve()
    return LoadedModel(checkpoint.model, checkpoint.metadata, path, shipped)


def _moved_copies(models: dict[str, LoadedModel], device: torch.device) -> dict[str, LoadedModel]:
    """Copies on ``device``: jobs still running keep the originals on the old device."""
    return {k: LoadedModel(copy.deepcopy(v.model).to(device), v.metadata, v.path, v.shipped)
            for k, v in models.items()}

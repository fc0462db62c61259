"""What the Overlap tab works on, loaded into the app state: the MultiMNIST CapsNet (the shipped
one, else the newest the user trained) and the MNIST test digits its pairs are made of (the
window's test set when it is MNIST's, else MNIST's own: the full test set or the shipped
1,000-image sample). Loading runs on the loading lane; the first pair is test pair 0."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from capsviewer.analysis.overlap import PairChoice
from capsviewer.app.compute import ComputeLane
from capsviewer.app.errors import explain
from capsviewer.app.session import load_model_entry
from capsviewer.app.state import AppState, LoadedModel
from capsviewer.data import ImageSet, load_test_set
from capsviewer.data.tasks import MULTIMNIST, source_dataset
from capsviewer.training.model_files import find_models

PAIR_SOURCE = source_dataset(MULTIMNIST)  # MNIST

# What the tab says when no MultiMNIST model was found.
NO_PAIR_MODEL = (
    "No MultiMNIST model found. Train one (about 2 hours on a CPU, much less on a GPU):\n"
    "    capsviewer train --dataset multimnist --model capsnet --epochs 3 --decay-steps 20000\n"
    "then restart capsviewer, or open the checkpoint with File ▸ Open model… "
    "(checkpoints/capsnet-multimnist.safetensors)."
)


class OverlapSession(QObject):
    status = Signal(str)
    error = Signal(str, str, str)  # title, sentence, details (for "Show Details…")

    def __init__(self, state: AppState, lane: ComputeLane, data_root: str | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.state, self.lane, self.data_root = state, lane, data_root
        state.events.test_set.connect(self._window_test_set)
        state.events.pair_digits.connect(self._first_pair)

    def start(self) -> None:
        """Find and load the MultiMNIST CapsNet (unless one was opened already); get the MNIST
        test digits."""
        path = find_models(MULTIMNIST).get("capsnet") if self.state.pair_model is None else None
        if path is not None:
            self.load_model(path)
        self._window_test_set(self.state.test_set)
        if self.state.pair_digits is None and self.state.dataset != PAIR_SOURCE:
            self.lane.submit("pair-digits", load_test_set, PAIR_SOURCE, self.data_root,
                             on_done=self._digits_loaded,
                             on_error=lambda e: self.status.emit(f"No MNIST test digits for "
                                                                 f"pairs: {e}"))

    def load_model(self, path: str | Path) -> None:
        self.lane.submit(f"load:{path}", load_model_entry, Path(path), self.state.device,
                         on_done=self.use_model,
                         on_error=lambda e: self.error.emit(
                             "Could not load model", *explain(e, f"loading {Path(path).name}")))

    def use_model(self, entry: LoadedModel) -> None:
        if entry.architecture != "capsnet" or entry.dataset != MULTIMNIST:
            self.error.emit("Not a MultiMNIST CapsNet", f"{entry.path}: the Overlap tab needs a "
                            f"CapsNet trained on MultiMNIST, not a {entry.architecture} trained "
                            f"on {entry.dataset}.", "")
            return
        self.state.pair_model = entry
        self.status.emit(f"Overlap: {entry.summary()}")

    def _window_test_set(self, images: ImageSet | None) -> None:
        if images is not None and images.name == PAIR_SOURCE:
            self._digits_loaded(images)

    def _digits_loaded(self, images: ImageSet) -> None:
        current = self.state.pair_digits
        if current is None or (current.is_sample and not images.is_sample):
            self.state.pair_digits = images

    def _first_pair(self, images: ImageSet | None) -> None:
        pair = self.state.pair
        if images is None:
            return
        if pair is None or max(pair.first, pair.second) >= len(images) \
                or pair.test_pair is not None:  # test pair n of this test set
            index = 0 if pair is None or pair.test_pair is None else pair.test_pair
            self.state.choose_pair(PairChoice.from_test_set(images, index))

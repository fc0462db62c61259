"""The app state: everything the user can change and everything computed from it, as evented
fields (psygnal), Qt-free. Views render from it and write the user's choices into it; the
controller turns changes into background jobs and writes their results back as
:class:`Result`, tagged with the inputs they were computed for. Nothing else keeps a copy.

Values are replaced, never mutated in place: every change is one event.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import torch
from psygnal import evented

from capsviewer.analysis.preprocess import InputImage
from capsviewer.analysis.routing_lab import PRESETS, LabState
from capsviewer.data import DATASETS, ImageSet
from capsviewer.models import display_name

EM_MODELS = ("em-capsnet", "matrix-capsnet")  # whose EM routing the Routing tab steps (first found)
EM = "em"  # routing_model: the Routing tab steps the EM model's routing
SHORT_NAMES = {name: "EM" for name in EM_MODELS}  # in the status bar, where room is short
POSE_DIMENSIONS = 16
DEFAULT_POSE_RANGE = 0.25  # the paper's offsets: steps of 0.05 in [−0.25, 0.25]


@dataclass
class LoadedModel:
    model: torch.nn.Module
    metadata: dict = field(default_factory=dict)
    path: Path | None = None
    shipped: bool = False  # one of the models that come with capsviewer

    @property
    def architecture(self) -> str:
        return self.model.architecture

    @property
    def dataset(self) -> str:
        return self.metadata.get("dataset", {}).get("name", "mnist")

    def short_name(self) -> str:
        """"CapsNet: capsnet-mnist-2": which file the model is, or just "CapsNet" for the shipped
        one (the status bar's label, short enough for three models at 1280 px; its tooltip,
        :meth:`summary`, names the file and says whether it is the shipped one)."""
        name = SHORT_NAMES.get(self.architecture) or display_name(self.architecture)
        if self.shipped:
            return name
        return f"{name}: {self.path.stem if self.path is not None else 'not saved'}"

    def summary(self, file: bool = True) -> str:
        """"CapsNet · test 99.62 % · capsnet-mnist.safetensors (shipped)" (``file``: with
        the file's name)."""
        parts = [display_name(self.architecture)]
        accuracy = self.metadata.get("metrics", {}).get("test_accuracy")
        if accuracy is not None:
            parts.append(f"test {accuracy:.2%}")
        if file and self.path is not None:
            parts.append(self.path.name + (" (shipped)" if self.shipped else ""))
        return " · ".join(parts)


@dataclass(frozen=True, eq=False)
class LabScene:
    """The routing lab's toy problem: a preset's name and the LabState derived from it (a
    private copy: edit with :meth:`edited`, which returns a new scene)."""

    preset: str
    lab: LabState

    @classmethod
    def from_preset(cls, key: str) -> LabScene:
        return cls(key, PRESETS[key].state())

    def edited(self, edit, *args) -> LabScene:
        """A new scene whose LabState is this one's after ``edit(lab, *args)``."""
        lab = copy.deepcopy(self.lab)
        edit(lab, *args)
        return LabScene(self.preset, lab)


@dataclass(frozen=True, eq=False)
class Result:
    """A value computed from the state, and the inputs it belongs to (``key``: revisions of
    the fields it depends on). ``pending``: a job for ``key`` is queued or running; ``value``
    is then None, or, while a slider moves, the previous value for the same input (drawn as
    out of date). ``value`` None and not pending: nothing to compute (no model, not asked)."""

    key: tuple = ()
    value: Any = field(default=None, repr=False)
    pending: bool = False
    error: str | None = None
    progress: tuple[int, int] | None = None  # (done, total) of a long job

    @property
    def ready(self) -> bool:
        return self.value is not None and not self.pending


NOTHING = Result()

# Fields holding objects are compared by identity: a new object is a change.
_IDENTITY = ("image", "models", "test_set", "device", "vote_selection", "lab", "analysis",
             "em_analysis", "ablation", "diagnostics", "vote_cloud", "rotated", "sweep", "reconstruction",
             "grid", "decoded_vote", "accuracy", "predictions", "lab_result", "export",
             "pair_model", "pair_digits", "overlap", "overlap_reconstruction")


@evented(equality_operators={name: operator.is_ for name in _IDENTITY})
@dataclass(eq=False)
class AppState:
    # -- what the user chooses --------------------------------------------------------------
    image: InputImage | None = None  # the input, with its origin (source, test-set index)
    models: Mapping[str, LoadedModel] = field(default_factory=lambda: MappingProxyType({}))
    dataset: str = "mnist"
    test_set: ImageSet | None = None  # the whole test set, or the shipped sample (is_sample)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    iterations: int | None = None  # routing iterations R; None: the CapsNet's own
    capsule: int | None = None  # selected digit capsule j; None: the predicted one
    routing_step: int | None = None  # the routing iteration r on screen; None: the last
    routing_model: str = "capsnet"  # whose routing the Routing tab steps: "capsnet" or EM
    angle: float = 0.0  # rotation of the input, degrees
    pose_offsets: tuple[float, ...] = (0.0,) * POSE_DIMENSIONS  # added to v_j before decoding
    pose_range: float = DEFAULT_POSE_RANGE  # sliders and the Fig. 4 grid span ±range
    sweep_step: int | None = None  # a rotation sweep was asked for, this many degrees apart
    grid_wanted: bool = False  # the Fig. 4 perturbation grid was asked for
    vote_selection: Any = None  # VoteSelection: primary capsules whose votes are decoded
    accuracy_images: int | None = None  # test accuracy against k asked for on this many images
    lab: LabScene = field(default_factory=lambda: LabScene.from_preset("symmetric"))
    # The Overlap tab: two MNIST test digits overlaid (MultiMNIST), with a model of its own.
    pair: Any = None  # PairChoice: the digits and their shifts
    pair_model: LoadedModel | None = None  # the MultiMNIST CapsNet
    pair_digits: ImageSet | None = None  # the MNIST test set (or its sample) pairs come from
    pair_capsule: int = 0  # which winner the pose sliders move: 0 the longest, 1 the second
    pair_pose_offsets: tuple[float, ...] = (0.0,) * POSE_DIMENSIONS

    # -- what the controller computes from it ---------------------------------------------------
    analysis: Result = NOTHING  # (CapsuleInspection | None, CNNInspection | None)
    em_analysis: Result = NOTHING  # EMInspection of the matrix-capsule model (Routing tab)
    ablation: Result = NOTHING  # RoutingAblation
    diagnostics: Result = NOTHING  # RoutingDiagnostics of the analysis
    vote_cloud: Result = NOTHING  # VoteCloud of the selected capsule
    rotated: Result = NOTHING  # (rotated image, capsule lengths | None, CNN probabilities | None)
    sweep: Result = NOTHING  # RotationSweep
    reconstruction: Result = NOTHING  # decoded image of the offset pose
    grid: Result = NOTHING  # (images (16, K, 28, 28), offsets (K,))
    decoded_vote: Result = NOTHING  # DecodedVote
    accuracy: Result = NOTHING  # UpdatesAccuracy
    predictions: Result = NOTHING  # TestSetPredictions
    lab_result: Result = NOTHING  # LabResult of the lab scene
    export: Result = NOTHING  # list of written paths; progress while it runs
    overlap: Result = NOTHING  # PairInspection of the pair
    overlap_reconstruction: Result = NOTHING  # the moved winner decoded from its offset pose

    # -- derived, read-only -------------------------------------------------------------------
    @property
    def capsnet(self) -> torch.nn.Module | None:
        entry = self.models.get("capsnet")
        return entry.model if entry else None

    @property
    def cnn(self) -> torch.nn.Module | None:
        entry = self.models.get("cnn")
        return entry.model if entry else None

    @property
    def em_model(self) -> torch.nn.Module | None:
        """The matrix-capsule network (EM routing), when one is loaded."""
        entry = next((self.models[name] for name in EM_MODELS if name in self.models), None)
        return entry.model if entry else None

    @property
    def class_names(self) -> tuple[str, ...]:
        return DATASETS[self.dataset].classes

    @property
    def routing_iterations(self) -> int | None:
        """R as it applies: the chosen one, else the CapsNet's own (None without a CapsNet)."""
        if self.iterations is not None:
            return self.iterations
        capsnet = self.capsnet
        return capsnet.config.routing_iterations if capsnet is not None else None

    @property
    def inspection(self):
        """The CapsNet inspection of the current input (None while computing or absent)."""
        return self.analysis.value[0] if self.analysis.ready else None

    @property
    def selected_capsule(self) -> int | None:
        """j as shown: the chosen capsule, else the prediction of the current analysis."""
        if self.capsule is not None:
            return self.capsule
        inspection = self.inspection
        return inspection.prediction if inspection is not None else None

    def choose_image(self, image: InputImage | None) -> None:
        """A new input: the capsule, the iteration shown, the pose offsets and the vote
        selection start afresh."""
        with self.events.paused():
            self.image = image
            self.capsule = None
            self.routing_step = None
            self.pose_offsets = (0.0,) * POSE_DIMENSIONS
            self.vote_selection = None

    def select_capsule(self, digit: int | None) -> None:
        """Another digit capsule j: its own pose, no offsets."""
        with self.events.paused():
            self.capsule = None if digit is None else int(digit)
            self.pose_offsets = (0.0,) * POSE_DIMENSIONS

    def choose_pair(self, pair) -> None:
        """Another pair: the sliders start again from the winners' own poses."""
        with self.events.paused():
            self.pair = pair
            self.pair_pose_offsets = (0.0,) * POSE_DIMENSIONS

    def select_pair_capsule(self, winner: int) -> None:
        """Move the other winner's pose (0: the longest capsule, 1: the second), from its own."""
        with self.events.paused():
            self.pair_capsule = int(winner)
            self.pair_pose_offsets = (0.0,) * POSE_DIMENSIONS

    def set_models(self, models: Mapping[str, LoadedModel]) -> None:
        self.models = MappingProxyType(dict(models))


@dataclass(frozen=True, eq=False)
class TestSetPredictions:
    """The class a model predicts for every test image, and which model and R it used."""

    predicted: Any  # np.ndarray (N,)
    architecture: str
    iterations: int | None  # R of a CapsNet; None for a CNN
    __test__ = False  # not a pytest test class

    def describe(self) -> str:
        name = display_name(self.architecture)
        return f"{name}, R = {self.iterations}" if self.iterations is not None else name

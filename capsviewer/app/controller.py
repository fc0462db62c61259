"""State changes → background jobs → results back into the state.

Each :class:`Job` names the state field it fills, the fields it is computed from and how to
compute it. When one of those fields changes, the job's result becomes pending (tagged with
the revisions of its inputs) and the job goes to its compute lane; a result that comes back
for inputs that have changed since is dropped. A view shows whatever the state holds:
the result for the current input, or that it is being computed. No model code runs on the
UI thread.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import QObject, Signal

from capsviewer import paths
from capsviewer.analysis import routing_lab
from capsviewer.analysis.inspection import (
    cached_predictions,
    inspect_capsnet,
    inspect_cnn,
    predict_all,
)
from capsviewer.analysis.em_inspection import inspect_em
from capsviewer.analysis.overlap import inspect_pair
from capsviewer.analysis.pose import perturbation_grid, reconstruct
from capsviewer.analysis.rotation import rotation_sweep
from capsviewer.analysis.shipped_predictions import file_sha256, shipped_predictions
from capsviewer.analysis.routing_diagnostics import (
    UPDATES,
    accuracy_by_updates,
    decode_vote,
    inspection_diagnostics,
    inspection_vote_cloud,
    routing_ablation,
)
from capsviewer.app.compute import ComputeLane
from capsviewer.app.errors import explain
from capsviewer.app.export import animation_job, export_job
from capsviewer.app.state import EM, AppState, Result, TestSetPredictions
from capsviewer.data.transforms import as_batch, model_device, rotate_images
from capsviewer.training.evaluation import EvaluationCancelled

GRID_COLUMNS = 11  # Fig. 4: offsets −R … +R in 10 steps
WAIT = object()  # a plan's inputs are themselves being computed


@dataclass(frozen=True)
class Job:
    result: str  # the state field it fills
    inputs: tuple[str, ...]  # the state fields it is computed from
    lane: str
    plan: Callable  # (controller, state) → (fn, *args) | None (nothing to compute) | WAIT
    keep: tuple[str, ...] = ()  # inputs that, changing, keep the old value drawn meanwhile
    progress: bool = False  # fn takes should_stop and progress


def _needs_inspection(plan):
    """Plans that start from the CapsNet analysis: WAIT while it is pending."""
    def wrapped(controller, state):
        if state.analysis.pending:
            return WAIT
        if state.inspection is None:
            return None
        return plan(controller, state, state.inspection)
    return wrapped


def _plan_analysis(_, s: AppState):
    if s.image is None or (s.capsnet is None and s.cnn is None):
        return None
    return _analyse, s.capsnet, s.cnn, s.image.pixels, s.iterations, s.class_names


def _plan_em_analysis(_, s: AppState):
    """The EM model's routing of the input, while the Routing tab is asked to show it."""
    if s.routing_model != EM or s.image is None or s.em_model is None:
        return None
    return inspect_em, s.em_model, s.image.pixels, s.iterations, s.class_names


def _plan_ablation(_, s: AppState):
    if s.image is None or s.capsnet is None:
        return None
    return routing_ablation, s.capsnet, s.image.pixels, UPDATES


def _plan_rotated(_, s: AppState):
    if s.image is None or (s.capsnet is None and s.cnn is None):
        return None
    return _rotated_responses, s.capsnet, s.cnn, s.image.pixels, s.angle, s.iterations


def _plan_sweep(_, s: AppState):
    if s.sweep_step is None or s.image is None or (s.capsnet is None and s.cnn is None):
        return None
    angles = np.arange(-180.0, 180.0, float(s.sweep_step))
    return (partial(rotation_sweep, fast=True), s.capsnet, s.cnn, s.image.pixels, angles,
            s.image.label, s.iterations)


@_needs_inspection
def _plan_diagnostics(_, s: AppState, inspection):
    return inspection_diagnostics, inspection


@_needs_inspection
def _plan_vote_cloud(_, s: AppState, inspection):
    if inspection.votes is None:
        return None
    return inspection_vote_cloud, inspection, s.selected_capsule


def _current_pose(s: AppState, inspection) -> np.ndarray:
    return inspection.poses[s.selected_capsule] + np.asarray(s.pose_offsets, dtype=np.float32)


@_needs_inspection
def _plan_reconstruction(_, s: AppState, inspection):
    return reconstruct, s.capsnet, _current_pose(s, inspection), s.selected_capsule


@_needs_inspection
def _plan_grid(_, s: AppState, inspection):
    if not s.grid_wanted:
        return None
    offsets = np.linspace(-s.pose_range, s.pose_range, GRID_COLUMNS)
    return _grid, s.capsnet, _current_pose(s, inspection), s.selected_capsule, offsets


def _plan_decoded_vote(_, s: AppState):
    if s.vote_selection is None:
        return None
    if s.analysis.pending:
        return WAIT
    inspection = s.inspection
    if inspection is None or inspection.votes is None:
        return None
    return decode_vote, s.capsnet, inspection, s.vote_selection


def _plan_accuracy(controller, s: AppState):
    if s.accuracy_images is None or s.capsnet is None or s.test_set is None:
        return None
    subset = s.test_set.subset(s.accuracy_images, seed=0)  # as `capsviewer ablation`
    return (_accuracy, s.capsnet, subset.images, subset.labels,
            controller.lanes["test-set"].should_stop)


def _plan_predictions(controller, s: AppState):
    entry = s.models.get("capsnet") or s.models.get("cnn")
    if not controller.predict_test_set or entry is None or s.test_set is None:
        return None
    iterations = s.routing_iterations if entry.architecture == "capsnet" else None
    return (_test_set_predictions, entry, s.test_set, iterations,
            controller.lanes["test-set"].should_stop)


def _plan_overlap(_, s: AppState):
    if s.pair is None or s.pair_model is None or s.pair_digits is None:
        return None
    return inspect_pair, s.pair_model.model, s.pair, s.pair_digits, s.iterations


def _plan_overlap_reconstruction(_, s: AppState):
    if s.overlap.pending:
        return WAIT
    if not s.overlap.ready or not any(s.pair_pose_offsets):  # unmoved: the pair's own drawing
        return None
    pair = s.overlap.value
    digit = pair.winners[s.pair_capsule]
    pose = pair.capsules.poses[digit] + np.asarray(s.pair_pose_offsets, dtype=np.float32)
    return reconstruct, s.pair_model.model, pose, digit


def _plan_lab(_, s: AppState):
    return _lab_result, s.lab.lab


JOBS = (
    Job("analysis", ("image", "models", "dataset", "iterations"), "interactive", _plan_analysis),
    Job("em_analysis", ("image", "models", "dataset", "iterations", "routing_model"),
        "interactive", _plan_em_analysis),
    Job("ablation", ("image", "models"), "interactive", _plan_ablation),
    Job("rotated", ("image", "models", "iterations", "angle"), "interactive", _plan_rotated,
        keep=("angle",)),
    Job("diagnostics", ("analysis",), "interactive", _plan_diagnostics),
    Job("vote_cloud", ("analysis", "capsule"), "interactive", _plan_vote_cloud),
    Job("reconstruction", ("analysis", "capsule", "pose_offsets"), "interactive",
        _plan_reconstruction, keep=("pose_offsets",)),
    Job("decoded_vote", ("analysis", "vote_selection"), "interactive", _plan_decoded_vote,
        keep=("vote_selection",)),
    Job("sweep", ("image", "models", "iterations", "sweep_step"), "batch", _plan_sweep),
    Job("grid", ("analysis", "capsule", "pose_offsets", "pose_range", "grid_wanted"), "batch",
        _plan_grid, keep=("pose_offsets", "pose_range")),
    Job("accuracy", ("models", "test_set", "accuracy_images"), "test-set", _plan_accuracy,
        progress=True),
    Job("predictions", ("models", "test_set", "iterations"), "test-set", _plan_predictions,
        progress=True),
    Job("lab_result", ("lab",), "lab", _plan_lab, keep=("lab",)),
    Job("overlap", ("pair", "pair_model", "pair_digits", "iterations"), "interactive",
        _plan_overlap),
    Job("overlap_reconstruction", ("overlap", "pair_capsule", "pair_pose_offsets"),
        "interactive", _plan_overlap_reconstruction, keep=("pair_pose_offsets",)),
)


class Controller(QObject):
    """Owns the compute lanes; keeps every result in the state current with its inputs."""

    failed = Signal(str, str, str)  # title, sentence, details: a job raised
    busy_changed = Signal(bool)

    def __init__(self, state: AppState, parent: QObject | None = None,
                 predict_test_set: bool = True):
        super().__init__(parent)
        self.state = state
        self.predict_test_set = predict_test_set  # classify the whole test set (the filter)
        self.lanes = {name: ComputeLane(name, self) for name in
                      ("interactive", "batch", "test-set", "lab", "loading", "export")}
        for lane in self.lanes.values():
            lane.failed.connect(lambda key, message, details:
                                self.failed.emit(f"{key} failed", message, details))
            lane.busy_changed.connect(lambda _: self.busy_changed.emit(not self.is_idle()))
        self._revisions: dict[str, int] = defaultdict(int)
        self._jobs_of: dict[str, list[Job]] = defaultdict(list)
        for job in JOBS:
            for name in job.inputs:
                self._jobs_of[name].append(job)
        state.events.connect(self._changed)
        for job in JOBS:
            self.refresh(job)

    # -- state → jobs ---------------------------------------------------------------------------
    def _changed(self, info) -> None:
        name = info.signal.name
        self._revisions[name] += 1
        if name in ("models", "test_set") and self.state.accuracy_images is not None:
            self.state.accuracy_images = None  # a measurement is asked for, never repeated
        for job in self._jobs_of.get(name, ()):
            self.refresh(job, name)

    def key_of(self, job: Job) -> tuple:
        return tuple(self._revisions[name] for name in job.inputs)

    def refresh(self, job: Job, changed: str | None = None) -> None:
        """Bring ``job``'s result up to date with its inputs: pending and queued, or empty."""
        state, key = self.state, self.key_of(job)
        current: Result = getattr(state, job.result)
        if current.key == key:
            return
        lane = self.lanes[job.lane]
        plan = job.plan(self, state)
        if plan is None or plan is WAIT:
            lane.cancel(job.result)
            setattr(state, job.result, Result(key) if plan is None else Result(key, pending=True))
            return
        kept = current.value if changed in job.keep else None
        setattr(state, job.result, Result(key, kept, pending=True))
        fn, *args = plan
        lane.cancel(job.result)  # a running job for older inputs may stop early (should_stop)
        lane.submit(job.result, fn, *args,
                    on_done=partial(self._done, job, key),
                    on_error=partial(self._failed, job, key),
                    on_progress=partial(self._progress, job, key) if job.progress else None)

    def _done(self, job: Job, key: tuple, value) -> None:
        if getattr(self.state, job.result).key == key:  # else: for inputs since replaced
            setattr(self.state, job.result, Result(key, value))

    def _failed(self, job: Job, key: tuple, error: BaseException) -> None:
        if getattr(self.state, job.result).key != key:
            return
        if isinstance(error, EvaluationCancelled):
            setattr(self.state, job.result, Result(key))
            return
        what = job.result.replace("_", " ")
        message, details = explain(error, f"computing “{what}”")
        setattr(self.state, job.result, Result(key, error=message))
        self.failed.emit(f"{what.capitalize()} failed", message, details)

    def _progress(self, job: Job, key: tuple, done: int, total: int) -> None:
        current = getattr(self.state, job.result)
        if current.key == key and current.pending:
            setattr(self.state, job.result, Result(key, pending=True, progress=(done, total)))

    # -- actions --------------------------------------------------------------------------------
    def export(self, views, folder: str | Path) -> None:
        """Write ``views`` to ``folder`` in the background (state.export shows the progress)."""
        self._export(str(folder), export_job, list(views), Path(folder))

    def export_animation(self, routing_view, path: str | Path, width: int | None = None) -> None:
        """Every routing iteration of ``routing_view`` as an animated GIF at ``path``, in the
        background like other exports."""
        self._export(str(path), partial(animation_job, width=width), routing_view, Path(path))

    def _export(self, target: str, job, *args) -> None:
        lane = self.lanes["export"]
        key = ("export", target, self._revisions["export"] + 1)
        self.state.export = Result(key, pending=True, progress=(0, 1))
        lane.submit("export", job, *args, lane.should_stop,
                    on_done=lambda written: self._export_done(key, written),
                    on_error=lambda error: self._export_failed(key, error),
                    on_progress=lambda done, total: self._export_progress(key, done, total))

    def cancel_export(self) -> None:
        if self.state.export.pending:
            self.lanes["export"].cancel("export")
            self.state.export = Result(self.state.export.key, error="cancelled")

    def _export_done(self, key, written) -> None:
        if self.state.export.key == key:
            self.state.export = Result(key, written)

    def _export_failed(self, key, error: BaseException) -> None:
        if self.state.export.key == key:
            message, details = explain(error, "exporting")
            self.state.export = Result(key, error=message)
            if details:
                self.failed.emit("Export failed", message, details)

    def _export_progress(self, key, done: int, total: int) -> None:
        if self.state.export.key == key and self.state.export.pending:
            self.state.export = Result(key, pending=True, progress=(done, total))

    # -- lanes ----------------------------------------------------------------------------------
    def is_idle(self) -> bool:
        """No job queued, running or undelivered (tests and benchmarks wait for this)."""
        return all(lane.pending() == 0 for lane in self.lanes.values())

    def shutdown(self) -> None:
        for lane in self.lanes.values():
            lane.shutdown()


# -- the jobs: Qt-free, on a lane's thread ------------------------------------------------------

def _analyse(capsnet, cnn, pixels, iterations, names):
    capsules = inspect_capsnet(capsnet, pixels, iterations, names) if capsnet is not None else None
    return capsules, inspect_cnn(cnn, pixels, names) if cnn is not None else None


def _rotated_responses(capsnet, cnn, pixels, angle, iterations):
    image = np.asarray(rotate_images(pixels, [angle])[0])
    capsules = None
    if capsnet is not None:  # lengths only: no routing trace needed for the angle slider
        with torch.no_grad():
            x = as_batch(image, model_device(capsnet))
            capsules = capsnet.eval()(x, iterations=iterations).scores[0].cpu().numpy()
    probabilities = inspect_cnn(cnn, image).probabilities if cnn is not None else None
    return image, capsules, probabilities


def _grid(capsnet, pose, digit, offsets):
    return perturbation_grid(capsnet, pose, digit, offsets), offsets


def _accuracy(capsnet, images, labels, should_stop, progress):
    return accuracy_by_updates(capsnet, images, labels, UPDATES, 250, should_stop, progress)


def _lab_result(lab):
    return lab, routing_lab.compute(lab)  # looked up at call time: tests watch it


class _AtIterations(torch.nn.Module):
    """A CapsNet routed with R iterations, for :func:`predict_all`."""

    def __init__(self, model: torch.nn.Module, iterations: int):
        super().__init__()
        self.model, self.iterations = model, iterations

    def forward(self, x):
        return self.model(x, iterations=self.iterations)


def _test_set_predictions(entry, images, iterations, should_stop,
                          progress) -> TestSetPredictions | None:
    """The model's class for every test image at R: shipped with the model (its own R), else
    cached per (checkpoint file, test set, R), else computed (with progress) and cached."""
    model = entry.model if iterations is None else _AtIterations(entry.model, iterations)
    if entry.path is None:
        predicted = predict_all(model, images.images, 100, should_stop, progress)
    else:
        digest, data = file_sha256(entry.path), images.checksum()
        predicted = shipped_predictions(digest, data, iterations)
        if predicted is None:
            key = f"{digest[:16]}-{data[:16]}" + (f"-r{iterations}" if iterations else "")
            predicted = cached_predictions(model, images.images, key,
                                           paths.cache_dir("predictions"), 100, should_stop,
                                           progress)
    if predicted is None:
        return None
    return TestSetPredictions(predicted, entry.architecture, iterations)

"""The half of the window that needs torch: the app state, the controller and its compute
lanes, the model session, the training runner, and the views that draw model results.

:mod:`capsviewer.app.main_window` builds its frame (the input dock, tabs, menus, status bar)
without importing this module; ``capsviewer`` imports it on a thread while the frame is on
screen, and :meth:`MainWindow.start` then puts these parts in place.
"""

from __future__ import annotations

from pathlib import Path

from capsviewer.app.controller import Controller
from capsviewer.app.export import export_views
from capsviewer.app.session import ModelSession
from capsviewer.app.state import AppState
from capsviewer.app.training_runner import TrainingRunner
from capsviewer.app.views.pose_view import PoseView
from capsviewer.app.views.prediction_view import PredictionView
from capsviewer.app.views.rotation_view import RotationView
from capsviewer.app.views.routing_lab_view import RoutingLabView
from capsviewer.app.views.routing_view import RoutingView
from capsviewer.app.views.training_view import TrainingView
from capsviewer.data import image_set
from capsviewer.training import CheckpointError, DeviceUnavailable, read_metadata
from capsviewer.training.model_files import SHIPPED_MODELS, dataset_of, find_models

__all__ = ["AppState", "Controller", "DeviceUnavailable", "ModelSession", "SHIPPED_MODELS",
           "TrainingRunner", "build_view", "dataset_of", "export_views", "find_models",
           "image_set", "startup_models"]


def startup_models(explicit: list | None = None) -> tuple[dict[str, Path], list[str]]:
    """The models a new window opens: the newest MNIST ones found (shipped first), replaced
    per architecture by those named on the command line (``--model``); and why any of those
    cannot be opened."""
    models, problems = find_models("mnist"), []
    for path in explicit or []:
        try:
            models[read_metadata(path)["architecture"]] = Path(path)
        except (CheckpointError, OSError) as error:
            problems.append(f"{path}:\n{error}")
    return models, problems


def build_view(window, name: str):
    """The view ``name`` (a MainWindow attribute: "routing_view", …), bound to the window's
    state and wired to its session and training runner."""
    state = window.state
    if name == "lab_view":
        return RoutingLabView(state)
    if name == "training_view":
        view = TrainingView()
        view.set_data_root(window.session.data_root)
        view.set_dataset(state.dataset)
        view.connect_runner(window.runner)
        view.use_model.connect(window.session.load_checkpoint)
        return view
    view = {"prediction_view": PredictionView, "routing_view": RoutingView,
            "pose_view": PoseView, "rotation_view": RotationView}[name]()
    view.bind(state)
    return view

"""The half of the window that needs torch: the app state, the controller and its compute
lanes, the model session, the training runner, and the views that draw model results.

:mod:`capsviewer.app.main_window` builds its frame (the input dock, tabs, menus, status bar)
without importing this module; ``capsviewer`` imports it on a thread while the frame is on
screen, and :meth:`MainWindow.start` then puts these parts in place.
"""

from __future__ import annotations

from pathlib import Path

from psygnal import SignalInstance
from PySide6.QtCore import QEvent, QObject

from capsviewer.app.controller import Controller
from capsviewer.app.export import export_views
from capsviewer.app.overlap_session import OverlapSession
from capsviewer.app.session import ModelSession
from capsviewer.app.state import AppState
from capsviewer.app.training_runner import TrainingRunner
from capsviewer.app.views.overlap_view import OverlapView
from capsviewer.app.views.pose_view import PoseView
from capsviewer.app.views.prediction_view import PredictionView
from capsviewer.app.views.rotation_view import RotationView
from capsviewer.app.views.routing_lab_view import RoutingLabView
from capsviewer.app.views.routing_view import RoutingView
from capsviewer.app.views.training_view import TrainingView
from capsviewer.data import image_set
from capsviewer.training import CheckpointError, DeviceUnavailable, read_metadata
from capsviewer.training.model_files import SHIPPED_MODELS, dataset_of, find_models, skipped_note

__all__ = ["AppState", "Controller", "DeviceUnavailable", "ModelSession", "OverlapSession",
           "SHIPPED_MODELS", "ShownState", "TrainingRunner", "build_view", "dataset_of",
           "deliver_held", "export_views", "find_models", "image_set", "skipped_note",
           "startup_models"]


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


def build_view(window, name: str, when_shown: bool = False):
    """The view ``name`` (a MainWindow attribute: "routing_view", …), bound to the window's
    state and wired to its session and training runner; ``when_shown``: it draws the state's
    changes while it is on screen only (:class:`ShownState`). The Overlap view's MultiMNIST
    model and MNIST digits start loading (in the background) when it is built."""
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
            "pose_view": PoseView, "rotation_view": RotationView,
            "overlap_view": OverlapView}[name]()
    view.bind(ShownState(state, view) if when_shown else state)
    if name == "overlap_view":
        window.overlap_session.start()
    return view


class ShownState:
    """The app state as a tab's view binds to it, drawing only while on screen: the state's
    events reach the view while it is shown; those that come while it is hidden are held
    (the latest of each) and delivered, in the order they last came, when it is shown. A new
    input then costs the hidden tabs nothing. Reads and writes go to the state itself."""

    def __init__(self, state: AppState, view):
        object.__setattr__(self, "_state", state)
        object.__setattr__(self, "events", _HeldEvents(state.events, view))

    def __getattr__(self, name: str):
        return getattr(self._state, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self._state, name, value)


class _HeldEvents(QObject):
    """The state's events as :class:`ShownState` relays them to one view."""

    def __init__(self, events, view):
        super().__init__(view)
        self._source, self._view = events, view
        self._relays: dict[str, SignalInstance] = {}
        self._held: dict[str, tuple] = {}  # event name → latest arguments, oldest first
        view.installEventFilter(self)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        source = getattr(self._source, name)
        if not isinstance(source, SignalInstance):
            return source  # paused(), connect() of all events, …
        relay = self._relays.get(name)
        if relay is None:
            relay = self._relays[name] = SignalInstance(source.signature, name=name)
            source.connect(lambda *args: self._arrived(name, args), check_nargs=False)
        return relay

    def _arrived(self, name: str, args: tuple) -> None:
        if self._view.isVisible():
            self._relays[name].emit(*args)
        else:
            self._held.pop(name, None)
            self._held[name] = args

    def deliver(self) -> None:
        """What came while the view was hidden."""
        held, self._held = self._held, {}
        for name, args in held.items():
            self._relays[name].emit(*args)

    def eventFilter(self, obj, event) -> bool:
        if obj is self._view and event.type() == QEvent.Type.Show and self._held:
            self.deliver()
        return False


def deliver_held(view) -> None:
    """Bring a hidden view up to date with the state (before it is exported, say)."""
    for events in view.findChildren(_HeldEvents):
        events.deliver()

"""Training off the UI thread: a :class:`Trainer` driven by a superqt generator worker.

The worker runs in ``QThreadPool.globalInstance()``. Everything that may block or raise — loading
the data, choosing the device, building the model — happens in the worker too. Batch progress
is thinned by the trainer to about 20 events a second (``PROGRESS_INTERVAL``); epoch results
and the final event always arrive.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass, replace

import torch
from PySide6.QtCore import QObject, Signal, Slot
from superqt.utils import GeneratorWorker, create_worker

from capsviewer.app.errors import explain
from capsviewer.data import DatasetUnavailable, DownloadCancelled, ImageSet
from capsviewer.data.tasks import get_task
from capsviewer.training import (
    BatchProgress,
    DeviceUnavailable,
    EpochResult,
    EvaluationProgress,
    TrainConfig,
    Trainer,
    TrainingError,
    TrainingFinished,
)

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.05  # seconds between progress signals (≤ 20 per second)
# Cores a CPU training run leaves to the rest of the app (the UI thread draws on one): torch's
# thread count is per thread, so only the training's parallel regions get fewer threads.
UI_CORES = 1
_OUTLIVING: set["TrainingRunner"] = set()  # runners whose window closed before their worker


@dataclass(frozen=True)
class _Failure:
    message: str


class _TrainingWorker(GeneratorWorker):
    """A GeneratorWorker that tells when its thread has left ``run`` (for :meth:`wait`)."""

    done: threading.Event

    def run(self) -> None:
        try:
            super().run()
        finally:
            self.done.set()


def failure_message(error: BaseException) -> str:
    """A sentence for the user; the known failures carry their own advice, anything else is
    said in plain words (its traceback goes to the log)."""
    if isinstance(error, DatasetUnavailable):
        return str(error)  # names the files and where they go
    if isinstance(error, TrainingError):
        return f"Training stopped: {error}"
    if isinstance(error, DeviceUnavailable):
        return f"Device not available: {error}"
    return "Training stopped: " + explain(error, "training")[0]


class RunControl:
    """Pause and cancel of one run, in one place: set from the UI thread, read by the worker
    between loading steps and passed on to the Trainer once it exists."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cancelled = False
        self._paused = False
        self._trainer: Trainer | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def paused(self) -> bool:
        return self._paused

    def attach(self, trainer: Trainer) -> bool:
        """The worker's Trainer follows this control from now on; False when cancelled."""
        with self._lock:
            self._trainer = trainer
            if self._paused:
                trainer.pause()
            return not self._cancelled

    def detach(self) -> None:
        with self._lock:
            self._trainer = None

    def set(self, paused: bool | None = None, cancelled: bool = False) -> None:
        with self._lock:
            if paused is not None:
                self._paused = paused
            self._cancelled |= cancelled
            trainer = self._trainer
            if trainer is not None:
                if cancelled:
                    trainer.cancel()
                elif paused:
                    trainer.pause()
                elif paused is False:
                    trainer.resume()


class TrainingRunner(QObject):
    """Runs one training at a time and reports it with signals on the UI thread.

    ``progress`` carries the newest :class:`BatchProgress`, its ``loss`` and ``accuracy`` those
    of all images since the previous signal (so a thinned curve still sees every batch).
    ``finished`` or ``failed`` comes once per run, after the worker thread is done.
    """

    progress = Signal(object)  # BatchProgress
    testing = Signal(object)  # EvaluationProgress: the test pass after each epoch
    epoch_done = Signal(object)  # EpochResult
    finished = Signal(object)  # TrainingFinished
    failed = Signal(str)
    state_changed = Signal(str)  # "running", "paused", "cancelling", "idle"

    def __init__(self, parent: QObject | None = None, download: bool = True):
        super().__init__(parent)
        self.download = download  # fetch a missing dataset (False: fail with where files go)
        self.config: TrainConfig | None = None  # of the last run
        self._control = RunControl()
        self._worker: _TrainingWorker | None = None
        self._done: threading.Event | None = None
        self._state = "idle"
        self._history: list[EpochResult] = []
        self._outcome: TrainingFinished | _Failure | None = None
        self._started = 0.0

    # -- control, UI thread -------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self._state

    def is_running(self) -> bool:
        return self._state != "idle"

    @Slot(object)
    def start(self, config: TrainConfig, train_set: ImageSet | None = None,
              test_set: ImageSet | None = None) -> None:
        """Train with ``config``; data sets not given are loaded in the worker."""
        if self.is_running():
            raise RuntimeError("a training run is already in progress")
        self.config, self._control = config, RunControl()
        self._history, self._outcome = [], None
        self._started = time.perf_counter()
        self._done = threading.Event()
        worker = create_worker(
            self._events, config, train_set, test_set, self.download, self._control,
            _worker_class=_TrainingWorker, _start_thread=False,
            _connect={"yielded": self._on_event, "errored": self._on_error,
                      "finished": self._on_worker_finished, "warned": self._on_warning},
        )
        worker.done = self._done
        self._worker = worker
        self._set_state("running")
        worker.start()

    @Slot()
    def pause(self) -> None:
        if self._state == "running":
            self._control.set(paused=True)
            self._set_state("paused")

    @Slot()
    def resume(self) -> None:
        if self._state == "paused":
            self._control.set(paused=False)
            self._set_state("running")

    @Slot()
    def cancel(self) -> None:
        """Stop after the current batch (or test batch); finished epochs are kept."""
        if self._state not in ("idle", "cancelling"):
            self._control.set(cancelled=True)
            self._set_state("cancelling")

    def wait(self, timeout_ms: int = 5000) -> bool:
        """Block until the worker thread has ended; True when it has (or none ran)."""
        return True if self._done is None else self._done.wait(timeout_ms / 1000)

    def outlive(self, parent: QObject) -> None:
        """Leave ``parent`` (a window being closed) and stay alive until the worker thread
        has ended: its last signals then reach a live object, not a deleted one."""
        self.setParent(None)
        _OUTLIVING.add(self)
        self.state_changed.connect(lambda state: state == "idle" and _OUTLIVING.discard(self))

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.state_changed.emit(state)

    # -- worker thread -------------------------------------------------------------------------
    def _events(self, config: TrainConfig, train_set: ImageSet | None,
                test_set: ImageSet | None, download: bool, control: RunControl):
        """The generator the worker runs: never raises, a failure is yielded as _Failure."""
        try:
            stop = lambda: control.cancelled  # noqa: E731  a download stops at a cancel
            task = get_task(config.dataset)  # MultiMNIST: MNIST's digits, paired
            if train_set is None and not control.cancelled:
                train_set = task.load(True, config.data_root, download, should_stop=stop)
            if test_set is None and not control.cancelled:
                test_set = task.load(False, config.data_root, download, should_stop=stop)
            if control.cancelled:
                return
            if config.progress_interval is None:
                config = replace(config, progress_interval=PROGRESS_INTERVAL)
            trainer = Trainer(config, train_set, test_set)
            if not control.attach(trainer):
                return
            threads = torch.get_num_threads()  # this thread's: the lanes keep their own
            if trainer.device.type == "cpu":
                torch.set_num_threads(max(1, threads - UI_CORES))
            try:
                yield from trainer.events()
            finally:
                torch.set_num_threads(threads)  # the pool's thread may run other work next
                control.detach()
        except DownloadCancelled:
            return
        except (DatasetUnavailable, DeviceUnavailable, TrainingError) as error:
            yield _Failure(failure_message(error))
        except Exception as error:  # reported to the user; the UI keeps running
            log.error("training failed\n%s", traceback.format_exc())
            yield _Failure(failure_message(error))

    # -- worker signals, delivered on the UI thread -----------------------------------------
    @Slot(object)
    def _on_event(self, event) -> None:
        if isinstance(event, BatchProgress):
            if self._state != "cancelling":
                self.progress.emit(event)
        elif isinstance(event, EvaluationProgress):
            if self._state != "cancelling":
                self.testing.emit(event)
        elif isinstance(event, EpochResult):
            self._history.append(event)
            self.epoch_done.emit(event)
        elif isinstance(event, (TrainingFinished, _Failure)):
            self._outcome = event

    @Slot(object)
    def _on_error(self, error: BaseException) -> None:  # the generator catches; a fallback
        self._outcome = _Failure(failure_message(error))

    @Slot(tuple)
    def _on_warning(self, args: tuple) -> None:
        log.warning("training: %s", args[0] if args else args)

    @Slot()
    def _on_worker_finished(self) -> None:
        outcome = self._outcome
        if outcome is None:  # stopped by quit() before the trainer said so
            history = tuple(self._history)
            outcome = TrainingFinished(
                False, len(history), history, history[-1].checkpoint if history else None,
                time.perf_counter() - self._started,
            )
        self._worker = None
        self._set_state("idle")
        if isinstance(outcome, _Failure):
            self.failed.emit(outcome.message)
        else:
            self.finished.emit(outcome)

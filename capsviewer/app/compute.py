"""Model work off the UI thread, latest request wins.

A :class:`ComputeLane` is one QThread with one pending slot per key: submitting a job under a
key that already waits replaces it, so a slider dragged across 50 values runs the decoder a few
times, never 50. Jobs of one key run in order, so every result that arrives is newer than the
one on screen; ``cancel(key)`` drops results of jobs submitted before it (e.g. a model swap).
Callbacks run on the UI thread. A long job can report progress and poll ``should_stop``; one
that needs the UI thread for a moment (grabbing a widget) asks for it with :func:`on_ui_thread`.
"""

from __future__ import annotations

import concurrent.futures
import threading
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, QThread, Qt, Signal, Slot

from capsviewer.app.errors import explain

_LANES: "weakref.WeakSet[ComputeLane]" = weakref.WeakSet()


def running_lanes() -> list["ComputeLane"]:
    """Lanes whose thread still runs (tests assert none is left behind)."""
    return [lane for lane in list(_LANES) if shiboken6.isValid(lane) and lane.isRunning()]


@dataclass
class _Job:
    key: str
    token: int
    fn: Callable[..., Any]
    args: tuple
    on_done: Callable[[Any], None] | None
    on_error: Callable[[BaseException], None] | None
    on_progress: Callable[..., None] | None = None


@dataclass
class JobOutcome:
    key: str
    token: int
    value: Any = None
    error: BaseException | None = None
    details: str = ""


class JobCancelled(Exception):
    """Raised inside a job that saw ``should_stop()``; its result is dropped quietly."""


class ComputeLane(QThread):
    outcome = Signal(object)  # JobOutcome, emitted from the worker thread
    progressed = Signal(int, object)  # token, progress arguments, from the worker thread
    failed = Signal(str, str, str)  # key, sentence, details: a job without on_error raised
    busy_changed = Signal(bool)

    def __init__(self, name: str = "compute", parent=None):
        super().__init__(parent)
        self.setObjectName(name)
        self._condition = threading.Condition()
        self._pending: dict[str, _Job] = {}
        self._callbacks: dict[int, _Job] = {}
        self._dropped_before: dict[str, int] = {}
        self._token = 0
        self._stopping = False
        self._busy = False
        self._running: _Job | None = None
        self.outcome.connect(self._deliver, Qt.ConnectionType.QueuedConnection)
        self.progressed.connect(self._deliver_progress, Qt.ConnectionType.QueuedConnection)
        _LANES.add(self)

    # -- UI thread ------------------------------------------------------------------------------
    def submit(self, key: str, fn: Callable[..., Any], *args,
               on_done: Callable[[Any], None] | None = None,
               on_error: Callable[[BaseException], None] | None = None,
               on_progress: Callable[..., None] | None = None) -> int:
        """Queue ``fn(*args)`` under ``key``, replacing a job of that key not yet started.
        With ``on_progress``, ``fn`` also gets ``progress=report``: ``report(*values)`` from
        the worker calls ``on_progress(*values)`` on the UI thread while the job is current."""
        with self._condition:
            self._token += 1
            job = _Job(key, self._token, fn, args, on_done, on_error, on_progress)
            replaced = self._pending.pop(key, None)
            if replaced is not None:
                self._callbacks.pop(replaced.token, None)
            self._pending[key] = job
            self._callbacks[job.token] = job
            self._condition.notify()
        if not self.isRunning() and not self._stopping:
            self.start()
        return job.token

    def cancel(self, key: str | None = None) -> None:
        """Forget pending jobs of ``key`` (all keys: None) and drop results of running ones."""
        with self._condition:
            keys = [key] if key is not None else list({*self._pending, *self._dropped_before,
                                                       *(j.key for j in self._callbacks.values())})
            for k in keys:
                job = self._pending.pop(k, None)
                if job is not None:
                    self._callbacks.pop(job.token, None)
                self._dropped_before[k] = self._token + 1

    def should_stop(self) -> bool:
        """For long jobs to poll (worker thread): the lane is shutting down or the running job
        was cancelled."""
        with self._condition:
            job = self._running
            return self._stopping or (
                job is not None and job.token < self._dropped_before.get(job.key, 0))

    def pending(self) -> int:
        """Jobs submitted whose result has not reached the UI thread yet (cancelled excluded)."""
        with self._condition:
            return len(self._callbacks)

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop after the running job; True when the thread has ended."""
        with self._condition:
            self._stopping = True
            self._pending.clear()
            self._condition.notify()
        return self.wait(timeout_ms) if self.isRunning() else True

    @Slot(int, object)
    def _deliver_progress(self, token: int, values: tuple) -> None:
        job = self._callbacks.get(token)
        if job is not None and job.on_progress is not None \
                and token >= self._dropped_before.get(job.key, 0):
            job.on_progress(*values)

    @Slot(object)
    def _deliver(self, outcome: JobOutcome) -> None:
        job = self._callbacks.pop(outcome.token, None)
        if job is None or outcome.token < self._dropped_before.get(outcome.key, 0):
            return
        if isinstance(outcome.error, JobCancelled):
            return
        if outcome.error is None:
            if job.on_done is not None:
                job.on_done(outcome.value)
        elif job.on_error is not None:
            job.on_error(outcome.error)
        else:
            self.failed.emit(outcome.key, *explain(outcome.error, f"computing {outcome.key}"))

    # -- worker thread ----------------------------------------------------------------------------
    def run(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    return
                key = next(iter(self._pending))
                job = self._pending.pop(key)
                self._busy = True
                self._running = job
            self.busy_changed.emit(True)
            kwargs = {}
            if job.on_progress is not None:
                kwargs["progress"] = lambda *values, token=job.token: \
                    self.progressed.emit(token, values)
            try:
                outcome = JobOutcome(job.key, job.token, value=job.fn(*job.args, **kwargs))
            except Exception as error:  # reported to the UI, never kills the lane
                outcome = JobOutcome(job.key, job.token, error=error,
                                     details=traceback.format_exc())
            with self._condition:
                self._busy = False
                self._running = None
            self.outcome.emit(outcome)
            self.busy_changed.emit(False)


def on_ui_thread(fn: Callable[..., Any], *args, should_stop: Callable[[], bool]) -> Any:
    """From a job: run ``fn(*args)`` on the UI thread between two of its events and return
    its value. Each call is one short step (a strip of a widget grabbed, a table read), so the
    window keeps drawing in between. Raises JobCancelled once ``should_stop()`` says so."""
    abandoned = threading.Event()

    def guarded():
        if abandoned.is_set():  # the job stopped waiting: do nothing
            return False, JobCancelled()
        try:
            return True, fn(*args)
        except Exception as error:  # handed back to the job, raised there
            return False, error

    if should_stop():
        raise JobCancelled
    future = concurrent.futures.Future()
    _ui_caller().call.emit(lambda: future.set_result(guarded()))
    while True:
        if should_stop():
            abandoned.set()
            raise JobCancelled
        try:
            ok, value = future.result(timeout=0.05)
        except concurrent.futures.TimeoutError:
            continue
        if not ok:
            raise value
        return value


class _UiCaller(QObject):
    """Runs what a job's thread emits on the UI thread, between two of its events. One for the
    app, never deleted: a caller made and dropped per call (superqt's ensure_main_thread) can
    be deleted by the job's thread while the UI thread still uses it, and crash."""

    call = Signal(object)  # a callable without arguments

    def __init__(self):
        super().__init__()
        self.call.connect(self._run, Qt.ConnectionType.QueuedConnection)

    @Slot(object)
    def _run(self, fn) -> None:
        fn()


_UI_CALLER: list[_UiCaller] = []
_UI_CALLER_LOCK = threading.Lock()


def _ui_caller() -> _UiCaller:
    with _UI_CALLER_LOCK:
        if not _UI_CALLER:
            caller = _UiCaller()
            caller.moveToThread(QCoreApplication.instance().thread())
            _UI_CALLER.append(caller)
        return _UI_CALLER[0]

"""The compute lane: work off the UI thread, latest request wins, errors reported."""

import threading

import pytest

from capsviewer.app.compute import ComputeLane, JobCancelled, on_ui_thread


@pytest.fixture
def lane(qtbot):
    lane = ComputeLane("test")
    yield lane
    assert lane.shutdown(3000)


def test_job_runs_off_the_ui_thread_and_calls_back_on_it(qtbot, lane):
    ui_thread = threading.get_ident()
    ran_on, called_on = [], []

    def job(x):
        ran_on.append(threading.get_ident())
        return x * 2

    lane.submit("k", job, 21, on_done=lambda v: called_on.append((threading.get_ident(), v)))
    qtbot.waitUntil(lambda: bool(called_on), timeout=3000)
    assert ran_on[0] != ui_thread
    assert called_on == [(ui_thread, 42)]


def test_latest_request_wins_while_a_job_runs(qtbot, lane):
    gate = threading.Event()
    ran, shown = [], []

    def job(value):
        if value == 0:
            gate.wait(5)
        ran.append(value)
        return value

    lane.submit("slider", job, 0, on_done=shown.append)
    qtbot.waitUntil(lambda: lane.pending() == 1 and lane._busy, timeout=3000)
    for value in range(1, 50):  # a slider dragged across 49 values while the decoder is busy
        lane.submit("slider", job, value, on_done=shown.append)
    gate.set()
    qtbot.waitUntil(lambda: bool(shown) and shown[-1] == 49, timeout=3000)
    assert ran == [0, 49]
    assert shown == [0, 49]


def test_keys_do_not_replace_each_other(qtbot, lane):
    shown = []
    lane.submit("a", lambda: "a", on_done=shown.append)
    lane.submit("b", lambda: "b", on_done=shown.append)
    qtbot.waitUntil(lambda: len(shown) == 2, timeout=3000)
    assert sorted(shown) == ["a", "b"]


def test_cancel_drops_the_result_of_a_running_job(qtbot, lane):
    gate = threading.Event()
    shown = []
    lane.submit("k", lambda: gate.wait(5) and "old", on_done=shown.append)
    qtbot.waitUntil(lambda: bool(lane._busy), timeout=3000)
    lane.cancel("k")
    lane.submit("k", lambda: "new", on_done=shown.append)
    gate.set()
    qtbot.waitUntil(lambda: bool(shown) and lane.pending() == 0, timeout=3000)
    assert shown == ["new"]  # the old job's result came back too, and was dropped


def test_errors_reach_the_ui_and_the_lane_survives(qtbot, lane):
    def broken():
        raise ValueError("bad pose")

    with qtbot.waitSignal(lane.failed, timeout=3000) as blocker:
        lane.submit("decode", broken)
    key, sentence, details = blocker.args  # a sentence for the dialog, Python's text behind it
    assert key == "decode" and "bad pose" not in sentence and "computing decode" in sentence
    assert details.rstrip().endswith("ValueError: bad pose") and "Traceback" in details
    errors, shown = [], []
    lane.submit("decode", broken, on_error=errors.append)
    lane.submit("other", lambda: 1, on_done=shown.append)
    qtbot.waitUntil(lambda: bool(errors and shown), timeout=3000)
    assert isinstance(errors[0], ValueError) and shown == [1]


def test_shutdown_ends_the_thread(qtbot):
    lane = ComputeLane("short")
    lane.submit("k", lambda: None)
    qtbot.waitUntil(lane.isRunning, timeout=3000)
    assert lane.shutdown(3000)
    assert not lane.isRunning()


def test_progress_reaches_the_ui_thread_in_order(qtbot, lane):
    ui_thread = threading.get_ident()
    seen, done = [], []

    def job(count, progress):
        for k in range(1, count + 1):
            progress(k, count)
        return count

    lane.submit("long", job, 5, on_done=done.append,
                on_progress=lambda k, n: seen.append((threading.get_ident(), k, n)))
    qtbot.waitUntil(lambda: bool(done), timeout=3000)
    assert seen == [(ui_thread, k, 5) for k in range(1, 6)]


def test_a_job_borrows_the_ui_thread_for_a_step_and_stops_when_cancelled(qtbot, lane):
    ui_thread = threading.get_ident()
    gate = threading.Event()
    steps, outcome = [], []

    def job():
        steps.append(on_ui_thread(threading.get_ident, should_stop=lane.should_stop))
        gate.wait(5)
        on_ui_thread(steps.append, "never", should_stop=lane.should_stop)

    lane.submit("export", job, on_done=outcome.append, on_error=outcome.append)
    qtbot.waitUntil(lambda: len(steps) == 1, timeout=3000)
    assert steps == [ui_thread]
    lane.cancel("export")
    gate.set()
    qtbot.waitUntil(lambda: lane.pending() == 0 and not lane._busy, timeout=3000)
    assert steps == [ui_thread] and outcome == []  # cancelled quietly, the step never ran


def test_an_error_on_the_ui_thread_step_fails_the_job(qtbot, lane):
    errors = []

    def job():
        return on_ui_thread(lambda: 1 / 0, should_stop=lane.should_stop)

    lane.submit("k", job, on_error=errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=3000)
    assert isinstance(errors[0], ZeroDivisionError)
    assert not isinstance(errors[0], JobCancelled)

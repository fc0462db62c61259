"""How long the UI thread goes without serving its event loop while a routing-lab vote is dragged
and while views are exported (both run in the background; the UI thread only draws).

    python benchmarks/ui_gaps.py [--data-root PATH] [--drags 100] [--repeats 3]

Runs offscreen with the models the app would open. A 10 ms QTimer ticks on the UI thread;
a gap is the time between two ticks (10 ms when nothing else runs). Prints the worst gap and
the 99th percentile for each activity, and the longest single UI-thread step of an export.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("CAPSVIEWER_DATA"))
    parser.add_argument("--drags", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    from capsviewer.app import export as export_module
    from capsviewer.app.main_window import MainWindow, default_models

    settings = QSettings(str(Path(tempfile.mkdtemp()) / "s.ini"), QSettings.Format.IniFormat)
    window = MainWindow(default_models(), data_root=args.data_root, settings=settings,
                        download=False, show_errors=False, predict_test_set=False)
    window.resize(1360, 860)
    window.show()

    def wait(condition, timeout=300.0):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the window did not settle")
            app.processEvents()

    wait(lambda: window.inspection is not None and window.is_idle())
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))

    steps: list[float] = []  # seconds each UI-thread step of an export took
    original = export_module.on_ui_thread

    def timed(fn, *fn_args, should_stop):
        def step(*step_args):
            start = time.perf_counter()
            try:
                return fn(*step_args)
            finally:
                steps.append(time.perf_counter() - start)
        return original(step, *fn_args, should_stop=should_stop)

    export_module.on_ui_thread = timed  # what the export's steps ask the UI thread for

    def measure(activity) -> np.ndarray:
        ticks.clear()
        timer.start()
        activity()
        timer.stop()
        return np.diff(ticks) * 1000

    lab = window.lab_view
    lab.load_preset("free")
    wait(lab.is_current)

    def drag() -> None:
        start = lab.state.effective_votes()[2, 0]
        for k, t in enumerate(np.linspace(0, 6, args.drags), 1):
            x, y = start + 0.01 * k * np.array([np.cos(t), np.sin(t)])
            lab.dynamic_canvas.vote_moved.emit(2, 0, (float(x), float(y)))
            app.processEvents()
        wait(lambda: lab.is_current() and window.is_idle())

    def export(views) -> None:
        window.controller.export(views, tempfile.mkdtemp())
        wait(lambda: not window.state.export.pending)

    window.tabs.setCurrentWidget(window.lab_view)
    activities = {
        f"drag a lab vote {args.drags} times": drag,
        "export the Routing tab (and its panels)": lambda: export([window.routing_view]),
        "export all views": lambda: export(window.export_targets(current=False)),
    }
    print(f"UI-thread gaps in ms (10 ms timer; {args.repeats} runs each, {os.cpu_count()} CPUs)")
    for name, activity in activities.items():
        gaps = np.concatenate([measure(activity) for _ in range(args.repeats)])
        print(f"  {name:42s} worst {gaps.max():6.1f}  p99 {np.percentile(gaps, 99):6.1f}  "
              f"median {np.median(gaps):5.1f}")
        if steps:
            print(f"    longest UI-thread export step {1000 * max(steps):.1f} ms of {len(steps)}")
            steps.clear()
    export_module.on_ui_thread = original
    window.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

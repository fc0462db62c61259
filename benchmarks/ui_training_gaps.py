"""How long the UI thread goes without serving its event loop while a model trains in the
window (the Training tab on screen, its curves and progress bar drawn as events arrive).

    python benchmarks/ui_training_gaps.py [--data-root PATH] [--seconds 60] [--models cnn capsnet]

Runs offscreen with the window the app opens. For each model, a training run starts from the
Training tab's runner (batch 128, all of MNIST's training images, on the CPU); once its first
progress event has arrived, a 10 ms QTimer ticks on the UI thread for ``--seconds``; a gap is
the time between two ticks (10 ms when nothing else runs). Prints the 99th percentile, the
worst gap and the median, with the progress events received, the redraws of the curves and
the longest time one progress event or redraw kept the UI thread; first the same figures with
nothing training (what the machine alone gives; other processes on it show up there). Then how
long Cancel takes to stop the run (from the click to the runner's idle state), in a training
batch and in the test pass after an epoch.
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


def timed(slot, seconds: list[float]):
    """``slot``, recording how long each call keeps the UI thread."""
    def call(*args):
        start = time.perf_counter()
        try:
            return slot(*args)
        finally:
            seconds.append(time.perf_counter() - start)
    return call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("CAPSVIEWER_DATA"))
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--models", nargs="+", default=["cnn", "capsnet"])
    parser.add_argument("--no-drawing", action="store_true",
                        help="the Training tab ignores progress (what training alone costs)")
    args = parser.parse_args()

    import numpy as np
    import torch
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    from capsviewer.app.headless import wait_until
    from capsviewer.app.main_window import MainWindow, default_models
    from capsviewer.app.views.training_view import TrainingView

    handled: list[float] = []  # seconds each progress event and each redraw took
    for name in ("on_progress", "on_testing", "_redraw"):  # before the view is connected
        slot = (lambda *_: None) if args.no_drawing else getattr(TrainingView, name)
        setattr(TrainingView, name, timed(slot, handled))
    from capsviewer.data import load_dataset
    from capsviewer.training import TrainConfig

    folder = Path(tempfile.mkdtemp())
    settings = QSettings(str(folder / "s.ini"), QSettings.Format.IniFormat)
    window = MainWindow(default_models(), data_root=args.data_root, settings=settings,
                        download=False, show_errors=False, predict_test_set=False)
    window.resize(1360, 860)
    window.show()
    window.tabs.setCurrentWidget(window.training_view)
    train = load_dataset("mnist", True, args.data_root, download=False)
    test = load_dataset("mnist", False, args.data_root, download=False)

    def wait(condition):
        wait_until(app, condition, timeout=600.0, poll=0.001)

    wait(window.is_idle)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    runner, view = window.runner, window.training_view

    def measure() -> np.ndarray:
        ticks.clear()
        timer.start()
        loop = QEventLoop()  # the event loop as app.exec() runs it
        QTimer.singleShot(int(args.seconds * 1000), loop.quit)
        loop.exec()
        timer.stop()
        return np.diff(ticks) * 1000

    def cancel_seconds() -> float:
        start = time.perf_counter()
        runner.cancel()
        wait(lambda: not runner.is_running())
        return time.perf_counter() - start

    def line(name: str, gaps: np.ndarray, extra: str = "") -> str:
        return (f"  {name:8s} p99 {np.percentile(gaps, 99):6.1f}  worst {gaps.max():6.1f}  "
                f"median {np.median(gaps):5.1f}  ({len(gaps)} gaps{extra})")

    print(f"UI-thread gaps in ms (10 ms timer, {args.seconds:.0f} s each; {os.cpu_count()} "
          f"CPUs, torch {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f})")
    print(line("idle", measure()))
    for model in args.models:
        events = []
        runner.progress.connect(events.append)
        runner.start(TrainConfig(model=model, epochs=1, batch_size=128, test_subset=1000,
                                 device="cpu", output=str(folder / f"{model}.safetensors")),
                     train, test)
        wait(lambda: bool(events))
        first, redraws = len(events), view.redraws
        handled.clear()
        gaps = measure()
        received, drawn = len(events) - first, view.redraws - redraws
        longest = 1000 * max(handled, default=0.0)
        in_batch = cancel_seconds()
        runner.progress.disconnect(events.append)
        print(line(model, gaps, f"; {received} progress events, {drawn} redraws, the longest "
                                f"{longest:.1f} ms"))
        testing = []
        runner.testing.connect(testing.append)
        runner.start(TrainConfig(model=model, epochs=1, batch_size=128, subset=256,
                                 device="cpu", output=str(folder / f"{model}-2.safetensors")),
                     train, test)
        wait(lambda: bool(testing))  # the test pass (10,000 images) has begun
        in_test = cancel_seconds()
        runner.testing.disconnect(testing.append)
        print(f"           cancel took {1000 * in_batch:.0f} ms in a training batch, "
              f"{1000 * in_test:.0f} ms in the test pass")
    window.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

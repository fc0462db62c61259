"""How long the UI thread goes without serving its event loop while a model trains in the
window (the Training tab on screen, its curves and progress bar drawn as events arrive).

    python benchmarks/ui_training_gaps.py [--data-root PATH] [--seconds 60] [--models cnn capsnet]

Runs offscreen with the window the app opens. For each model, a training run starts from the
Training tab's runner (batch 128, all of MNIST's training images, on the CPU); once its first
progress event has arrived, a 10 ms QTimer ticks on the UI thread for ``--seconds``; a gap is
the time between two ticks (10 ms when nothing else runs). Prints the 99th percentile, the
worst gap and the median, with the progress events received and the redraws of the curves.
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
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--models", nargs="+", default=["cnn", "capsnet"])
    args = parser.parse_args()

    import numpy as np
    import torch
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    from capsviewer.app.headless import wait_until
    from capsviewer.app.main_window import MainWindow, default_models
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
    print(f"UI-thread gaps in ms while training (10 ms timer, {args.seconds:.0f} s each; "
          f"{os.cpu_count()} CPUs, torch {torch.get_num_threads()} threads)")
    for model in args.models:
        events = []
        runner.progress.connect(events.append)
        runner.start(TrainConfig(model=model, epochs=1, batch_size=128, test_subset=1000,
                                 device="cpu", output=str(folder / f"{model}.safetensors")),
                     train, test)
        wait(lambda: bool(events))
        first, redraws = len(events), view.redraws
        ticks.clear()
        timer.start()
        loop = QEventLoop()  # the event loop as app.exec() runs it
        QTimer.singleShot(int(args.seconds * 1000), loop.quit)
        loop.exec()
        timer.stop()
        received, drawn = len(events) - first, view.redraws - redraws
        runner.cancel()
        wait(lambda: not runner.is_running())
        runner.progress.disconnect(events.append)
        gaps = np.diff(ticks) * 1000
        print(f"  {model:8s} p99 {np.percentile(gaps, 99):6.1f}  worst {gaps.max():6.1f}  "
              f"median {np.median(gaps):5.1f}  ({len(gaps)} gaps; {received} progress events, "
              f"{drawn} redraws)")
    window.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""App latency on this machine: cold start, one-image analysis, pose slider, rotation sweep.

    python benchmarks/app_latency.py [--model PATH ...] [--data-root PATH] [--repeats 20]

Runs offscreen. Without --model it uses the models the app would open (shipped, else the
user's), and untrained ones of the same architectures when there are none (timings do not
depend on the weights). Prints medians (and the spread) in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")


def model_paths(explicit: list[Path]) -> dict[str, Path]:
    from capsviewer.training import read_metadata, save_checkpoint
    from capsviewer.training.model_files import find_models

    paths = {read_metadata(p)["architecture"]: p for p in explicit} if explicit else find_models()
    if len(paths) < 2:
        import torch

        from capsviewer.models import build_model

        folder = Path(tempfile.mkdtemp(prefix="capsviewer-bench-"))
        for name in {"capsnet", "cnn"} - set(paths):
            torch.manual_seed(0)
            paths[name] = save_checkpoint(folder / f"{name}.safetensors", build_model(name))
    return paths


def child_cold_start(paths: list[str], data_root: str | None) -> None:
    """Process body for the cold-start figure: import, open the window, wait for a prediction."""
    from PySide6.QtWidgets import QApplication

    from capsviewer.app.main_window import MainWindow
    from capsviewer.training import read_metadata

    app = QApplication([])
    models = {read_metadata(p)["architecture"]: Path(p) for p in paths}
    window = MainWindow(models, data_root=data_root, show_errors=False, download=False,
                        settings=_scratch_settings())
    window.show()
    window.analysis_shown.connect(lambda _: (print("READY", flush=True), app.quit()))
    app.exec()
    window.shutdown()


def _scratch_settings():
    from PySide6.QtCore import QSettings

    return QSettings(str(Path(tempfile.mkdtemp()) / "settings.ini"), QSettings.Format.IniFormat)


def cold_start(paths: dict[str, Path], data_root: str | None, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, "--child", *map(str, paths.values()),
             *(["--data-root", data_root] if data_root else [])],
            capture_output=True, text=True, timeout=300,
        )
        if "READY" not in out.stdout:
            raise RuntimeError(f"cold start failed:\n{out.stderr[-2000:]}")
        times.append(time.perf_counter() - start)
    return times


def in_process(paths: dict[str, Path], data_root: str | None, repeats: int) -> dict[str, list[float]]:
    from PySide6.QtWidgets import QApplication

    from capsviewer.analysis.inspection import inspect_capsnet, inspect_cnn
    from capsviewer.app.headless import wait_until
    from capsviewer.app.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    window = MainWindow(paths, data_root=data_root, show_errors=False, download=False,
                        settings=_scratch_settings(), predict_test_set=False)
    window.show()
    wait_until(app, lambda: window.inspection is not None and len(window.session.models) == len(paths)
          and window.is_idle(), 120)
    capsnet, cnn = window.session.capsnet, window.session.cnn
    pixels = window.image.pixels
    figures: dict[str, list[float]] = {"analysis": [], "slider": [], "sweep": []}
    for _ in range(repeats):
        start = time.perf_counter()
        inspect_capsnet(capsnet, pixels)
        inspect_cnn(cnn, pixels)
        figures["analysis"].append(time.perf_counter() - start)

    window.tabs.setCurrentWidget(window.pose_view)
    shown: list[float] = []
    window.state.events.reconstruction.connect(
        lambda result: result.ready and shown.append(time.perf_counter()))
    for k in range(repeats):
        before = len(shown)
        start = time.perf_counter()
        window.pose_view.set_offset(k % 16, 0.2 if (k + k // 16) % 2 else -0.2)
        # 0.2 ms polls: 5 ms naps would be most of this figure. (Not for the sweep below: such
        # polling takes the GIL from the worker.)
        wait_until(app, lambda: len(shown) > before, 30, poll=0.0002)
        window.pose_view.repaint()  # the repaint is part of the figure
        figures["slider"].append(time.perf_counter() - start)

    # Through the window: the button's click, the worker's sweep (as the app runs it: bf16
    # convolutions where native, near-ties in fp32), the curves drawn and repainted.
    window.tabs.setCurrentWidget(window.rotation_view)
    for _ in range(max(3, repeats // 4)):
        window.state.sweep_step = None  # clears the sweep: the click asks for a new one
        start = time.perf_counter()
        window.rotation_view.sweep_button.click()
        wait_until(app, lambda: window.rotation_view._sweep is not None and window.is_idle(), 60)
        window.rotation_view.repaint()
        figures["sweep"].append(time.perf_counter() - start)
    window.shutdown()
    return figures



def row(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (f"| {name} | {statistics.median(ms):.1f} | {min(ms):.1f}–{max(ms):.1f} | {len(ms)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", default=[])
    parser.add_argument("--data-root", default=os.environ.get("CAPSVIEWER_DATA"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cold-starts", type=int, default=3)
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child_cold_start(args.child, args.data_root)
        return
    import torch

    paths = model_paths(args.model)
    print(f"models: {', '.join(f'{k}={v}' for k, v in sorted(paths.items()))}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"{os.cpu_count()} cores, CPU only\n")
    figures = in_process(paths, args.data_root, args.repeats)
    starts = cold_start(paths, args.data_root, args.cold_starts)
    print("| figure | median ms | range ms | runs |\n| --- | --- | --- | --- |")
    print(row("cold start → first prediction (new process, test image 0)", starts))
    print(row("one-image analysis: CapsNet with full routing trace + CNN", figures["analysis"]))
    print(row("pose slider move → decoded image repainted", figures["slider"]))
    print(row("rotation sweep, 72 angles, both models: click → curves drawn", figures["sweep"]))


if __name__ == "__main__":
    main()

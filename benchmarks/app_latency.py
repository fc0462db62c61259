"""App latency on this machine, each figure beside its target (issue 28): start-up, one-image
analysis, the pose slider, the rotation sweep.

    python benchmarks/app_latency.py --data-root ../shared/data [--runs 3] [--baseline PATH]

Each run starts fresh processes. Start-up: the app as a user starts it, ``capsviewer
--data-root …`` (the real entry point, offscreen), with new settings and an empty cache (a
first launch: no test-set predictions cached), after one untimed launch that compiles the
bytecode (an installed package has it; this checkout keeps it under a temporary prefix).
Interactive figures: a window as ``capsviewer`` runs it, on the models it opens (shipped, else
the user's; untrained ones of the same architectures when there are none: timings do not
depend on the weights), 20 repeats each (5 sweeps), from a quiet window (every job done)
each time; the analysis figure is the app's job function alone, in that window's process.

With ``--baseline PATH`` (a checkout of an earlier commit, e.g. ``git worktree add`` or
``git archive | tar -x``), every run is made for that tree too, alternating with this one,
so both see the same load; the table then shows both. Prints medians in milliseconds, the
range over the runs, and the target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

HERE = Path(__file__).resolve()
TREE = HERE.parents[1]
FILTER_WAIT_S = 60  # a start-up run stops waiting for "Misclassified only" after this

# figure key: (what is measured, target in ms or None)
FIGURES = {
    "help": ("`capsviewer --help`, new process", None),
    "help_torch": ("`capsviewer --help` imports torch", None),
    "painted": ("launch → window painted, test-set browser showing an image", 1000),
    "prediction": ("launch → first prediction drawn (Prediction tab, test image 0)", 3000),
    "filter": ("launch → “Misclassified only” available (shipped models)", 3000),
    "analysis": ("one-image analysis: CapsNet full routing trace + CNN (the app's job)", 10),
    "next_image": ("next test image → its prediction drawn (through the window)", 10),
    "slider": ("pose slider move → decoded image repainted", 16),
    "sweep": ("rotation sweep, 72 angles, both models: click → curves drawn", 150),
}


# -- children -----------------------------------------------------------------------------------

# The start-up's steps, in the order they happen (--timeline): (key, what)
TIMELINE = (
    ("python", "interpreter up, benchmark hook installed"),
    ("built", "window constructed (show() called)"),
    ("first_paint", "window's first paint"),
    ("painted", "test-set browser painted with an image"),
    ("torch", "torch import begins"),
    ("started", "state, controller, session in place"),
    ("models", "both models loaded"),
    ("prediction", "first prediction drawn"),
    ("views", "every tab's view built"),
    ("filter", "“Misclassified only” available"),
)


def _stamp(name: str) -> None:
    print(json.dumps({"figure": name, "t": time.time(), "cpu": time.process_time()}), flush=True)


def child_start(data_root: str | None, filter_wait: float) -> None:
    """The app through its entry point; prints when each step of TIMELINE happens (wall
    clock and this process's CPU time), then closes once the misclassified filter is
    available and every view built (or ``filter_wait`` seconds after the first prediction)."""
    seen: set[str] = set()

    def once(name: str) -> None:
        if name not in seen:
            seen.add(name)
            _stamp(name)

    once("python")
    import capsviewer.app.main_window as main_window
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication, QWidget

    show = main_window.MainWindow.show

    def watch(window) -> None:
        app = QApplication.instance()
        browser = window.input_view

        class Painted(QObject):
            def eventFilter(self, obj, event):
                if event.type() == QEvent.Type.Paint and isinstance(obj, QWidget):
                    QTimer.singleShot(0, lambda: once("first_paint"))  # once it is drawn
                    if browser.isAncestorOf(obj) and len(browser._images):
                        QTimer.singleShot(0, lambda: once("painted"))
                return False

        window._bench_filter = Painted(window)
        app.installEventFilter(window._bench_filter)

        def drawn(_):
            window.prediction_view.repaint()
            once("prediction")
            window._bench_drawn = time.monotonic()

        window.analysis_shown.connect(lambda result: QTimer.singleShot(0, lambda: drawn(result)))

        if "torch" in sys.modules:
            seen.add("torch")  # imported before the window: no step of its own

        def poll():
            state = window.state
            if "torch" in sys.modules:
                once("torch")  # the module appears when its import begins
            if state is not None:
                once("started")
                if len(state.models) == 2:
                    once("models")
            built = getattr(window, "views_built", None)
            if built is None or len(built()) == 6:
                once("views")
            if browser._misclassified.isEnabled():
                once("filter")
            drawn_at = getattr(window, "_bench_drawn", None)
            if drawn_at is not None and ({"filter", "views"} <= seen
                                         or time.monotonic() - drawn_at > filter_wait):
                window.close()  # shuts the lanes down; the last window closed quits
            else:
                QTimer.singleShot(2, poll)

        QTimer.singleShot(0, poll)

    def show_and_watch(window):
        once("built")
        show(window)
        watch(window)

    main_window.MainWindow.show = show_and_watch
    from capsviewer.cli import main

    main(["--data-root", data_root] if data_root else [])


def child_help() -> None:
    from capsviewer.cli import main

    try:
        main(["--help"])
    except SystemExit:
        pass
    print(json.dumps({"torch": "torch" in sys.modules}), file=sys.stderr)


def child_window(data_root: str | None, repeats: int) -> None:
    """The interactive figures, in seconds, printed as JSON."""
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    import capsviewer.app.controller as controller
    from capsviewer.app.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "settings.ini"), QSettings.Format.IniFormat)
    models = _models()
    if hasattr(MainWindow, "start_in_background"):  # as `capsviewer` runs it (issue 28 on)
        window = MainWindow(data_root=data_root, show_errors=False, settings=settings,
                            start=False)
        window.show()
        window.start(models, download=False, predict_test_set=False, on_demand=True)
    else:  # an earlier tree (--baseline): every view built and drawing from the start
        window = MainWindow(models, data_root=data_root, show_errors=False, download=False,
                            settings=settings, predict_test_set=False)
        window.show()
    waker = QTimer()  # wakes the waits below: they sleep in the event loop, never spin
    waker.start(20)

    def wait(condition, timeout=120.0):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the window did not answer in time")
            app.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents)

    state = window.state
    wait(lambda: window.inspection is not None and len(state.models) == len(models)
         and window.is_idle())
    figures: dict[str, list[float]] = {"analysis": [], "next_image": [], "slider": [],
                                       "sweep": []}
    capsnet, cnn, pixels = state.capsnet, state.cnn, state.image.pixels
    for _ in range(repeats):
        start = time.perf_counter()
        controller._analyse(capsnet, cnn, pixels, None, state.class_names)
        figures["analysis"].append(time.perf_counter() - start)

    window.tabs.setCurrentWidget(window.prediction_view)
    for k in range(1, repeats + 1):
        wait(window.is_idle)
        start = time.perf_counter()
        window.input_view.show_index(k)
        wait(lambda: state.analysis.ready and state.image.index == k)
        window.prediction_view.repaint()
        figures["next_image"].append(time.perf_counter() - start)

    window.input_view.show_index(0)
    window.tabs.setCurrentWidget(window.pose_view)
    shown: list[float] = []
    state.events.reconstruction.connect(lambda result: result.ready and shown.append(1))
    wait(window.is_idle)
    for k in range(repeats):
        wait(window.is_idle)
        before = len(shown)
        start = time.perf_counter()
        window.pose_view.set_offset(k % 16, 0.2 if (k + k // 16) % 2 else -0.2)
        wait(lambda: len(shown) > before)
        window.pose_view.repaint()
        figures["slider"].append(time.perf_counter() - start)

    # The button's click, the worker's sweep (as the app runs it: bf16 convolutions where
    # native, near-ties in fp32), the curves drawn and repainted.
    window.tabs.setCurrentWidget(window.rotation_view)
    for _ in range(max(3, repeats // 4)):
        state.sweep_step = None  # clears the sweep: the click asks for a new one
        wait(window.is_idle)
        start = time.perf_counter()
        window.rotation_view.sweep_button.click()
        wait(lambda: state.sweep.ready)
        window.rotation_view.repaint()
        figures["sweep"].append(time.perf_counter() - start)
    window.shutdown()
    print(json.dumps(figures), flush=True)
    window.deleteLater()  # as the app does: Qt objects go before the interpreter tears down
    app.processEvents()


def _models() -> dict[str, Path]:
    from capsviewer.training.model_files import find_models

    paths = find_models("mnist")
    if len(paths) < 2:
        import torch

        from capsviewer.models import build_model
        from capsviewer.training import save_checkpoint

        folder = Path(tempfile.mkdtemp(prefix="capsviewer-bench-"))
        for name in {"capsnet", "cnn"} - set(paths):
            torch.manual_seed(0)
            paths[name] = save_checkpoint(folder / f"{name}.safetensors", build_model(name))
    return paths


# -- the parent: runs, trees, table -------------------------------------------------------------

def _environment(tree: Path, scratch: Path) -> dict[str, str]:
    """A first launch: new settings and cache; bytecode kept under ``scratch`` (per tree)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(tree), PYTHONPYCACHEPREFIX=str(scratch / "pycache"),
               XDG_CONFIG_HOME=tempfile.mkdtemp(dir=scratch),
               XDG_CACHE_HOME=tempfile.mkdtemp(dir=scratch))
    return env


def _child(tree: Path, scratch: Path, *args: str, timeout: float = 600) -> tuple[float, str, str]:
    start = time.time()
    out = subprocess.run([sys.executable, str(HERE), *args], capture_output=True, text=True,
                         timeout=timeout, env=_environment(tree, scratch), cwd=scratch)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed in {tree}:\n{out.stderr[-3000:]}")
    return start, out.stdout, out.stderr


def one_run(tree: Path, scratch: Path, data_root: str | None, repeats: int) -> dict:
    """One run's figures for ``tree``: medians in ms (torch import as a flag)."""
    figures = {}
    start, _, err = _child(tree, scratch, "--child-help")
    figures["help"] = (time.time() - start) * 1000
    figures["help_torch"] = json.loads(err.strip().splitlines()[-1])["torch"]
    args = ["--child-start"] + (["--data-root", data_root] if data_root else [])
    start, out, _ = _child(tree, scratch, *args, timeout=FILTER_WAIT_S + 300)
    for line in out.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            figures[event["figure"]] = (event["t"] - start) * 1000
            figures[f"cpu:{event['figure']}"] = event["cpu"] * 1000
    args = ["--child-window", "--repeats", str(repeats)] + (
        ["--data-root", data_root] if data_root else [])
    _, out, _ = _child(tree, scratch, *args)
    for name, seconds in json.loads(out.strip().splitlines()[-1]).items():
        figures[name] = statistics.median(seconds) * 1000
    figures.setdefault("filter", None)  # not within FILTER_WAIT_S
    return figures


def _cell(values: list) -> str:
    if any(isinstance(v, bool) for v in values):
        return ", ".join("yes" if v else "no" for v in values)
    if any(v is None for v in values):
        shown = [f"{v:.0f}" if v is not None else f"> {FILTER_WAIT_S * 1000:,}" for v in values]
        return " / ".join(shown)
    median = statistics.median(values)
    digits = 0 if median >= 100 else 1
    return f"{median:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def _met(values: list, target: float | None) -> str:
    if any(isinstance(v, bool) for v in values):
        return "yes" if not any(values) else "no"
    if target is None:
        return ""
    if any(v is None for v in values):
        return "no"
    return "yes" if statistics.median(values) <= target else "no"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("CAPSVIEWER_DATA"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--baseline", type=Path, help="a checkout of an earlier commit: "
                        "measured too, run by run in turn with this one")
    parser.add_argument("--child-start", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--filter-wait", type=float, default=FILTER_WAIT_S, help=argparse.SUPPRESS)
    parser.add_argument("--child-help", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-window", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_start:
        return child_start(args.data_root, args.filter_wait)
    if args.child_help:
        return child_help()
    if args.child_window:
        return child_window(args.data_root, args.repeats)

    trees = {"this": TREE} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    scratch = {name: Path(tempfile.mkdtemp(prefix=f"capsviewer-latency-{name}-"))
               for name in trees}
    for name, tree in trees.items():  # compile the bytecode once, untimed
        _child(tree, scratch[name], "--child-help")
        _child(tree, scratch[name], "--child-start", "--filter-wait", "0",
               *(["--data-root", args.data_root] if args.data_root else []))
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start; "
          f"trees: " + ", ".join(f"{k} = {v}" for k, v in trees.items()), flush=True)
    results: dict[str, list[dict]] = {name: [] for name in trees}
    for run in range(args.runs):
        for name, tree in trees.items():
            results[name].append(one_run(tree, scratch[name], args.data_root, args.repeats))
            print(f"run {run + 1} ({name}) done, load average {os.getloadavg()[0]:.1f}",
                  file=sys.stderr, flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end\n")
    names = list(trees)
    header = ["figure", *[f"{n}: median ms (range over {args.runs} runs)" for n in names],
              "target ms", "met"]
    print("| " + " | ".join(header) + " |\n|" + " --- |" * len(header))
    for key, (title, target) in FIGURES.items():
        cells = [_cell([r.get(key) for r in results[n]]) for n in names]
        target_text = "" if target is None else f"≤ {target:,}"
        if key == "help_torch":
            target_text = "no"
        print(f"| {title} | " + " | ".join(cells) + f" | {target_text} | "
              f"{_met([r.get(key) for r in results['this']], target)} |")
    print("\nStart-up step by step (medians over the runs): ms since launch, and the CPU ms the "
          "app's process had used by then")
    print("| step | " + " | ".join(f"{n}: wall | {n}: CPU" for n in names) + " |\n|"
          + " --- |" * (1 + 2 * len(names)))
    for key, title in TIMELINE:
        cells = []
        for n in names:
            for prefix in ("", "cpu:"):
                values = [r.get(prefix + key) for r in results[n]]
                cells.append("before the window" if None in values and key == "torch"
                             else "" if None in values else f"{statistics.median(values):.0f}")
        print(f"| {title} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

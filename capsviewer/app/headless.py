"""``capsviewer export``: every view of the app for one input, written to a folder without a
window on screen (Qt's offscreen platform): PNG, SVG and CSV, as File ▸ Export writes them."""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from pathlib import Path


def export_views(args) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from capsviewer.app import theme
    from capsviewer.app.main_window import MainWindow, default_models
    from capsviewer.app.overlap_export import export_pair, pair_model
    from capsviewer.data import DATASET_TITLES, load_test_set
    from capsviewer.training import read_metadata
    from capsviewer.training.checkpoints import output_problem
    from capsviewer.training.model_files import dataset_of, skipped_note

    from pyqtgraph.util.garbage_collector import GarbageCollector

    pairs = pair_model(args)
    if pairs is not None or args.pair:
        return export_pair(args, pairs)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    collector = GarbageCollector(interval=1.0)  # noqa: F841  GUI-thread-only collection
    theme.apply_theme(app, "light")  # figures for papers and slides: light, whatever the system
    problem = output_problem(Path(args.out) / "capsviewer-export.png")
    if problem:
        print(f"capsviewer export: error: cannot export to {args.out}: {problem}",
              file=sys.stderr)
        return 2
    models = default_models()
    if skipped_note(models):
        print(f"note: {skipped_note(models)}", file=sys.stderr)
    for path in args.model or []:
        models[read_metadata(path)["architecture"]] = Path(path)
    if not models:
        print("capsviewer: error: no model found; pass --model PATH", file=sys.stderr)
        return 2
    if args.image is None:
        if args.index < 0:
            print(f"capsviewer: error: --index {args.index}: test images count from 0",
                  file=sys.stderr)
            return 2
        dataset = dataset_of(models)
        # The sample that ships holds the first test images; beyond it the test set is needed.
        test = load_test_set(dataset, args.data_root, download=True, images_needed=args.index + 1)
        if args.index >= len(test):
            print(f"capsviewer: error: --index {args.index}: the {DATASET_TITLES[dataset]} test "
                  f"set has {len(test):,} images (0 to {len(test) - 1})", file=sys.stderr)
            return 2
        if test.is_sample:
            print(f"note: the full {DATASET_TITLES[dataset]} test set is not in the data folder; "
                  f"test image {args.index} comes from the {len(test):,}-image sample that ships "
                  "with capsviewer (the same image)", file=sys.stderr)
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(models, data_root=args.data_root, device=args.device, settings=settings,
                        download=False, show_errors=False, predict_test_set=False)
    window.resize(1360, 860)
    window.show()
    try:
        wait_until(app, lambda: set(window.session.models) == set(models) and window.is_idle()
              and (window.image is not None or bool(window.errors)))
        if args.image:
            if not window.input_view.open_file(args.image):
                print(f"capsviewer: error: {window.errors[-1][1]}", file=sys.stderr)
                return 2
        elif args.index:
            window.input_view.show_index(args.index)
        if window.image is None:
            print(f"capsviewer: error: no input: {window.errors[-1][1] if window.errors else ''}",
                  file=sys.stderr)
            return 2
        wait_until(app, window.is_idle)  # the input analysed first, then any other R: one order
        if args.iterations:
            window.routing_view.iterations_spin.setValue(args.iterations)
        wait_until(app, window.is_idle)
        window.routing_view.last_button.click()  # a recomputed R keeps the step it was on
        window.rotation_view.sweep_button.click()
        window.pose_view.grid_button.click()
        wait_until(app, window.is_idle)
        views = [window.input_view] + [window.tabs.widget(i) for i in range(window.tabs.count())]
        written = []
        for view in views:
            window.tabs.setCurrentWidget(view) if view is not window.input_view else None
            app.processEvents()
            written += window.export_views([view], args.out)
        for path in written:
            print(path)
        if window.errors:
            for title, message in window.errors:
                print(f"capsviewer export: error: {title}: {message}", file=sys.stderr)
            return 2
        print(f"{len(written)} files for {window.image.source} in {args.out}")
        return 0
    finally:
        collector.timer.stop()
        gc.enable()  # as it was: this may run inside a longer-lived process
        window.shutdown()
        window.deleteLater()
        app.processEvents()


def wait_until(app, condition, timeout: float = 300.0, poll: float = 0.005) -> None:
    """Process events until ``condition()``, napping ``poll`` seconds between checks."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the views did not finish in time")
        app.processEvents()
        time.sleep(poll)

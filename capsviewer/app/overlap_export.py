"""``capsviewer export`` for a MultiMNIST CapsNet: the Overlap view of one pair (test pair N, or
test digits I and J overlaid), rendered offscreen: the view as PNG, its panels as SVG (the
overlay, both reconstructions, the capsule lengths, the routing colouring) and its numbers as
CSV (every primary capsule's couplings to the two winners at every iteration, the images)."""

from __future__ import annotations

import sys
from pathlib import Path


def pair_model(args) -> Path | None:
    """The MultiMNIST CapsNet among ``--model``; with ``--pair`` and none given, the one the app
    would find (shipped, else trained); None when neither."""
    from capsviewer.data.tasks import MULTIMNIST
    from capsviewer.training import read_metadata
    from capsviewer.training.model_files import find_models

    for path in args.model or []:
        if read_metadata(path).get("dataset", {}).get("name") == MULTIMNIST:
            return Path(path)
    return find_models(MULTIMNIST).get("capsnet") if args.pair else None


def export_pair(args, model: Path | None) -> int:
    from PySide6.QtWidgets import QApplication

    from capsviewer.analysis.overlap import PairChoice
    from capsviewer.app import theme
    from capsviewer.app.overlap_session import NO_PAIR_MODEL
    from capsviewer.app.controller import Controller
    from capsviewer.app.export import export_views
    from capsviewer.app.headless import wait_until
    from capsviewer.app.session import load_model_entry
    from capsviewer.app.state import AppState
    from capsviewer.app.views.overlap_view import OverlapView
    from capsviewer.data import load_test_set
    from capsviewer.data.tasks import MULTIMNIST
    from capsviewer.training import select_device

    def fail(message: str) -> int:
        print(f"capsviewer export: error: {message}", file=sys.stderr)
        return 2

    if model is None:
        return fail(NO_PAIR_MODEL)
    if args.image is not None:
        return fail(f"{model} is a MultiMNIST model: it takes pairs of test digits, not an image "
                    "file; choose them with --pair I J or --index N (test pair N)")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    theme.apply_theme(app, "light")
    device = select_device(args.device)
    entry = load_model_entry(Path(model), device)
    if entry.architecture != "capsnet" or entry.dataset != MULTIMNIST:
        return fail(f"{model} is a {entry.architecture} trained on {entry.dataset}; pairs are "
                    "shown by a CapsNet trained on MultiMNIST")
    needed = max(args.pair) + 1 if args.pair else 1
    test = load_test_set("mnist", args.data_root, download=True, images_needed=needed)
    try:
        if args.pair:
            first, second = args.pair
            pair = PairChoice(first, second)  # centred: no shifts
            pair.compose(test)  # an index out of range is said here, in one sentence
        else:
            pair = PairChoice.from_test_set(test, args.index)
    except (IndexError, ValueError) as error:
        return fail(str(error))
    if test.is_sample:
        print(f"note: the full MNIST test set is not in the data folder; the pair comes from the "
              f"{len(test):,}-image sample that ships with capsviewer"
              + (" (so test pair N differs from the full test set's)" if not args.pair else ""),
              file=sys.stderr)
    state = AppState()
    controller = Controller(state, predict_test_set=False)
    view = OverlapView()
    try:
        view.bind(state)
        with state.events.paused():
            state.device = device
            state.pair_model = entry
            state.pair_digits = test
            state.iterations = args.iterations
            state.choose_pair(pair)
        view.resize(1360, 860)
        view.show()
        wait_until(app, lambda: controller.is_idle() and not state.overlap.pending)
        if state.overlap.error:
            return fail(state.overlap.error)
        view.set_iteration(len(state.overlap.value.capsules.iterations))
        app.processEvents()
        written = export_views([view], args.out)
        for path in written:
            print(path)
        print(f"{len(written)} files for {pair.describe()} in {args.out}")
        return 0
    finally:
        controller.shutdown()
        view.deleteLater()
        app.processEvents()

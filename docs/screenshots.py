"""Screenshots of every view for the README, taken from the real window.

    xvfb-run -a -s "-screen 0 1400x900x24" python docs/screenshots.py --model A --model B

Opens the window on test image 0, visits each tab (running the rotation sweep and the Fig. 4
grid), and saves docs/screenshots/{tab}.png scaled to 1000 px wide; the routing tab's panels
(diagnostics, vote cloud, decoded vote, ablation with test accuracy on 2,000 images) are saved
at their own size as routing-{panel}.png. ``--only NAME …`` takes just those shots.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
HERE = Path(__file__).resolve().parent
SHOTS = ("prediction", "routing-iteration-1", "routing-last-iteration", "routing-diagnostics",
         "routing-vote-cloud", "routing-decode-vote", "routing-ablation", "pose", "rotation",
         "drawing", "training")


def settle(app, seconds=0.5) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def draw_four(canvas) -> None:
    """Two strokes with the mouse, as a user draws a 4."""
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest

    left, none = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    for stroke in ([(90, 40), (70, 110), (60, 160), (200, 160)], [(170, 60), (165, 150), (160, 250)]):
        points = [QPoint(*p) for p in stroke]
        QTest.mousePress(canvas, left, none, points[0])
        for a, b in zip(points, points[1:]):
            for t in range(1, 11):
                QTest.mouseMove(canvas, a + (b - a) * t / 10)
        QTest.mouseRelease(canvas, left, none, points[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, action="append", default=[])
    parser.add_argument("--data-root", default=os.environ.get("CAPSVIEWER_DATA"))
    parser.add_argument("--index", type=int, default=0, help="test image to show")
    parser.add_argument("--theme", default="light")
    parser.add_argument("--out", type=Path, default=HERE / "screenshots")
    parser.add_argument("--width", type=int, default=960, help="pixels; the window is 1360 wide")
    parser.add_argument("--only", nargs="+", choices=SHOTS, metavar="NAME",
                        help=f"take only these shots: {', '.join(SHOTS)}")
    parser.add_argument("--accuracy-images", type=int, default=2000,
                        help="test images for the ablation panel's accuracy against k")
    args = parser.parse_args()
    wanted = set(args.only or SHOTS)

    import tempfile

    from PIL import Image

    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtWidgets import QApplication

    from capsviewer.app import theme
    from capsviewer.app.headless import wait_until
    from capsviewer.app.main_window import MainWindow, default_models
    from capsviewer.training import read_metadata

    app = QApplication(sys.argv[:1])
    theme.apply_theme(app, args.theme)
    models = {read_metadata(p)["architecture"]: p for p in args.model} or default_models()
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "s.ini"), QSettings.Format.IniFormat)
    window = MainWindow(models, data_root=args.data_root, settings=settings, download=False,
                        predict_test_set=False)
    window.resize(1360, 860)
    window.move(0, 0)
    window.show()
    wait_until(app, lambda: set(window.session.models) == set(models) and window.inspection is not None
         and window.is_idle())
    if args.index:
        window.input_view.show_index(args.index)
        wait_until(app, lambda: window.image.index == args.index and window.is_idle())
    args.out.mkdir(parents=True, exist_ok=True)

    def shot(name: str, widget=None) -> None:
        """The whole window scaled to --width, or ``widget`` at its own size."""
        if name not in wanted:
            return
        settle(app, 0.6)
        if widget is None:
            image = app.primaryScreen().grabWindow(0).copy(window.frameGeometry())
            image = image.scaledToWidth(args.width, Qt.TransformationMode.SmoothTransformation)
        else:
            image = widget.grab()
        path = args.out / f"{name}.png"
        image.save(str(path))
        small = Image.open(path).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        small.save(path, optimize=True)  # a palette PNG: a fraction of the size, same look
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")

    tabs = window.tabs
    tabs.setCurrentWidget(window.prediction_view)
    shot("prediction")
    routing = window.routing_view
    tabs.setCurrentWidget(routing)
    routing.set_iteration(1)
    shot("routing-iteration-1")
    routing.set_iteration(routing.iteration_count)
    shot("routing-last-iteration")
    if wanted & {"routing-diagnostics", "routing-vote-cloud", "routing-decode-vote", "routing-ablation"}:
        routing_panels(app, window, shot, args.accuracy_images)
    tabs.setCurrentWidget(window.pose_view)
    window.pose_view.set_offset(3, 0.2)
    wait_until(app, window.is_idle)
    window.pose_view.grid_button.click()
    wait_until(app, lambda: window.is_idle() and window.pose_view._grid_offsets is not None)
    shot("pose")
    tabs.setCurrentWidget(window.rotation_view)
    window.rotation_view.set_angle(45)
    window.rotation_view.sweep_button.click()
    wait_until(app, lambda: window.is_idle() and window.rotation_view._sweep is not None)
    shot("rotation")
    window.input_view._tabs.setCurrentWidget(window.input_view._drawing)
    tabs.setCurrentWidget(window.prediction_view)
    draw_four(window.input_view._canvas)
    wait_until(app, lambda: window.image.source == "drawing" and window.is_idle())
    shot("drawing")
    if "training" not in wanted:
        window.shutdown()
        window.deleteLater()
        return
    tabs.setCurrentWidget(window.training_view)
    from capsviewer.training import TrainConfig

    view = window.training_view
    config = view.config()
    view.set_config(TrainConfig(model="cnn", dataset="mnist", data_root=args.data_root,
                                epochs=3, batch_size=64, subset=6000, test_subset=2000,
                                device="cpu", output=str(Path(tempfile.mkdtemp()) / "cnn.safetensors"),
                                download=False))
    view.start_button.click()
    wait_until(app, lambda: not window.runner.is_running() and window.is_idle(), 600)
    shot("training")
    view.set_config(config)
    window.shutdown()
    window.deleteLater()


def routing_panels(app, window, shot, accuracy_images: int) -> None:
    """The routing tab's panels, with more room than the window's default split."""
    from capsviewer.app.headless import wait_until

    routing = window.routing_view
    sizes = routing.panel_splitter.sizes()
    routing.panel_splitter.setSizes([sum(sizes) - 430, 430])
    panels = routing.panels
    panels.setCurrentWidget(routing.diagnostics_view)
    shot("routing-diagnostics", panels)
    panels.setCurrentWidget(routing.cloud_view)
    shot("routing-vote-cloud", panels)
    panels.setCurrentWidget(routing.decoder_view)
    routing.decoder_view.select_strongest(1)
    wait_until(app, window.is_idle)
    shot("routing-decode-vote", panels)
    panels.setCurrentWidget(routing.ablation_view)
    routing.ablation_view.count.setValue(accuracy_images)
    routing.ablation_view.measure_button.click()
    wait_until(app, lambda: window.is_idle() and routing.ablation_view.accuracy is not None, 600)
    shot("routing-ablation", panels)
    routing.panel_splitter.setSizes(sizes)
    panels.setCurrentWidget(routing.diagnostics_view)


if __name__ == "__main__":
    main()

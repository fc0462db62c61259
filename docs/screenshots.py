"""Screenshots of every tab for the docs, taken from the real window, and the routing GIF.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/screenshots.py

For each theme (light, dark) and window size (1280×800, 1600×1000) the window opens on test
image 0 and visits each tab (the Routing tab twice: the CapsNet's routing and the shipped
matrix-capsule model's EM routing, routing-em; the rotation sweep and the Fig. 4 grid run, the lab shows its
clusters preset): docs/screenshots/{tab}-{theme}-{width}.png, the light 1280 ones at full
size, the others scaled to --width, all as palette PNGs. In light at 1280×800 it also saves
the routing tab's panels at their own size (routing-{panel}.png, the ablation with test
accuracy on --accuracy-images), a drawn 4 (drawing.png) and docs/routing.gif: every routing
iteration of test image 0 at R = 5. ``--only NAME …`` takes just those.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
HERE = Path(__file__).resolve().parent
TABS = ("prediction", "routing", "routing-em", "pose", "rotation", "overlap", "routing-lab",
        "training")
PANELS = ("routing-diagnostics", "routing-vote-cloud", "routing-decode-vote", "routing-ablation")
SIZES = ((1280, 800), (1600, 1000))
THEMES = ("light", "dark")


def settle(app, seconds=0.5) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def save_png(image, path: Path, width: int | None = None, colours: int = 96) -> None:
    """A palette PNG (a fraction of the size, the same look), scaled down to ``width``."""
    from PIL import Image
    from PySide6.QtCore import Qt

    if width is not None and image.width() > width:
        image = image.scaledToWidth(width, Qt.TransformationMode.SmoothTransformation)
    image.save(str(path))
    small = Image.open(path).convert("RGB").quantize(colors=colours,
                                                     method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


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


def open_window(app, models, data_root, size):
    from PySide6.QtCore import QSettings

    from capsviewer.app.headless import wait_until
    from capsviewer.app.main_window import MainWindow

    settings = QSettings(str(Path(tempfile.mkdtemp()) / "s.ini"), QSettings.Format.IniFormat)
    window = MainWindow(models, data_root=data_root, settings=settings, download=False,
                        predict_test_set=False)
    window.resize(*size)
    window.move(0, 0)
    window.show()
    wait_until(app, lambda: set(window.session.models) == set(models)
               and window.inspection is not None and window.is_idle())
    return window


def visit(app, window, tab: str) -> None:
    """Show ``tab`` as a user would leave it: the rotation swept, the grid drawn."""
    from capsviewer.app.headless import wait_until
    from capsviewer.app.state import LabScene

    view = {"prediction": window.prediction_view, "routing": window.routing_view,
            "routing-em": window.routing_view, "pose": window.pose_view, "rotation": window.rotation_view,
            "overlap": window.overlap_view, "routing-lab": window.lab_view,
            "training": window.training_view}[tab]
    window.tabs.setCurrentWidget(view)
    if tab.startswith("routing") and tab != "routing-lab":  # the CapsNet's or the EM model's
        wanted = "em" if tab == "routing-em" else "capsnet"
        if window.state.routing_model != wanted:
            window.state.routing_model = wanted
            wait_until(app, lambda: window.is_idle() and (
                wanted == "capsnet" or window.routing_view.em is not None))
    if tab == "pose" and window.pose_view._grid_offsets is None:
        window.pose_view.set_offset(3, 0.2)
        wait_until(app, window.is_idle)
        window.pose_view.grid_button.click()
        wait_until(app, lambda: window.is_idle() and window.pose_view._grid_offsets is not None)
    if tab == "rotation" and window.rotation_view._sweep is None:
        window.rotation_view.set_angle(45)
        window.rotation_view.sweep_button.click()
        wait_until(app, lambda: window.is_idle() and window.rotation_view._sweep is not None)
    if tab == "overlap":  # its MultiMNIST CapsNet and digits load when the tab is built
        wait_until(app, lambda: window.is_idle() and window.state.overlap.ready, 300)
    if tab == "routing-lab" and window.state.lab.preset != "clusters":
        window.state.lab = LabScene.from_preset("clusters")
        wait_until(app, window.is_idle)
    settle(app, 0.6)


def routing_panels(app, window, shot, accuracy_images: int) -> None:
    """The routing tab's panels, with more room than the window's default split."""
    from capsviewer.app.headless import wait_until

    routing = window.routing_view
    window.tabs.setCurrentWidget(routing)
    window.state.routing_model = "capsnet"  # the panels are the CapsNet's
    wait_until(app, lambda: window.is_idle() and routing.capsules is not None)
    sizes = routing.panel_splitter.sizes()
    routing.panel_splitter.setSizes([sum(sizes) - 360, 360])
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
    wait_until(app, lambda: window.is_idle() and routing.ablation_view.accuracy is not None, 900)
    shot("routing-ablation", panels)
    routing.panel_splitter.setSizes(sizes)
    panels.setCurrentWidget(routing.diagnostics_view)


def routing_gif(app, window, path: Path, iterations: int, width: int) -> None:
    """Every routing iteration of the current input, as File ▸ Export routing animation
    writes it, scaled to ``width``."""
    from capsviewer.app.headless import wait_until

    window.on_routing_tab()
    window.state.routing_model = "capsnet"
    window.routing_view.iterations_spin.setValue(iterations)
    wait_until(app, lambda: window.is_idle()
               and len(window.inspection.iterations) == iterations)
    settle(app, 0.5)
    window.controller.export_animation(window.routing_view, path, width=width)
    wait_until(app, lambda: not window.state.export.pending)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, action="append", default=[])
    parser.add_argument("--data-root", default=os.environ.get("CAPSVIEWER_DATA"))
    parser.add_argument("--out", type=Path, default=HERE / "screenshots")
    parser.add_argument("--width", type=int, default=960,
                        help="pixels: the dark and 1600-wide shots are scaled to this")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="take only these: tab names, panel names, drawing, gif")
    parser.add_argument("--accuracy-images", type=int, default=2000,
                        help="test images for the ablation panel's accuracy against k")
    args = parser.parse_args()
    wanted = set(args.only or (*TABS, *PANELS, "drawing", "gif"))

    from PySide6.QtWidgets import QApplication

    from capsviewer.app import theme
    from capsviewer.app.headless import wait_until
    from capsviewer.app.main_window import default_models
    from capsviewer.training import read_metadata

    app = QApplication(sys.argv[:1])
    models = {read_metadata(p)["architecture"]: p for p in args.model} or default_models()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in THEMES:
        theme.apply_theme(app, name)
        for size in SIZES:
            window = open_window(app, models, args.data_root, size)
            full = name == "light" and size == SIZES[0]
            for tab in TABS:
                if tab in wanted:
                    visit(app, window, tab)
                    save_png(window.grab().toImage(), args.out / f"{tab}-{name}-{size[0]}.png",
                             None if full else args.width)
            if full:
                def shot(panel, widget):
                    if panel in wanted:
                        settle(app, 0.6)
                        save_png(widget.grab().toImage(), args.out / f"{panel}.png")
                if wanted & set(PANELS):
                    routing_panels(app, window, shot, args.accuracy_images)
                if "drawing" in wanted:
                    window.input_view._tabs.setCurrentWidget(window.input_view._drawing)
                    window.tabs.setCurrentWidget(window.prediction_view)
                    draw_four(window.input_view._canvas)
                    wait_until(app, lambda: window.image.source == "drawing" and window.is_idle())
                    settle(app, 0.6)
                    save_png(window.grab().toImage(), args.out / "drawing.png", args.width)
                    window.input_view.show_index(0)
                    wait_until(app, window.is_idle)
                if "gif" in wanted:
                    routing_gif(app, window, HERE / "routing.gif", 5, 760)
            window.shutdown()
            window.deleteLater()
            settle(app, 0.2)


if __name__ == "__main__":
    main()

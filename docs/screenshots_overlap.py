"""Screenshots of the Overlap tab for docs/screenshots (light theme, palette PNGs), taken from
the real window with the models it finds (the shipped MNIST pair and MultiMNIST CapsNet):

    xvfb-run -a -s "-screen 0 1400x900x24" python docs/screenshots_overlap.py --pair 11

Test pair ``--pair`` at the last routing iteration (overlap.png) and at the first, where the
couplings are still uniform (overlap-iteration-1.png); then with one pose slider of the second
winner moved (overlap-pose.png).
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pair", type=int, default=0, help="MultiMNIST test pair to show")
    parser.add_argument("--data-root", default=os.environ.get("CAPSVIEWER_DATA"))
    parser.add_argument("--out", type=Path, default=HERE / "screenshots")
    parser.add_argument("--width", type=int, default=1000)
    args = parser.parse_args()

    from PIL import Image
    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtWidgets import QApplication

    from capsviewer.analysis.overlap import PairChoice
    from capsviewer.app import theme
    from capsviewer.app.headless import wait_until
    from capsviewer.app.main_window import MainWindow, default_models

    app = QApplication(sys.argv[:1])
    theme.apply_theme(app, "light")
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "s.ini"), QSettings.Format.IniFormat)
    window = MainWindow(default_models(), data_root=args.data_root, settings=settings,
                        download=False, predict_test_set=False)
    window.resize(1360, 900)
    window.move(0, 0)
    window.show()
    state, view = window.state, window.overlap_view
    window.tabs.setCurrentWidget(view)
    wait_until(app, lambda: window.is_idle() and state.overlap.ready)
    state.choose_pair(PairChoice.from_test_set(state.pair_digits, args.pair))
    wait_until(app, lambda: window.is_idle() and state.overlap.ready)
    args.out.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> None:
        end = time.monotonic() + 0.6
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)
        image = app.primaryScreen().grabWindow(0).copy(window.frameGeometry())
        image = image.scaledToWidth(args.width, Qt.TransformationMode.SmoothTransformation)
        path = args.out / f"{name}.png"
        image.save(str(path))
        small = Image.open(path).convert("RGB").quantize(colors=160, method=Image.Quantize.MEDIANCUT)
        small.save(path, optimize=True)  # a palette PNG: a fraction of the size, same look
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")

    iterations = len(state.overlap.value.capsules.iterations)
    view.set_iteration(iterations)
    shot("overlap")
    view.set_iteration(1)
    shot("overlap-iteration-1")
    view.set_iteration(iterations)
    view.capsule_combo.setCurrentIndex(1)
    view.sliders[0].setValue(0.2)
    wait_until(app, lambda: window.is_idle() and state.overlap_reconstruction.ready)
    shot("overlap-pose")
    window.shutdown()
    window.deleteLater()


if __name__ == "__main__":
    main()

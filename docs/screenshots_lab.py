"""Screenshots of the routing lab for docs/screenshots (light theme, palette PNGs).

xvfb-run -a -s "-screen 0 1400x900x24" python docs/screenshots_lab.py docs/screenshots
"""
import os, sys, time
from pathlib import Path
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
app = QApplication(sys.argv[:1])
from capsviewer.app import theme
theme.apply_theme(app, "light")
from capsviewer.app.views.routing_lab_view import RoutingLabView
OUT = Path(sys.argv[1]); OUT.mkdir(parents=True, exist_ok=True)
view = RoutingLabView(); view.resize(1360, 860); view.move(0, 0); view.show()
def settle(t=0.5):
    end = time.monotonic() + t
    while time.monotonic() < end: app.processEvents(); time.sleep(0.01)
def shot(name, width=960, colours=96):
    settle()
    image = view.grab().toImage().scaledToWidth(width, Qt.TransformationMode.SmoothTransformation)
    path = OUT / f"{name}.png"; image.save(str(path))
    small = Image.open(path).convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    print(f"{path} {path.stat().st_size // 1024} KB")
settle()
view.load_preset("clusters"); shot("routing-lab")
view.load_preset("symmetric"); view.set_perturbation(True, 0.05); shot("routing-lab-symmetric")
view.load_preset("fixed_point"); view.set_logit_bias(True, 0.01); shot("routing-lab-fixed-point")
view.load_preset("objective"); view.set_iteration(6); shot("routing-lab-objective")
view.load_preset("lp"); shot("routing-lab-lp")
view.load_preset("attention"); view.set_temperature(0.5); shot("routing-lab-attention")
view.load_preset("jacobians"); shot("routing-lab-jacobians")
view.load_preset("equivariance"); view.set_theta(45); shot("routing-lab-equivariance")

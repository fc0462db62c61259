"""The Routing tab's body for a matrix-capsule network: its class layer's EM routing (Hinton,
Sabour & Frosst 2018, Procedure 1) on the current input, at the iteration t of the tab's
scrubber and for the chosen class capsule j.

Left, on the grid of the class layer's children (types, rows, cols): how much of each child's
activation the M-step of t gave j (R_ij a_i), or R_ij itself, or how far R_ij is from uniform.
Right: where on the input j's mass comes from, the numbers of t (λ_t, Σ_i R_ij a_i, cost, σ_j),
every class's a_j at t, and σ_j (the spread of the votes j fitted) for every class.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import (
    QGraphicsRectItem, QGridLayout, QLabel, QSizePolicy, QSplitter, QWidget,
)

import pyqtgraph as pg  # after PySide6

from capsviewer.analysis.em_inspection import EMInspection
from capsviewer.app.views.common import (
    FORMULAS, Table, dark_background, frame_field, heat_lut, rich, set_image,
)
from capsviewer.app.views.grid_mosaic import MosaicPanel
from capsviewer.app.views.prediction_view import ClassBars, ImagePanel


class EMMap:
    """What the grid can show: a label, the colour-bar symbol, how to read it."""

    def __init__(self, label: str, symbol: str, hint: str, colormap: str = "viridis"):
        self.label, self.symbol, self.hint, self.colormap = label, symbol, hint, colormap


EM_MAPS = {
    "support": EMMap("mass R_ij a_i", "R_ij a_i", "bright: children whose activation goes to "
                     "class j in this M-step"),
    "responsibilities": EMMap("responsibilities R_ij", "R_ij", "the share of child i that class "
                              "j's Gaussian explains (Σ_j R_ij = 1)"),
    "deviation": EMMap("R_ij − 1/J", "R_ij − 1/J", "red: j explains child i more than a uniform "
                       "share, blue: less", colormap="diverging"),
}
DEFAULT_EM_MAP = "support"
HOVER_COLOUR = "#3ec1d3"  # as on the CapsNet's grid


def em_values(em: EMInspection, key: str, j: int, t: int) -> np.ndarray:
    """The grid (types, rows, cols) of map ``key`` for class j at iteration t (0-based)."""
    r = em.steps[t].responsibilities[..., j]
    if key == "support":
        return r * em.child_activations
    if key == "responsibilities":
        return r
    return r - 1.0 / em.steps[t].responsibilities.shape[-1]


def em_levels(em: EMInspection, key: str, j: int) -> tuple[float, float]:
    """One colour scale for every iteration of (key, j): stepping compares like with like."""
    every = np.stack([em_values(em, key, j, t) for t in range(len(em.steps))])
    if key == "deviation":
        bound = max(float(np.abs(every).max()), 1e-6)
        return -bound, bound
    return 0.0, max(float(every.max()), 1e-6)


class EMRoutingPanel(QWidget):
    """Passive: :meth:`draw` shows an EMInspection at (t, j, map); :meth:`show_message` says why
    there is none."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.em: EMInspection | None = None
        self.shown: np.ndarray | None = None  # the grid drawn now
        self.mosaic = MosaicPanel("R_ij a_i", "R_ij a_i", grid=(16, 5, 5), columns=4)
        self.mosaic.setToolTip(FORMULAS["em_routing"])
        self.overlay = ImagePanel("Where class j's mass comes from")
        self.overlay.setMinimumSize(150, 150)
        self.overlay.setToolTip("Heat: Σ_types R_ij a_i spread over each grid cell's receptive "
                                "field, scaled to its maximum")
        self.heat = pg.ImageItem(axisOrder="row-major")
        self.heat.setLookupTable(heat_lut())
        self.heat.setZValue(1)
        self.overlay.view.addItem(self.heat)
        self.hover_box = QGraphicsRectItem()  # the receptive field of the cell under the mouse
        pen = QPen(QColor(HOVER_COLOUR), 2)
        pen.setCosmetic(True)
        pen.setStyle(Qt.PenStyle.DashLine)
        self.hover_box.setPen(pen)
        self.hover_box.setZValue(2)
        self.hover_box.setVisible(False)
        self.overlay.view.addItem(self.hover_box)
        self.mosaic.cell_hovered.connect(self._hover_cell)
        self.numbers = QLabel()
        self.numbers.setWordWrap(True)
        self.numbers.setTextFormat(Qt.TextFormat.RichText)
        self.numbers.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.numbers.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.numbers.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.numbers.setMinimumWidth(150)
        self.numbers.setToolTip(FORMULAS["em_routing"])
        self.activation_bars = ClassBars("a_j at iteration t", "a_j")
        self.activation_bars.setToolTip("The class capsules' activations after this M-step; "
                                        "click a bar to select class j\n" + FORMULAS["em_routing"])
        self.sigma_bars = ClassBars("σ_j at iteration t", "σ_j")
        self.sigma_bars.setToolTip("σ_j: the spread of the votes each class's Gaussian fitted "
                                   "(geometric mean over the 16 pose entries); small σ_j means "
                                   "its votes agree, which lowers its cost")
        for plot in (self.activation_bars, self.sigma_bars):
            plot.setMinimumSize(200, 110)

        right = QWidget()
        grid = QGridLayout(right)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.overlay, 0, 0)
        grid.addWidget(self.numbers, 0, 1)
        grid.addWidget(self.activation_bars, 1, 0, 1, 2)
        grid.addWidget(self.sigma_bars, 2, 0, 1, 2)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 2)
        grid.setRowStretch(2, 2)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(self.mosaic)
        splitter.addWidget(right)
        splitter.setSizes([520, 420])
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter, 0, 0)

    def draw(self, em: EMInspection, t: int, j: int, key: str = DEFAULT_EM_MAP) -> None:
        """Iteration t (1-based) and class capsule j of ``em``, the grid showing map ``key``."""
        self.em = em
        step, count, name = em.steps[t - 1], len(em.steps), em.class_names[j]
        mode = EM_MAPS[key]
        self.shown = em_values(em, key, j, t - 1)
        colormap = mode.colormap
        if colormap == "diverging":  # a middle that reads on the plot's background
            colormap = "CET-D4" if dark_background() else "CET-D1"
        self.mosaic.set_values(
            self.shown, em_levels(em, key, j), colormap, symbol=mode.symbol,
            title=f"{rich(mode.label[0].upper() + mode.label[1:])}<br>"
                  f"class capsule {name} · iteration {t} of {count}")
        hint = mode.hint
        if t == 1 and key != "support":
            hint = "iteration 1: EM starts from uniform responsibilities, every R_ij = 1/J"
        self.mosaic.set_hint(rich(hint))
        self.overlay.set_image(em.image)
        set_image(self.heat, em.part_map(j, t - 1), (0.0, 1.0))
        self.heat.setVisible(True)
        self.overlay.title.setText(f"Mass of {name} · t = {t}")
        self.activation_bars.set_values(step.activations, highlight=j)
        self.activation_bars.getPlotItem().setTitle(rich(f"a_j after the M-step of iteration {t}"))
        sigma = np.exp(np.log(step.sigma).mean(axis=1))  # geometric mean over the 16 entries
        self.sigma_bars.set_values(sigma, highlight=j)
        self.sigma_bars.getPlotItem().setYRange(0, max(1e-6, 1.1 * float(sigma.max())), padding=0)
        self.sigma_bars.getPlotItem().setTitle(rich(f"σ_j at iteration {t} (geometric mean)"))
        self.numbers.setText(self._numbers(em, t, j))

    def _numbers(self, em: EMInspection, t: int, j: int) -> str:
        step, name = em.steps[t - 1], em.class_names[j]
        lambdas = " · ".join(
            (f"<b>λ<sub>{k + 1}</sub> = {s.inverse_temperature:.3g}</b>" if k == t - 1
             else f"λ<sub>{k + 1}</sub> = {s.inverse_temperature:.3g}")
            for k, s in enumerate(em.steps))
        mass, total = em.mass(t - 1), float(em.child_activations.sum())
        winner = int(np.argmax(step.activations))
        share = mass[j] / total if total > 0 else 0.0
        lines = [
            f"<b>Iteration {t}</b>: inverse temperature {lambdas}",
            f"class {name}: a<sub>j</sub> = {step.activations[j]:.3f}, cost {step.cost[j]:.3g}, "
            f"mass Σ<sub>i</sub> R<sub>ij</sub> a<sub>i</sub> = {mass[j]:.1f}: {share:.0%} of "
            f"all the capsules' activation, {em.blank_share(j, t - 1):.0%} of it from "
            "capsules that see no ink",
            f"R<sub>ij</sub> entropy {em.entropy(t - 1):.2f} log J (1: uniform) · largest "
            f"a<sub>j</sub>: class {em.class_names[winner]}",
        ]
        if t == 1:
            lines.append("R starts uniform: every class fits a Gaussian to all the votes.")
        else:
            lines.append(f"R<sub>ij</sub> here come from the E-step of iteration {t - 1}.")
        return "<br>".join(lines)

    @Slot(object)
    def _hover_cell(self, cell) -> None:
        """Frame the receptive field of the grid cell under the mouse on the input."""
        frame_field(self.hover_box, cell, self.em.receptive_fields if self.em is not None else None)

    def show_message(self, message: str) -> None:
        self.em = None
        self.shown = None
        self.mosaic.show_message(message)
        self.overlay.show_message(message)
        self.heat.clear()
        self.hover_box.setVisible(False)
        self.activation_bars.show_message(message)
        self.sigma_bars.show_message(message)
        self.numbers.setText("")

    def set_class_names(self, names: tuple[str, ...]) -> None:
        for bars in (self.activation_bars, self.sigma_bars):
            bars.set_class_names(names)

    # -- export ---------------------------------------------------------------------------
    def tables(self, t: int) -> dict[str, Table]:
        em = self.em
        if em is None:
            return {}
        step = em.steps[t - 1]
        classes = range(step.activations.shape[0])
        header = (["type", "row", "col", "a_i"] + [f"R_{j}" for j in classes])
        rows = [[*index, float(em.child_activations[index]),
                 *map(float, step.responsibilities[index])]
                for index in np.ndindex(em.child_activations.shape)]
        per_iteration = [[k + 1, s.inverse_temperature, *map(float, s.activations),
                          *map(float, np.exp(np.log(s.sigma).mean(axis=1)))]
                         for k, s in enumerate(em.steps)]
        names = em.class_names
        return {
            f"em-iteration-{t}": (header, rows),
            "em-parents": (["iteration", "lambda"] + [f"a_{names[j]}" for j in classes]
                           + [f"sigma_{names[j]}" for j in classes], per_iteration),
        }

    def scenes(self) -> dict[str, pg.GraphicsItem]:
        return {"em-mosaic": self.mosaic.plot,
                "em-activations": self.activation_bars.getPlotItem(),
                "em-sigma": self.sigma_bars.getPlotItem()}


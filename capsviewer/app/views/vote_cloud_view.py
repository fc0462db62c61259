"""The 1152 votes û_{j|i} for one digit capsule j, projected on their two principal components.

Dot diameter ∝ c_ij of the iteration on screen, so scrubbing shows routing re-weighting the
parts; the plane is fixed for the image and capsule. The zero vector, the coupling-weighted
mean vote s_j / Σ_i c_ij and the direction of s_j and v_j (one ray: v_j = squash(s_j)) are
marked. Clicking a dot selects that primary capsule (Ctrl: add or remove it)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

import pyqtgraph as pg  # after PySide6

from capsviewer.analysis.routing_diagnostics import VoteCloud
from capsviewer.app.views.common import FORMULAS, ExportableView, Table, rich

DOT_SCALE = 80.0  # pixels of diameter per unit coupling: c = 1/J = 0.1 → 8 px
DOT_RANGE = (1.5, 40.0)  # diameters are clipped to stay visible and not swamp the plot
DOT_BRUSH = pg.mkBrush(86, 140, 205, 120)
SELECTED_PEN = pg.mkPen(240, 140, 30, width=2.5)
CENTRE_BRUSH = pg.mkBrush(230, 70, 60)
RAY_PEN = pg.mkPen(230, 70, 60, width=1.5, style=Qt.PenStyle.DashLine)
GRID = (32, 6, 6)


def dot_sizes(couplings: np.ndarray) -> np.ndarray:
    """Dot diameters in pixels: DOT_SCALE · c_ij, clipped to DOT_RANGE."""
    return np.clip(DOT_SCALE * np.asarray(couplings, dtype=np.float64), *DOT_RANGE)


def grid_position(child: int, grid: tuple[int, int, int] = GRID) -> tuple[int, int, int]:
    """(map, row, col) of flat primary-capsule index i."""
    _, rows, cols = grid
    grid_map, rest = divmod(int(child), rows * cols)
    return grid_map, *divmod(rest, cols)


class VoteCloudView(QWidget, ExportableView):
    """Passive: ``show_cloud`` draws a projection, ``set_iteration`` and ``set_selection``
    restyle it; a click on a dot emits ``child_clicked(i, add)``."""

    export_name = "routing-vote-cloud"
    child_clicked = Signal(int, bool)  # primary capsule i; True: add to / remove from selection

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.cloud: VoteCloud | None = None
        self.names: tuple[str, ...] = tuple(map(str, range(10)))
        self._iteration = 1
        self._selection: tuple[int, ...] = ()
        self.plot_widget = pg.PlotWidget()
        plot = self.plot_widget.getPlotItem()
        plot.setMenuEnabled(False)
        plot.hideButtons()
        plot.showGrid(x=True, y=True, alpha=0.15)
        plot.setAspectLocked(True)
        for axis in ("left", "bottom"):
            plot.getAxis(axis).enableAutoSIPrefix(False)
        self.plot = plot
        self.dots = pg.ScatterPlotItem(pxMode=True, pen=None, brush=DOT_BRUSH, hoverable=True,
                                       tip=None)
        self.dots.sigClicked.connect(self._clicked)
        self.dots.sigHovered.connect(self._hovered)
        self.selected = pg.ScatterPlotItem(pxMode=True, brush=None, pen=SELECTED_PEN)
        self.ray = pg.PlotCurveItem(pen=RAY_PEN)
        foreground = pg.getConfigOption("foreground")
        self.origin = pg.ScatterPlotItem(symbol="x", size=12, pen=pg.mkPen(foreground, width=2),
                                         brush=pg.mkBrush(foreground))
        self.centre = pg.ScatterPlotItem(symbol="star", size=16, pen=pg.mkPen(foreground, width=1),
                                         brush=CENTRE_BRUSH)
        for item in (self.ray, self.dots, self.selected, self.origin, self.centre):
            plot.addItem(item)
        self.selected.setZValue(2)
        self.centre.setZValue(3)
        # The key, off the dots: in the symbols' colours, above the plot.
        self.key = QLabel(" · ".join(
            f"<span style='color:{colour}'>{symbol}</span> {rich(text)}" for symbol, colour, text in (
                ("●", DOT_BRUSH.color().name(), "votes û_{j|i} (diameter ∝ c_ij)"),
                ("✕", pg.mkColor(foreground).name(), "zero vector"),
                ("★", CENTRE_BRUSH.color().name(), "s_j / Σ_i c_ij (coupling-weighted mean vote)"),
                ("- -", RAY_PEN.color().name(), "direction of s_j and v_j"),
                ("○", SELECTED_PEN.color().name(), "chosen to decode"))))
        self.key.setWordWrap(True)
        self.plot_widget.setToolTip(FORMULAS["vote_cloud"] + "\n" + FORMULAS["votes"])
        self.readout = QLabel(" ")
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.key)
        layout.addWidget(self.plot_widget, 1)
        layout.addWidget(self.readout)
        layout.addWidget(self.caption)
        self.show_cloud(None)

    # -- input ------------------------------------------------------------------------------
    @Slot(object)
    def show_cloud(self, cloud: VoteCloud | None, iteration: int | None = None,
                   names: tuple[str, ...] | None = None) -> None:
        """Draw ``cloud`` (None: clear) at ``iteration`` (1-based; default: the current one)."""
        self.cloud = cloud
        if names is not None:
            self.names = names
        if iteration is not None:
            self._iteration = int(iteration)
        if cloud is None:
            for item in (self.dots, self.selected, self.origin, self.centre):
                item.setData([], [])
            self.ray.setData([], [])
            self.plot.setTitle("Vote cloud: no CapsNet analysis yet")
            self.caption.setText("")
            return
        xy = cloud.coordinates
        self.dots.setData(x=xy[:, 0], y=xy[:, 1], data=np.arange(len(xy)))
        self.origin.setData([cloud.origin[0]], [cloud.origin[1]])
        self.plot.setLabel("bottom", f"PC 1 ({100 * cloud.explained[0]:.0f} % of the variance)")
        self.plot.setLabel("left", f"PC 2 ({100 * cloud.explained[1]:.0f} %)")
        self._iteration = min(max(self._iteration, 1), len(cloud.couplings))
        self._fit()
        self._restyle()

    @Slot(int)
    def set_iteration(self, r: int) -> None:
        self._iteration = int(r)
        if self.cloud is not None:
            self._iteration = min(max(self._iteration, 1), len(self.cloud.couplings))
            self._restyle()

    def set_selection(self, children) -> None:
        self._selection = tuple(int(i) for i in children)
        if self.cloud is not None:
            self._draw_selection()

    def sizes(self) -> np.ndarray:
        """The dot diameters drawn now (px), one per primary capsule."""
        return np.asarray(self.dots.data["size"], dtype=np.float64)

    # -- drawing --------------------------------------------------------------------------
    def _restyle(self) -> None:
        cloud, r = self.cloud, self._iteration
        couplings = cloud.couplings[r - 1]
        self.dots.setSize(dot_sizes(couplings))
        centre = cloud.centres[r - 1]
        self.centre.setData([centre[0]], [centre[1]])
        self._draw_ray(cloud.origin, cloud.outputs[r - 1])
        self._draw_selection()
        name = self.names[cloud.digit] if cloud.digit < len(self.names) else str(cloud.digit)
        count = len(cloud.couplings)
        self.plot.setTitle(rich(f"Votes û_{{j|i}} for digit capsule {name} · iteration {r} of "
                                f"{count}"))
        spread = couplings.max() - couplings.min()
        self.caption.setText(rich(
            f"Dot diameter ∝ c_ij (c = 1/J → {DOT_SCALE / 10:.0f} px): at iteration {r} the couplings "
            f"to {name} run from {couplings.min():.3f} to {couplings.max():.3f}"
            + (" (uniform)" if spread < 1e-6 else "")
            + f". s_j and v_j = squash(s_j) lie on the dashed ray, far beyond single votes "
            f"({100 * cloud.in_plane[r - 1]:.1f} % of v_j's length lies in this plane)."))

    def _draw_ray(self, origin: np.ndarray, target: np.ndarray) -> None:
        """From the zero vector towards v_j, long enough to cross the cloud."""
        direction = target - origin
        norm = float(np.linalg.norm(direction))
        if norm == 0:
            self.ray.setData([], [])
            return
        reach = 1.5 * float(np.abs(self.cloud.coordinates - origin).max())
        end = origin + direction / norm * min(norm, reach)
        self.ray.setData([origin[0], end[0]], [origin[1], end[1]])

    def _draw_selection(self) -> None:
        if not self._selection:
            self.selected.setData([], [])
            return
        chosen = np.asarray(self._selection)
        xy = self.cloud.coordinates[chosen]
        sizes = dot_sizes(self.cloud.couplings[self._iteration - 1][chosen]) + 4
        self.selected.setData(x=xy[:, 0], y=xy[:, 1], size=sizes)

    def _fit(self) -> None:
        points = np.vstack([self.cloud.coordinates, self.cloud.origin, self.cloud.centres])
        low, high = points.min(axis=0), points.max(axis=0)
        pad = 0.08 * (high - low).max()
        self.plot.setRange(xRange=(low[0] - pad, high[0] + pad), yRange=(low[1] - pad, high[1] + pad),
                           padding=0)

    # -- interaction ------------------------------------------------------------------------
    def readout_for(self, child: int) -> str:
        cloud, r = self.cloud, self._iteration
        grid_map, row, col = grid_position(child)
        return (f"map {grid_map} · row {row} · col {col} · c_ij = {cloud.couplings[r - 1][child]:.4g}"
                f" · û·v_j = {cloud.agreement[r - 1][child]:.4g}")

    def _clicked(self, _item, points, event) -> None:
        if self.cloud is None or len(points) == 0:
            return
        add = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)
        where = event.pos()  # dots overlap: take the one centred nearest the click
        nearest = min(points, key=lambda p: (p.pos().x() - where.x()) ** 2 + (p.pos().y() - where.y()) ** 2)
        self.child_clicked.emit(int(nearest.data()), add)

    def _hovered(self, _item, points, _event) -> None:
        if self.cloud is None or len(points) == 0:
            self.readout.setText(" ")
            return
        self.readout.setText(self.readout_for(int(points[0].data())))

    # -- export ---------------------------------------------------------------------------
    def export_tables(self) -> dict[str, Table]:
        cloud = self.cloud
        if cloud is None:
            return {}
        r = self._iteration
        header = ["i", "map", "row", "col", "pc1", "pc2", f"c_ij_iteration_{r}",
                  f"agreement_iteration_{r}"]
        rows = [[i, *grid_position(i), float(x), float(y), float(cloud.couplings[r - 1][i]),
                 float(cloud.agreement[r - 1][i])] for i, (x, y) in enumerate(cloud.coordinates)]
        markers = [["zero vector", "", *map(float, cloud.origin)]]
        for k in range(len(cloud.couplings)):
            markers += [["s_j / sum_i c_ij", k + 1, *map(float, cloud.centres[k])],
                        ["s_j", k + 1, *map(float, cloud.preactivations[k])],
                        ["v_j", k + 1, *map(float, cloud.outputs[k])]]
        return {"votes": (header, rows), "markers": (["marker", "iteration", "pc1", "pc2"], markers)}

    def export_scenes(self) -> dict[str, pg.GraphicsItem]:
        return {"plot": self.plot}

"""The routing lab's 2-D canvas: children's votes as draggable points coloured by parent, the
parents' outputs, and one line per vote whose width and opacity are its coupling."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal, Slot
from PySide6.QtGui import QAction, QCursor, QFont
from PySide6.QtWidgets import QMenu, QWidget

import pyqtgraph as pg  # after PySide6

from capsviewer.app.views.common import rich

# Parent j's colour: readable on the light and the dark plot background.
PARENT_COLOURS = ("#3b8ed0", "#e0533d", "#3aa55d", "#a070d0")
ACTIVATION_CHOICES = (1.0, 0.75, 0.5, 0.25, 0.1)
PICK_RADIUS_PX = 12
LABEL_POINT_SIZE = 8.5


def parent_colour(j: int, alpha: int = 255):
    colour = pg.mkColor(PARENT_COLOURS[j % len(PARENT_COLOURS)])
    colour.setAlpha(alpha)
    return colour


def weight_pen(j: int, weight: float) -> pg.QtGui.QPen:
    """A coupling (or responsibility) in [0, 1] as line width 0.5–6 px and opacity 15–100 %."""
    weight = float(np.clip(weight, 0.0, 1.0))
    pen = pg.mkPen(parent_colour(j, int(40 + 215 * weight)), width=0.5 + 5.5 * weight)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    return pen


class VoteCanvas(pg.PlotWidget):
    """Draws what it is given and reports edits: ``vote_moved(i, j, (x, y))`` while a vote is
    dragged, ``add_child_requested((x, y))``, ``remove_child_requested(i)`` and
    ``activation_requested(i, a)`` from the right-click menu."""

    vote_moved = Signal(int, int, object)
    add_child_requested = Signal(object)
    remove_child_requested = Signal(int)
    activation_requested = Signal(int, float)

    def __init__(self, title: str, unit_circle: bool, parent: QWidget | None = None):
        super().__init__(parent)
        plot = self.getPlotItem()
        plot.setTitle(rich(title))
        plot.setAspectLocked(True)
        plot.showGrid(x=True, y=True, alpha=0.15)
        plot.hideButtons()
        plot.setMenuEnabled(False)
        plot.getViewBox().setMenuEnabled(False)
        plot.addItem(pg.InfiniteLine(0, angle=0, pen=pg.mkPen(width=0.5)))
        plot.addItem(pg.InfiniteLine(0, angle=90, pen=pg.mkPen(width=0.5)))
        if unit_circle:  # ‖v‖ < 1 always
            t = np.linspace(0, 2 * np.pi, 181)
            plot.plot(np.cos(t), np.sin(t), pen=pg.mkPen(width=1, style=Qt.PenStyle.DotLine))
        self.plot_item = plot
        self.vote_items: list[list[pg.TargetItem]] = []
        self.vote_labels: list[list[pg.TextItem]] = []
        self.lines: list[list[pg.PlotCurveItem]] = []
        self.output_arrows: list[pg.PlotCurveItem] = []
        self.output_points = pg.ScatterPlotItem(size=16, symbol="star", pxMode=True)
        self.output_points.setZValue(5)
        plot.addItem(self.output_points)
        self.output_labels: list[pg.TextItem] = []
        self.spreads: list[pg.PlotCurveItem] = []  # EM: μ_j ± σ_j ellipses
        self._votes = np.zeros((0, 0, 2))
        self._weights = np.zeros((0, 0))
        self._outputs = np.zeros((0, 2))
        self._updating = False
        self.scene().sigMouseClicked.connect(self._on_click)

    # -- what the view calls ----------------------------------------------------------------
    def set_votes(self, votes: np.ndarray, labels: list[list[str]]) -> None:
        """Place the votes (I, J, 2); rebuilds the points when I or J changed."""
        votes = np.asarray(votes, dtype=np.float64)
        if votes.shape[:2] != self._votes.shape[:2]:
            self._rebuild(*votes.shape[:2])
        self._votes = votes.copy()
        self._updating = True
        try:
            for i, row in enumerate(self.vote_items):
                for j, item in enumerate(row):
                    if not item.moving:
                        item.setPos(*votes[i, j])
                    self.vote_labels[i][j].setPos(*votes[i, j])
                    self.vote_labels[i][j].setText(labels[i][j])
        finally:
            self._updating = False
        self._declutter()

    def _declutter(self) -> None:
        """Label only votes apart from those labelled before (by child, then parent): a
        cluster of votes gets one label, not a pile (every value is in the text below)."""
        (x0, x1), (y0, y1) = self.plot_item.viewRange()
        gap = np.array([0.09 * (x1 - x0), 0.06 * (y1 - y0)])
        shown: list[np.ndarray] = []
        for i, row in enumerate(self.vote_labels):
            for j, label in enumerate(row):
                position = self._votes[i, j]
                clear = all(np.any(np.abs(position - other) > gap) for other in shown)
                label.setVisible(clear)
                if clear:
                    shown.append(position)

    def set_routing(self, outputs: np.ndarray, weights: np.ndarray, output_labels: list[str],
                    spreads: np.ndarray | None = None) -> None:
        """Parents' outputs (J, 2) as stars with labels, one line from every vote to its parent's
        output drawn with the weight (I, J) in [0, 1]; ``spreads`` (J, 2): σ per axis (EM)."""
        self._outputs = np.asarray(outputs, dtype=np.float64)
        self._weights = np.asarray(weights, dtype=np.float64)
        parents = len(self._outputs)
        self.output_points.setData(
            pos=self._outputs, brush=[parent_colour(j) for j in range(parents)],
            pen=[pg.mkPen(pg.getConfigOption("foreground"), width=1)] * parents)
        for j, (arrow, label) in enumerate(zip(self.output_arrows, self.output_labels)):
            x, y = self._outputs[j]
            arrow.setData([0.0, x], [0.0, y])
            label.setText(output_labels[j])
            label.setPos(x, y)
        for i, row in enumerate(self.lines):
            for j, line in enumerate(row):
                line.setData([self._votes[i, j, 0], self._outputs[j, 0]],
                             [self._votes[i, j, 1], self._outputs[j, 1]])
                line.setPen(weight_pen(j, self._weights[i, j]))
        t = np.linspace(0, 2 * np.pi, 73)
        for j, spread in enumerate(self.spreads):
            if spreads is None:
                spread.setData([], [])
                continue
            sx, sy = spreads[j]
            x, y = self._outputs[j]
            spread.setData(x + sx * np.cos(t), y + sy * np.sin(t))

    def fit(self, points: np.ndarray) -> None:
        """Show every point with a margin (called on a new preset, not while dragging)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        points = np.concatenate([points, [[-1.0, -1.0], [1.0, 1.0]]])
        low, high = points.min(axis=0), points.max(axis=0)
        margin = 0.15 * (high - low).max() + 0.2
        self.plot_item.setRange(xRange=(low[0] - margin, high[0] + margin),
                                yRange=(low[1] - margin, high[1] + margin), padding=0)
        self._declutter()

    def drawn_weights(self) -> np.ndarray:
        """The weights the lines are drawn with (I, J): what tests compare with the core."""
        return self._weights.copy()

    def line_widths(self) -> np.ndarray:
        return np.array([[line.opts["pen"].widthF() for line in row] for row in self.lines])

    def drawn_outputs(self) -> np.ndarray:
        return self._outputs.copy()

    def vote_position(self, i: int, j: int) -> np.ndarray:
        pos = self.vote_items[i][j].pos()
        return np.array([pos.x(), pos.y()])

    def vote_at(self, scene_pos: QPointF) -> tuple[int, int] | None:
        """The vote within a few pixels of a scene position, if any."""
        best, best_distance = None, PICK_RADIUS_PX
        for i, row in enumerate(self.vote_items):
            for j, item in enumerate(row):
                centre = item.mapToScene(QPointF(0, 0))
                distance = np.hypot(centre.x() - scene_pos.x(), centre.y() - scene_pos.y())
                if distance < best_distance:
                    best, best_distance = (i, j), distance
        return best

    # -- internals --------------------------------------------------------------------------
    def _rebuild(self, children: int, parents: int) -> None:
        plot = self.plot_item
        for row in self.vote_items + self.vote_labels + self.lines:
            for item in row:
                plot.removeItem(item)
        for item in self.output_arrows + self.output_labels + self.spreads:
            plot.removeItem(item)
        self.lines = [[pg.PlotCurveItem() for _ in range(parents)] for _ in range(children)]
        self.vote_items, self.vote_labels = [], []
        font = QFont(self.font())
        font.setPointSizeF(LABEL_POINT_SIZE)
        for i in range(children):
            items, labels = [], []
            for j in range(parents):
                item = pg.TargetItem(size=13, symbol="o", pen=pg.mkPen(parent_colour(j), width=2),
                                     brush=parent_colour(j, 170),
                                     hoverPen=pg.mkPen(pg.getConfigOption("foreground"), width=2),
                                     hoverBrush=parent_colour(j))
                item.setZValue(10)
                item.setToolTip(f"û_{{{j}|{i}}}: child {i}'s vote for parent {j} (drag it; "
                                "right-click for more)")
                item.sigPositionChanged.connect(lambda it, i=i, j=j: self._on_drag(i, j, it))
                plot.addItem(item)
                label = pg.TextItem("", color=parent_colour(j), anchor=(-0.15, 1.1))
                label.setFont(font)
                label.setZValue(9)
                plot.addItem(label)
                items.append(item)
                labels.append(label)
            self.vote_items.append(items)
            self.vote_labels.append(labels)
            for line in self.lines[i]:
                line.setZValue(1)
                plot.addItem(line)
        self.output_arrows = [pg.PlotCurveItem(pen=pg.mkPen(parent_colour(j), width=2.5))
                              for j in range(parents)]
        self.output_labels = [pg.TextItem("", color=parent_colour(j), anchor=(-0.2, -0.1))
                              for j in range(parents)]
        self.spreads = [pg.PlotCurveItem(pen=pg.mkPen(parent_colour(j), width=1.2,
                                                      style=Qt.PenStyle.DashLine))
                        for j in range(parents)]
        for item in self.output_arrows + self.spreads + self.output_labels:
            item.setZValue(4)
            plot.addItem(item)

    def _on_drag(self, i: int, j: int, item: pg.TargetItem) -> None:
        if self._updating:
            return
        pos = item.pos()
        self.vote_labels[i][j].setPos(pos.x(), pos.y())
        self.vote_moved.emit(i, j, (float(pos.x()), float(pos.y())))

    @Slot(object)
    def _on_click(self, event) -> None:
        if event.button() != Qt.MouseButton.RightButton or event.isAccepted():
            return
        view_pos = self.plot_item.getViewBox().mapSceneToView(event.scenePos())
        event.accept()
        menu = self.context_menu(event.scenePos(), (view_pos.x(), view_pos.y()))
        menu.popup(QCursor.pos())

    def context_menu(self, scene_pos: QPointF, view_pos: tuple[float, float]) -> QMenu:
        """Add a child here; on a vote, remove its child or set its activation (EM)."""
        menu = QMenu(self)
        add = QAction("Add a child voting here", menu)
        add.triggered.connect(lambda: self.add_child_requested.emit(view_pos))
        menu.addAction(add)
        hit = self.vote_at(scene_pos)
        if hit is not None:
            child = hit[0]
            remove = QAction(f"Remove child {child}", menu)
            remove.triggered.connect(lambda: self.remove_child_requested.emit(child))
            menu.addAction(remove)
            activation = menu.addMenu(f"Activation a_{child} of child {child} (EM)")
            for value in ACTIVATION_CHOICES:
                action = QAction(f"{value:g}", activation)
                action.triggered.connect(
                    lambda _=False, v=value: self.activation_requested.emit(child, v))
                activation.addAction(action)
        return menu

"""How far routing moves the couplings from uniform, iteration by iteration, for one image:
the entropy of each part's couplings (baseline log J), its largest coupling (baseline 1/J) and
the agreement objective Σ c û·v. The axes start at 0 unless "zoom" is on, so a flat line means
routing changed little."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

import pyqtgraph as pg  # after PySide6

from capsviewer.analysis.routing_diagnostics import RoutingDiagnostics
from capsviewer.app.views.common import FORMULAS, ExportableView, Table, rich, static_plot

MEAN_PEN = pg.mkPen(86, 140, 205, width=2.5)  # reads on light and dark backgrounds
WEIGHTED_PEN = pg.mkPen(240, 140, 30, width=2, style=Qt.PenStyle.DashLine)
OBJECTIVE_PEN = pg.mkPen(60, 170, 90, width=2.5)

# plot name → (title, y label, formula)
PLOTS = {
    "entropy": ("Entropy of c_i·", "H (nats)", FORMULAS["coupling_entropy"]),
    "max_coupling": ("Largest coupling", "max_j c_ij", FORMULAS["max_coupling"]),
    "objective": ("Agreement objective", "Σ c û·v", FORMULAS["routing_objective"]),
}


class RoutingDiagnosticsView(QWidget, ExportableView):
    """Passive: ``show_diagnostics`` draws the numbers; ``set_iteration`` moves the marker."""

    export_name = "routing-diagnostics"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.diagnostics: RoutingDiagnostics | None = None
        self._iteration = 1
        self.graphics = pg.GraphicsLayoutWidget()
        self.plots: dict[str, pg.PlotItem] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.markers: list[pg.InfiniteLine] = []
        self.baselines: dict[str, pg.InfiniteLine] = {}
        foreground = pg.getConfigOption("foreground")
        for column, (name, (title, label, formula)) in enumerate(PLOTS.items()):
            plot = self.graphics.addPlot(row=0, col=column, title=rich(title))
            plot.setMinimumHeight(120)
            static_plot(plot, label, "iteration r")
            plot.setToolTip(formula)
            self.plots[name] = plot
            marker = pg.InfiniteLine(angle=90, movable=False,
                                     pen=pg.mkPen(foreground, width=1, style=Qt.PenStyle.DotLine))
            plot.addItem(marker)
            self.markers.append(marker)
            if name == "objective":
                self.curves[name] = plot.plot([], [], pen=OBJECTIVE_PEN, symbol="o", symbolSize=6,
                                              symbolBrush=OBJECTIVE_PEN.color(), symbolPen=None)
                continue
            baseline = pg.InfiniteLine(
                angle=0, movable=False,
                pen=pg.mkPen(foreground, width=1, style=Qt.PenStyle.DashLine),
                label="", labelOpts={"position": 0.2, "color": foreground,  # below / above
                                     "anchors": [(0, 0), (0, 0)] if name == "entropy" else [(0, 1), (0, 1)]})
            plot.addItem(baseline)
            self.baselines[name] = baseline
            self.curves[name] = plot.plot([], [], pen=MEAN_PEN, symbol="o", symbolSize=6,
                                          symbolBrush=MEAN_PEN.color(), symbolPen=None,
                                          name="mean over parts i")
            self.curves[f"weighted_{name}"] = plot.plot(
                [], [], pen=WEIGHTED_PEN, symbol="s", symbolSize=5,
                symbolBrush=WEIGHTED_PEN.color(), symbolPen=None, name="weighted by ‖u_i‖")

        self.zoom = QCheckBox("zoom to the data")
        self.zoom.setToolTip("Off: the entropy axis runs from 0 to log J and the coupling axis "
                             "from 0 to 1, so small changes look small. On: fit the axes to the "
                             "values (and the baselines)")
        self.zoom.toggled.connect(self._fit)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setToolTip(FORMULAS["coupling_entropy"] + "\n" + FORMULAS["routing_objective"])
        header = QHBoxLayout()
        intro = QLabel(rich(  # the curves' key, off the data
            "Per iteration r: how far the couplings are from uniform, and what routing "
            f"maximises. <span style='color:{MEAN_PEN.color().name()}'>● mean over "
            f"parts i</span> · <span style='color:{WEIGHTED_PEN.color().name()}'>■ weighted by "
            "‖u<sub>i</sub>‖</span>"))
        intro.setWordWrap(True)
        header.addWidget(intro, 1)
        header.addStretch(1)
        header.addWidget(self.zoom)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.summary)
        self.show_diagnostics(None)

    @Slot(object)
    def show_diagnostics(self, diagnostics: RoutingDiagnostics | None) -> None:
        self.diagnostics = diagnostics
        if diagnostics is None:
            for curve in self.curves.values():
                curve.setData([], [])
            for baseline in self.baselines.values():
                baseline.setVisible(False)
            self.summary.setText("No CapsNet analysis yet")
            for plot in self.plots.values():  # an empty frame of r = 1…3, not ticks about 0
                plot.setXRange(0.7, 3.3, padding=0)
                plot.setYRange(0, 1, padding=0)
                plot.getAxis("bottom").setTicks([[(r, str(r)) for r in (1, 2, 3)]])
            for marker in self.markers:
                marker.setPos(1)
            return
        steps = np.arange(1, diagnostics.iterations + 1)
        for name, curve in self.curves.items():
            curve.setData(steps, getattr(diagnostics, name))
        for baseline in self.baselines.values():
            baseline.setVisible(True)  # first: a hidden label does not update its text
        entropy, peak = self.baselines["entropy"], self.baselines["max_coupling"]
        entropy.setPos(diagnostics.uniform_entropy)
        entropy.label.setFormat(f"uniform: log {diagnostics.parents} = {diagnostics.uniform_entropy:.4f}")
        peak.setPos(diagnostics.uniform_max_coupling)
        peak.label.setFormat(f"uniform: 1/{diagnostics.parents} = {diagnostics.uniform_max_coupling:.3g}")
        ticks = [[(int(s), str(int(s))) for s in steps]]
        for plot in self.plots.values():
            plot.getAxis("bottom").setTicks(ticks)
        self.summary.setText(rich(diagnostics.summary()))
        self._fit()
        self.set_iteration(self._iteration)

    @Slot(int)
    def set_iteration(self, r: int) -> None:
        """Mark iteration r (1-based)."""
        self._iteration = int(r)
        for marker in self.markers:
            marker.setPos(self._iteration)

    def curve_data(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(iterations, values) drawn for ``name``: entropy, weighted_entropy, max_coupling,
        weighted_max_coupling or objective."""
        x, y = self.curves[name].getData()
        return (np.asarray([]), np.asarray([])) if x is None else (np.asarray(x), np.asarray(y))

    def _fit(self) -> None:
        d = self.diagnostics
        count = d.iterations if d is not None else 3
        for plot in self.plots.values():
            plot.setXRange(0.7, count + 0.3, padding=0)
        if d is None:
            return
        zoom = self.zoom.isChecked()
        for name, uniform, top in (("entropy", d.uniform_entropy, 1.08 * d.uniform_entropy),
                                   ("max_coupling", d.uniform_max_coupling, 1.0)):
            values = np.concatenate([getattr(d, name), getattr(d, f"weighted_{name}"), [uniform]])
            if zoom:
                low, high = float(values.min()), float(values.max())
                pad = max(high - low, 1e-6 * max(abs(high), 1.0)) * 0.15
                self.plots[name].setYRange(low - pad, high + pad, padding=0)
            else:
                self.plots[name].setYRange(0.0, max(top, float(values.max()) * 1.05), padding=0)
        objective = d.objective
        low = float(objective.min()) if zoom else min(0.0, float(objective.min()))
        high = float(objective.max())
        pad = max(high - low, 1e-9) * 0.1
        self.plots["objective"].setYRange(low - (pad if zoom else 0), high + pad, padding=0)

    # -- export ---------------------------------------------------------------------------
    def export_tables(self) -> dict[str, Table]:
        d = self.diagnostics
        if d is None:
            return {}
        header = ["iteration", "entropy_mean", "entropy_weighted", "max_coupling_mean",
                  "max_coupling_weighted", "objective", "uniform_entropy", "uniform_max_coupling"]
        rows = [[r + 1, float(d.entropy[r]), float(d.weighted_entropy[r]), float(d.max_coupling[r]),
                 float(d.weighted_max_coupling[r]), float(d.objective[r]), d.uniform_entropy,
                 d.uniform_max_coupling] for r in range(d.iterations)]
        return {"per-iteration": (header, rows)}

    def export_scenes(self) -> dict[str, pg.GraphicsItem]:
        return {name.replace("_", "-"): plot for name, plot in self.plots.items()}

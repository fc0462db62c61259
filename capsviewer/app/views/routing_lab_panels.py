"""The routing lab's theory plots, one panel each: a one-line explanation, the plots (formula in
the tooltip), and a line of the numbers they show. Panels draw arrays they are given."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

import pyqtgraph as pg  # after PySide6
from superqt import QLabeledDoubleSlider, QLabeledSlider

from capsviewer.analysis.routing_theory import (
    AssignmentGap,
    EquivarianceErrors,
    sigmoid_norm_unit_gain,
)
from capsviewer.app.views.common import FORMULAS, Table, lut, rich, set_image, static_plot
from capsviewer.app.views.routing_lab_canvas import parent_colour

CHILD_SYMBOLS = ("o", "s", "t", "d", "+", "x", "star", "h")
CURVE_COLOURS = {"squash": "#3b8ed0", "linear": "#e08a2c", "lp": "#7f7f7f", "em": "#3aa55d",
                 "invariant": "#e0533d", "potential": "#a070d0"}


def fmt(value: float, digits: int = 3) -> str:
    """A number as the lab prints it: fixed point, or scientific when tiny."""
    value = float(value)
    if value != 0 and abs(value) < 10 ** -digits:
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def _pen(colour, width: float = 2.0, dashed: bool = False):
    style = Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine
    return pg.mkPen(colour, width=width, style=style)


def _marker_line(plot: pg.PlotItem, angle: int = 90) -> pg.InfiniteLine:
    line = pg.InfiniteLine(angle=angle, pen=pg.mkPen(pg.getConfigOption("foreground"), width=1,
                                                     style=Qt.PenStyle.DotLine))
    plot.addItem(line)
    return line


def iteration_axis(plot: pg.PlotItem, iterations: int) -> None:
    """Integer ticks 1..R on the x axis (every other one beyond 10)."""
    step = 1 if iterations <= 10 else 2
    plot.getAxis("bottom").setTicks([[(r, str(r)) for r in range(1, iterations + 1, step)]])
    plot.setXRange(0.8, max(iterations, 2) + 0.2, padding=0)


def log_ticks(plot: pg.PlotItem, values) -> None:
    """Readable ticks on a log-mode x axis (pyqtgraph labels every minor decade otherwise)."""
    plot.getAxis("bottom").setTicks([[(np.log10(v), f"{v:g}") for v in values]])


def iteration_curves(plot: pg.PlotItem, curves: list, values: np.ndarray) -> None:
    """values (R, I, J) against the iteration: one curve per child and parent (colour: parent,
    symbol: child), made again when the numbers of children or parents change."""
    iterations, children, parents = values.shape
    if len(curves) != children * parents:
        for curve in curves:
            plot.removeItem(curve)
        curves.clear()
        for i in range(children):
            for j in range(parents):
                curves.append(plot.plot(
                    pen=_pen(parent_colour(j, 200), 1.5), symbol=CHILD_SYMBOLS[i % 8],
                    symbolSize=7, symbolBrush=parent_colour(j), symbolPen=None))
    x = np.arange(1, iterations + 1)
    for k, curve in enumerate(curves):
        curve.setData(x, values[:, k // parents, k % parents])
    iteration_axis(plot, iterations)


def child_bars(plot: pg.PlotItem, bars: list, values: np.ndarray) -> np.ndarray:
    """values (I, J) as bars grouped by child, one colour per parent; returns the bars' x
    positions, (I·J,) child-major."""
    children, parents = values.shape
    width = 0.8 / parents
    if len(bars) != parents:
        for item in bars:
            plot.removeItem(item)
        bars.clear()
        for j in range(parents):
            item = pg.BarGraphItem(x=[], height=[], width=width, brush=parent_colour(j, 200),
                                   pen=None, name=f"parent {j}")
            plot.addItem(item)
            bars.append(item)
    offsets = (np.arange(parents) - (parents - 1) / 2) * width
    for j, item in enumerate(bars):
        item.setOpts(x=np.arange(children) + offsets[j], height=values[:, j], width=width)
    plot.setXRange(-0.6, children - 0.4, padding=0)
    plot.getAxis("bottom").setTicks([[(i, str(i)) for i in range(children)]])
    return (np.arange(children)[:, None] + offsets[None]).ravel()


class TheoryPanel(QWidget):
    """An explanation, a row of plots and a readout; the formula is every part's tooltip."""

    title = ""

    def __init__(self, explanation: str, formula: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.formula = formula
        self.explanation = QLabel(rich(explanation))
        self.explanation.setTextFormat(Qt.TextFormat.RichText)
        self.explanation.setWordWrap(True)
        self.explanation.setToolTip(formula)
        self.plots = pg.GraphicsLayoutWidget()
        self.plots.setToolTip(formula)
        self.readout = QLabel()
        self.readout.setTextFormat(Qt.TextFormat.PlainText)
        self.readout.setWordWrap(True)
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.readout.setToolTip(formula)
        self.controls = QHBoxLayout()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        header = QHBoxLayout()
        header.addWidget(self.explanation, 1)
        header.addLayout(self.controls)
        layout.addLayout(header)
        layout.addWidget(self.plots, 1)
        layout.addWidget(self.readout)

    def add_plot(self, title: str, x_label: str, y_label: str, col: int) -> pg.PlotItem:
        plot = self.plots.addPlot(row=0, col=col, title=rich(title))
        return static_plot(plot, y_label, x_label, mouse=True)

    def tables(self) -> dict[str, Table]:
        return {}

    def scenes(self) -> dict[str, pg.GraphicsItem]:
        return {}


class CouplingsPanel(TheoryPanel):
    """c_ij (dynamic) and R_ij (EM) against the iteration, one line per child and parent."""

    title = "Couplings"

    def __init__(self):
        super().__init__(
            "Each child's coupling to each parent per iteration: dynamic routing's c_ij and EM's "
            "responsibilities R_ij (colour: parent; symbol: child).",
            FORMULAS["coupling"] + "\n" + FORMULAS["routing"] + "\n" + FORMULAS["em_routing"])
        self.dynamic_plot = self.add_plot("dynamic routing: c_ij", "iteration r", "c_ij", 0)
        self.em_plot = self.add_plot("EM routing: R_ij", "iteration r", "R_ij", 1)
        self.curves: dict[str, list] = {"dynamic": [], "em": []}
        self.markers = [_marker_line(p) for p in (self.dynamic_plot, self.em_plot)]
        for plot in (self.dynamic_plot, self.em_plot):
            plot.setYRange(0, 1, padding=0.03)
        self._dynamic = self._em = None

    def show(self, couplings: np.ndarray, responsibilities: np.ndarray, r: int) -> None:
        self._dynamic, self._em = couplings, responsibilities
        for key, plot, values in (("dynamic", self.dynamic_plot, couplings),
                                  ("em", self.em_plot, responsibilities)):
            iteration_curves(plot, self.curves[key], values)
        self.set_iteration(r)

    def set_iteration(self, r: int) -> None:
        for line in self.markers:
            line.setValue(r)
        if self._dynamic is None:
            return
        rows = []
        for i in range(self._dynamic.shape[1]):
            c = " ".join(f"{x:.3f}" for x in self._dynamic[r - 1, i])
            em = " ".join(f"{x:.3f}" for x in self._em[r - 1, i])
            rows.append(f"child {i}: c = ({c}), R = ({em})")
        self.readout.setText(f"r = {r}:  " + ";  ".join(rows))

    def scenes(self):
        return {"couplings": self.plots.ci}


class FixedPointPanel(TheoryPanel):
    """The map Δ → Δ' with its measured slope at 0, and Δ along the actual run."""

    title = "Fixed point"

    def __init__(self):
        super().__init__(
            "One routing update as a map of the logit difference Δ = b_0 − b_1; where the map "
            "crosses the diagonal at 0 with slope > 1, a tiny tie-break grows.",
            FORMULAS["logit_map"])
        self.map_plot = self.add_plot("Δ → Δ' (one update)", "Δ", "Δ'", 0)
        self.map_plot.addLegend(offset=(5, 5))
        self.diagonal = self.map_plot.plot(pen=pg.mkPen(pg.getConfigOption("foreground"),
                                                        width=1, style=Qt.PenStyle.DotLine),
                                           name="Δ' = Δ")
        self.squash_curve = self.map_plot.plot(pen=_pen(CURVE_COLOURS["squash"]), name="squash")
        self.linear_curve = self.map_plot.plot(pen=_pen(CURVE_COLOURS["linear"], dashed=True),
                                               name="v = s")
        self.tangent = self.map_plot.plot(pen=_pen(CURVE_COLOURS["squash"], 1, dashed=True),
                                          name="slope g'(0) at 0")
        self.run_plot = self.add_plot("Δ along this run", "iteration r", "mean b_i0 − b_i1", 1)
        self.run_curve = self.run_plot.plot(pen=_pen(CURVE_COLOURS["squash"]), symbol="o",
                                            symbolSize=6, symbolBrush=CURVE_COLOURS["squash"],
                                            symbolPen=None)
        self.marker = _marker_line(self.run_plot)
        self._table: Table | None = None
        self._run: np.ndarray | None = None

    def show(self, deltas, squash_map, linear_map, squash_fixed, linear_fixed,
             run_deltas: np.ndarray, r: int) -> None:
        self.diagonal.setData(deltas, deltas)
        self.squash_curve.setData(deltas, squash_map)
        self.linear_curve.setData(deltas, linear_map)
        near = deltas[np.abs(deltas) <= 1.5]
        self.tangent.setData(near, squash_fixed.offset + squash_fixed.slope * near)
        self._run = run_deltas
        self.run_curve.setData(np.arange(1, len(run_deltas) + 1), run_deltas)
        iteration_axis(self.run_plot, len(run_deltas))
        fixed = ("Δ = 0 is a fixed point (g(0) = 0)" if squash_fixed.is_fixed_point
                 else f"Δ = 0 is no fixed point here (g(0) = {fmt(squash_fixed.offset)})")
        verdict = "unstable" if squash_fixed.unstable else "stable"
        growth = ""
        nonzero = np.abs(run_deltas[:-1]) > 1e-12
        if len(run_deltas) > 1 and nonzero.any():
            k = int(np.flatnonzero(nonzero)[0])
            growth = (f";  along this run Δ^({k + 2}) / Δ^({k + 1}) = "
                      f"{fmt(run_deltas[k + 1] / run_deltas[k])}")
        self.readout.setText(
            f"g'(0) = {squash_fixed.slope:.4f} with squash ({verdict} if a fixed point), "
            f"{linear_fixed.slope:.4f} with v = s (measured, central differences);  {fixed}"
            + growth)
        self._table = (["delta", "delta_next_squash", "delta_next_linear"],
                       [[float(d), float(s), float(v)]
                        for d, s, v in zip(deltas, squash_map, linear_map)])
        self._slopes = (squash_fixed, linear_fixed)
        self.set_iteration(r)

    def set_iteration(self, r: int) -> None:
        self.marker.setValue(r)

    def tables(self):
        if self._table is None:
            return {}
        squash_fixed, linear_fixed = self._slopes
        return {"fixed_point_map": self._table,
                "fixed_point_slope": (["update", "slope_at_0", "map_at_0"],
                                      [["squash", squash_fixed.slope, squash_fixed.offset],
                                       ["linear", linear_fixed.slope, linear_fixed.offset]]),
                "fixed_point_run": (["iteration", "mean_logit_difference"],
                                    [[r + 1, float(d)] for r, d in enumerate(self._run)])}

    def scenes(self):
        return {"fixed_point": self.plots.ci}


def _steps_text(values: np.ndarray) -> tuple[float, int]:
    """The smallest step values[r+1] − values[r] and its (0-based) r."""
    steps = np.diff(values)
    k = int(np.argmin(steps)) if len(steps) else 0
    return (float(steps[k]) if len(steps) else 0.0), k


class ObjectivePanel(TheoryPanel):
    """Σ c û·v per iteration for v = s and for squash, and the potential squash ascends."""

    title = "Objective"

    def __init__(self):
        super().__init__(
            "The agreement Σ c û·v per iteration: with v = s routing is coordinate ascent and it "
            "never falls; with squash it can, while the potential Σ(‖s‖ − arctan‖s‖) rises.",
            FORMULAS["lab_objective"])
        self.linear_plot = self.add_plot("v = s (linear update)", "iteration r", "Σ c û·v", 0)
        self.linear_curve = self.linear_plot.plot(
            pen=_pen(CURVE_COLOURS["linear"]), symbol="o", symbolSize=6,
            symbolBrush=CURVE_COLOURS["linear"], symbolPen=None)
        self.squash_plot = self.add_plot("v = squash(s)", "iteration r", "value", 1)
        self.squash_plot.addLegend(offset=(-5, -5))
        self.squash_curve = self.squash_plot.plot(
            pen=_pen(CURVE_COLOURS["squash"]), symbol="o", symbolSize=6,
            symbolBrush=CURVE_COLOURS["squash"], symbolPen=None, name="Σ c û·v")
        self.potential_curve = self.squash_plot.plot(
            pen=_pen(CURVE_COLOURS["potential"], dashed=True), symbol="t", symbolSize=6,
            symbolBrush=CURVE_COLOURS["potential"], symbolPen=None, name="Σ (‖s‖ − arctan‖s‖)")
        self.markers = [_marker_line(p) for p in (self.linear_plot, self.squash_plot)]
        self._values = None

    def show(self, linear: np.ndarray, squash: np.ndarray, potential: np.ndarray, r: int) -> None:
        self._values = (linear, squash, potential)
        x = np.arange(1, len(squash) + 1)
        self.linear_curve.setData(x, linear)
        self.squash_curve.setData(x, squash)
        self.potential_curve.setData(x, potential)
        for plot in (self.linear_plot, self.squash_plot):
            iteration_axis(plot, len(x))
        lin_step, _ = _steps_text(linear)
        sq_step, k = _steps_text(squash)
        pot_step, _ = _steps_text(potential)
        falls = int((np.diff(squash) < -1e-12).sum())
        squash_words = (f"falls at {falls} step{'s' if falls > 1 else ''}, by up to "
                        f"{fmt(-sq_step, 4)} (r = {k + 1} → {k + 2})" if sq_step < -1e-12
                        else f"never falls here (smallest step {fmt(sq_step, 4)})")
        self.readout.setText(
            f"v = s: smallest step {fmt(lin_step, 4)} "
            f"({'never falls' if lin_step >= -1e-9 else 'falls'});"
            f"  squash: Σ c û·v {squash_words};  potential: smallest step {fmt(pot_step, 4)}")
        self.set_iteration(r)

    def set_iteration(self, r: int) -> None:
        for line in self.markers:
            line.setValue(r)

    def tables(self):
        if self._values is None:
            return {}
        linear, squash, potential = self._values
        return {"objective": (["iteration", "agreement_linear", "agreement_squash",
                               "potential_squash"],
                              [[r + 1, float(a), float(b), float(c)]
                               for r, (a, b, c) in enumerate(zip(linear, squash, potential))])}

    def scenes(self):
        return {"objective": self.plots.ci}


class AssignmentPanel(TheoryPanel):
    """The LP's hard assignment against the couplings, per iteration and per logit scale."""

    title = "LP view"

    def __init__(self):
        super().__init__(
            "For fixed parents, the best coupling sends each child wholly to its most agreeing "
            "parent (a linear program); the soft couplings approach it as iterations or the "
            "logit scale κ grow.",
            FORMULAS["lp"])
        self.value_plot = self.add_plot("hard (LP) vs soft value", "iteration r", "Σ agreement", 0)
        self.value_plot.addLegend(offset=(-5, -5))
        self.lp_curve = self.value_plot.plot(pen=_pen(CURVE_COLOURS["lp"], dashed=True),
                                             name=rich("Σ_i max_j a_ij"))
        self.soft_curve = self.value_plot.plot(pen=_pen(CURVE_COLOURS["squash"]), symbol="o",
                                               symbolSize=5, symbolBrush=CURVE_COLOURS["squash"],
                                               symbolPen=None, name=rich("Σ_ij c_ij a_ij"))
        self.distance_plot = self.add_plot("distance to hard", "iteration r",
                                           "mean 1 − c_ij*", 1)
        self.distance_curve = self.distance_plot.plot(
            pen=_pen(CURVE_COLOURS["squash"]), symbol="o", symbolSize=5,
            symbolBrush=CURVE_COLOURS["squash"], symbolPen=None)
        self.distance_plot.setYRange(0, 1, padding=0.03)
        self.scale_plot = self.add_plot("softmax(κ b) vs κ (after the last update)",
                                        "logit scale κ", "mean 1 − c_ij*", 2)
        self.scale_plot.setLogMode(x=True, y=False)
        log_ticks(self.scale_plot, (0.1, 0.3, 1, 3, 10, 30, 100))
        self.scale_plot.setYRange(0, 1, padding=0.03)
        self.scale_curve = self.scale_plot.plot(pen=_pen(CURVE_COLOURS["squash"]))
        self.scale_marker = _marker_line(self.scale_plot)
        self.scale_marker.setValue(0.0)  # κ = 1 (log axis)
        self.markers = [_marker_line(p) for p in (self.value_plot, self.distance_plot)]
        self._gap: AssignmentGap | None = None
        self._scale = None

    def show(self, gap: AssignmentGap, scales, scale_distance, scale_value_gap, r: int) -> None:
        self._gap, self._scale = gap, (scales, scale_distance, scale_value_gap)
        x = np.arange(1, len(gap.lp_value) + 1)
        self.lp_curve.setData(x, gap.lp_value)
        self.soft_curve.setData(x, gap.soft_value)
        self.distance_curve.setData(x, gap.distance)
        for plot in (self.value_plot, self.distance_plot):
            iteration_axis(plot, len(x))
        self.scale_curve.setData(scales, scale_distance)
        self.set_iteration(r)

    def set_iteration(self, r: int) -> None:
        for line in self.markers:
            line.setValue(r)
        gap = self._gap
        if gap is None:
            return
        scales, distance, value_gap = self._scale
        k10 = int(np.argmin(np.abs(scales - 10)))
        self.readout.setText(
            f"r = {r}: hard j* = {gap.hard[r - 1].tolist()};  LP {fmt(gap.lp_value[r - 1])} vs "
            f"soft {fmt(gap.soft_value[r - 1])};  mean 1 − c_ij* = {fmt(gap.distance[r - 1])} "
            f"(r = 1: {fmt(gap.distance[0])}, r = {len(gap.distance)}: "
            f"{fmt(gap.distance[-1])});  κ = {scales[k10]:g}: {fmt(distance[k10])}")

    def tables(self):
        if self._gap is None:
            return {}
        gap = self._gap
        scales, distance, value_gap = self._scale
        return {
            "lp_iterations": (["iteration", "lp_value", "soft_value", "mean_distance", "hard"],
                              [[r + 1, float(gap.lp_value[r]), float(gap.soft_value[r]),
                                float(gap.distance[r]), " ".join(map(str, gap.hard[r]))]
                               for r in range(len(gap.lp_value))]),
            "lp_scale": (["logit_scale", "mean_distance", "mean_value_gap"],
                         [[float(k), float(d), float(g)]
                          for k, d, g in zip(scales, distance, value_gap)]),
        }

    def scenes(self):
        return {"lp": self.plots.ci}


class AttentionPanel(TheoryPanel):
    """softmax(q·k / T) with a temperature slider, against routing's couplings."""

    title = "Attention"
    temperature_changed = Signal(float)

    def __init__(self):
        super().__init__(
            "Couplings as attention: each vote is a query, the sum of the parent's earlier "
            "outputs its key; T = 1 reproduces routing, lower T sharpens, higher T flattens.",
            FORMULAS["attention"])
        self.temperature = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.temperature.setRange(0.05, 5.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setValue(1.0)
        self.temperature.setMinimumWidth(220)
        self.temperature.setToolTip("Temperature T of softmax_j(û_{j|i}·K_j / T)")
        self.temperature.valueChanged.connect(lambda t: self.temperature_changed.emit(float(t)))
        self.controls.addWidget(QLabel("Temperature T"))
        self.controls.addWidget(self.temperature)
        self.bar_plot = self.add_plot("couplings per child at iteration r", "child i", "c_ij", 0)
        self.bar_plot.setYRange(0, 1.35, padding=0.02)
        self.bar_plot.addLegend(offset=(-5, 2), colCount=5)
        self.bars: list[pg.BarGraphItem] = []
        self.routing_points = self.bar_plot.plot(pen=None, symbol="x", symbolSize=10,
                                                 symbolPen=pg.mkPen(pg.getConfigOption(
                                                     "foreground"), width=2),
                                                 name=rich("routing c_ij"))
        self.sharp_plot = self.add_plot("sharpness vs T", "temperature T", "mean max_j c_ij", 1)
        self.sharp_plot.setLogMode(x=True, y=False)
        log_ticks(self.sharp_plot, (0.05, 0.1, 0.2, 0.5, 1, 2, 5))
        self.sharp_plot.setYRange(0, 1, padding=0.03)
        self.sharp_curve = self.sharp_plot.plot(pen=_pen(CURVE_COLOURS["squash"]))
        self.sharp_marker = _marker_line(self.sharp_plot)
        self.plots.ci.layout.setColumnStretchFactor(0, 3)
        self.plots.ci.layout.setColumnStretchFactor(1, 2)
        self._shown = None

    def show(self, attention: np.ndarray, routing: np.ndarray, temperature: float,
             temperatures: np.ndarray, sharpness: np.ndarray, r: int) -> None:
        self._shown = (attention, routing, temperature, r)
        xs = child_bars(self.bar_plot, self.bars, attention)
        self.routing_points.setData(xs, routing.ravel())
        self.sharp_curve.setData(temperatures, sharpness)
        self.sharp_marker.setValue(np.log10(temperature))
        difference = float(np.abs(attention - routing).max())
        self.readout.setText(
            f"r = {r}, T = {temperature:.2f}: max |attention − routing c| = {fmt(difference)}"
            f"{' (equal at T = 1)' if abs(temperature - 1) < 1e-12 else ''};  mean max_j c_ij: "
            f"attention {attention.max(axis=1).mean():.3f}, "
            f"routing {routing.max(axis=1).mean():.3f}")

    def drawn_heights(self) -> np.ndarray:
        return np.stack([np.asarray(bars.opts["height"]) for bars in self.bars], axis=1)

    def tables(self):
        if self._shown is None:
            return {}
        attention, routing, temperature, r = self._shown
        return {"attention": (["child", "parent", f"attention_T{temperature:g}",
                               f"routing_iteration_{r}"],
                              [[i, j, float(attention[i, j]), float(routing[i, j])]
                               for i in range(attention.shape[0])
                               for j in range(attention.shape[1])])}

    def scenes(self):
        return {"attention": self.plots.ci}


class JacobianPanel(TheoryPanel):
    """Eigenvalues of squash and of σ(‖s‖)ŝ against ‖s‖; the softmax Jacobian of one child."""

    title = "Jacobians"
    child_changed = Signal(int)

    def __init__(self):
        super().__init__(
            "Gain of each map: squash's eigenvalues stay below 1 at every length; a sigmoid of "
            "the length (σ(‖s‖)·ŝ) exceeds 1 for short s. Right: the softmax Jacobian c(δ − c).",
            FORMULAS["squash_jacobian"] + "\n" + FORMULAS["sigmoid_norm"] + "\n"
            + FORMULAS["softmax_jacobian"])
        self.child_spin = QSpinBox()
        self.child_spin.setToolTip("Child i whose softmax Jacobian ∂c_i/∂b_i is shown")
        self.child_spin.valueChanged.connect(self.child_changed)
        self.controls.addWidget(QLabel("Softmax Jacobian of child"))
        self.controls.addWidget(self.child_spin)
        self.eig_plot = self.add_plot("eigenvalues of ∂v/∂s", "‖s‖", "eigenvalue", 0)
        self.eig_plot.addLegend(offset=(-5, 2), colCount=2)
        self.eig_plot.setYRange(0, 2, padding=0.02)
        self.eig_plot.addItem(pg.InfiniteLine(1.0, angle=0, pen=pg.mkPen(
            pg.getConfigOption("foreground"), width=1, style=Qt.PenStyle.DotLine)))
        self.squash_curves = [
            self.eig_plot.plot(pen=_pen(CURVE_COLOURS["squash"]), name="squash, radial"),
            self.eig_plot.plot(pen=_pen(CURVE_COLOURS["squash"], 1.2), name="squash, tangential"),
        ]
        self.sigmoid_curves = [
            self.eig_plot.plot(pen=_pen(CURVE_COLOURS["linear"], dashed=True),
                               name="σ(‖s‖)ŝ, radial"),
            self.eig_plot.plot(pen=_pen(CURVE_COLOURS["linear"], 1.2, dashed=True),
                               name="σ(‖s‖)ŝ, tangential"),
        ]
        self.parent_points = pg.ScatterPlotItem(size=11, symbol="star", pxMode=True)
        self.eig_plot.addItem(self.parent_points)
        self.matrix_view = self.plots.addViewBox(row=0, col=1, lockAspect=True, invertY=True,
                                                 enableMouse=False)
        self.matrix_view.setMenuEnabled(False)
        self.matrix_item = pg.ImageItem(axisOrder="row-major")
        self.matrix_item.setLookupTable(lut("CET-D1"))
        self.matrix_view.addItem(self.matrix_item)
        self.matrix_texts: list[pg.TextItem] = []
        self.plots.ci.layout.setColumnStretchFactor(0, 3)
        self.plots.ci.layout.setColumnStretchFactor(1, 1)
        self._curves = None
        self._matrix = None

    def show_curves(self, norms, squash_eigs, sigmoid_eigs) -> None:
        """Eigenvalues (K, 2) as (radial, tangential) against ‖s‖ (K,)."""
        self._curves = (norms, squash_eigs, sigmoid_eigs)
        for curves, eigs in ((self.squash_curves, squash_eigs),
                             (self.sigmoid_curves, sigmoid_eigs)):
            for curve, column in zip(curves, eigs.T):
                curve.setData(norms, column)
        self.eig_plot.setXRange(0, float(norms.max()), padding=0.01)

    def show_iteration(self, parent_norms: np.ndarray, parent_max_eigs: np.ndarray,
                       softmax_jacobian: np.ndarray, child: int, r: int) -> None:
        parents = len(parent_norms)
        self.parent_points.setData(parent_norms, parent_max_eigs,
                                   brush=[parent_colour(j) for j in range(parents)],
                                   pen=[pg.mkPen(pg.getConfigOption("foreground"))] * parents)
        self._matrix = softmax_jacobian
        set_image(self.matrix_item, softmax_jacobian, (-0.5, 0.5))
        for text in self.matrix_texts:
            self.matrix_view.removeItem(text)
        self.matrix_texts = []
        for (row, col), value in np.ndenumerate(softmax_jacobian):
            text = pg.TextItem(f"{value:+.3f}", color="#101010", anchor=(0.5, 0.5))
            text.setPos(col + 0.5, row + 0.5)
            self.matrix_view.addItem(text)
            self.matrix_texts.append(text)
        self.matrix_view.autoRange(padding=0.02)
        norms, squash_eigs, sigmoid_eigs = self._curves
        top = squash_eigs.max(axis=1)
        k = int(np.argmax(top))
        eigs = np.linalg.eigvalsh(softmax_jacobian)
        self.readout.setText(
            f"squash: largest eigenvalue {top[k]:.4f} at ‖s‖ ≈ {norms[k]:.2f} (3√3/8 at 1/√3; "
            f"< 1 everywhere);  σ(‖s‖)ŝ: {sigmoid_eigs[0].max():.1f} at ‖s‖ = {norms[0]:g}, "
            f"> 1 for ‖s‖ < {sigmoid_norm_unit_gain():.4f};  r = {r}, parents' ‖s_j‖ = "
            f"{', '.join(f'{n:.2f}' for n in parent_norms)};  softmax Jacobian of child {child}: "
            f"eigenvalues {', '.join(f'{e:.3f}' for e in eigs)}")

    def tables(self):
        tables = {}
        if self._curves is not None:
            norms, squash_eigs, sigmoid_eigs = self._curves
            tables["jacobian_eigenvalues"] = (
                ["norm", "squash_radial", "squash_tangential", "sigmoid_norm_radial",
                 "sigmoid_norm_tangential"],
                [[float(n), *map(float, a), *map(float, b)]
                 for n, a, b in zip(norms, squash_eigs, sigmoid_eigs)])
        if self._matrix is not None:
            tables["softmax_jacobian"] = (
                ["row_parent"] + [f"parent_{k}" for k in range(len(self._matrix))],
                [[j, *map(float, row)] for j, row in enumerate(self._matrix)])
        return tables

    def scenes(self):
        return {"jacobians": self.plots.ci}


class EquivariancePanel(TheoryPanel):
    """Error of parent 0's output angle against the rotation θ of every vote."""

    title = "Equivariance"
    theta_changed = Signal(float)

    def __init__(self):
        super().__init__(
            "Turn every vote by θ: dynamic routing's v₀ turns with them exactly, an invariant "
            "aggregator does not turn at all, EM's μ₀ nearly (its σ² is per axis).",
            FORMULAS["equivariance"])
        self.theta = QLabeledSlider(Qt.Orientation.Horizontal)
        self.theta.setRange(-180, 180)
        self.theta.setValue(0)
        self.theta.setMinimumWidth(220)
        self.theta.setToolTip("Rotate every vote on the canvases by θ degrees")
        self.theta.valueChanged.connect(lambda t: self.theta_changed.emit(float(t)))
        self.controls.addWidget(QLabel("Rotate votes θ (°)"))
        self.controls.addWidget(self.theta)
        self.all_plot = self.add_plot("angle error of parent 0", "θ (°)", "error (°)", 0)
        self.all_plot.addLegend(offset=(5, 5))
        self.invariant_curve = self.all_plot.plot(pen=_pen(CURVE_COLOURS["invariant"]),
                                                  name="invariant Σ‖û‖")
        self.routing_curve = self.all_plot.plot(pen=_pen(CURVE_COLOURS["squash"]),
                                                name="dynamic routing v₀")
        self.em_curve = self.all_plot.plot(pen=_pen(CURVE_COLOURS["em"], dashed=True),
                                           name="EM routing μ₀")
        self.zoom_plot = self.add_plot("routing errors, zoomed", "θ (°)", "error (°)", 1)
        self.zoom_routing = self.zoom_plot.plot(pen=_pen(CURVE_COLOURS["squash"]))
        self.zoom_em = self.zoom_plot.plot(pen=_pen(CURVE_COLOURS["em"], dashed=True))
        self.markers = [_marker_line(p) for p in (self.all_plot, self.zoom_plot)]
        self._errors: EquivarianceErrors | None = None

    def show(self, errors: EquivarianceErrors) -> None:
        self._errors = errors
        degrees = np.rad2deg(errors.thetas)
        self.invariant_curve.setData(degrees, np.rad2deg(errors.invariant))
        self.routing_curve.setData(degrees, np.rad2deg(errors.routing))
        self.em_curve.setData(degrees, np.rad2deg(errors.em))
        self.zoom_routing.setData(degrees, np.rad2deg(errors.routing))
        self.zoom_em.setData(degrees, np.rad2deg(errors.em))
        self.readout.setText(
            f"largest error over θ ∈ [−180°, 180°]: dynamic routing "
            f"{fmt(np.rad2deg(errors.routing.max()), 3)}°, EM routing "
            f"{fmt(np.rad2deg(errors.em.max()), 3)}°, invariant aggregator "
            f"{np.rad2deg(errors.invariant.max()):.1f}° (= |θ|)")

    def set_theta(self, degrees: float) -> None:
        for line in self.markers:
            line.setValue(degrees)

    def tables(self):
        if self._errors is None:
            return {}
        e = self._errors
        return {"equivariance": (["theta_deg", "routing_error_deg", "em_error_deg",
                                  "invariant_error_deg"],
                                 [[float(np.rad2deg(t)), float(np.rad2deg(a)),
                                   float(np.rad2deg(b)), float(np.rad2deg(c))]
                                  for t, a, b, c in zip(e.thetas, e.routing, e.em, e.invariant)])}

    def scenes(self):
        return {"equivariance": self.plots.ci}


class AttentionRoutingsPanel(TheoryPanel):
    """The attention routings on the lab's votes: inverted dot-product attention's r_ij per
    iteration and Efficient-CapsNet's one-pass self-attention couplings c_ij."""

    title = "Attention routings"

    def __init__(self):
        super().__init__(
            "Two routings built on attention, on the same votes: inverted dot-product attention "
            "(Tsai et al. 2020; parents compete for each child, poses LayerNormed, which in 2-D "
            "leaves ±(1, −1)) and Efficient-CapsNet's self-attention (one pass, no iterations).",
            FORMULAS["inverted_attention"] + "\n" + FORMULAS["self_attention"])
        self.inverted_plot = self.add_plot("inverted attention: r_ij", "iteration r", "r_ij", 0)
        self.inverted_plot.setYRange(0, 1, padding=0.03)
        self.marker = _marker_line(self.inverted_plot)
        self.self_plot = self.add_plot("self-attention (one pass): c_ij", "child i", "c_ij", 1)
        self.self_plot.setYRange(0, 1.05, padding=0.02)
        self.curves: list = []
        self.bars: list[pg.BarGraphItem] = []
        self._shown = None

    def show(self, inverted, self_attention, r: int) -> None:
        """``inverted`` and ``self_attention``: the lab's traces (couplings, outputs, …)."""
        self._shown = (inverted, self_attention)
        iteration_curves(self.inverted_plot, self.curves, inverted.couplings)
        child_bars(self.self_plot, self.bars, self_attention.couplings[0])
        self.set_iteration(r)

    def set_iteration(self, r: int) -> None:
        self.marker.setValue(r)
        if self._shown is None:
            return
        inverted, self_attention = self._shown
        r = min(r, len(inverted.couplings))
        rows = []
        for i in range(inverted.couplings.shape[1]):
            routing = " ".join(f"{x:.3f}" for x in inverted.couplings[r - 1, i])
            one_pass = " ".join(f"{x:.3f}" for x in self_attention.couplings[0, i])
            rows.append(f"child {i}: r = ({routing}), c = ({one_pass})")
        poses = ", ".join(f"p{j} = ({p[0]:.2f}, {p[1]:.2f})"
                          for j, p in enumerate(inverted.outputs[r - 1]))
        lengths = ", ".join(f"‖v{j}‖ = {np.linalg.norm(v):.2f}"
                            for j, v in enumerate(self_attention.outputs[0]))
        self.readout.setText(f"r = {r}:  " + ";  ".join(rows) + f".  Inverted: {poses}; "
                             f"self-attention: {lengths}")

    def tables(self):
        if self._shown is None:
            return {}
        inverted, self_attention = self._shown
        iterations, children, parents = inverted.couplings.shape
        rows = [["inverted-attention", k + 1, i, j, float(inverted.logits[k, i, j]),
                 float(inverted.couplings[k, i, j])]
                for k in range(iterations) for i in range(children) for j in range(parents)]
        rows += [["self-attention", 1, i, j, float(self_attention.logits[0, i, j]),
                  float(self_attention.couplings[0, i, j])]
                 for i in range(children) for j in range(parents)]
        return {"attention_routings": (["routing", "iteration", "child", "parent", "logit",
                                        "weight"], rows)}

    def scenes(self):
        return {"attention_routings": self.plots.ci}

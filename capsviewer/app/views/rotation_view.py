"""Rotate the input: CNN probability against capsule length at one angle, a sweep over the whole
circle, and whether the capsule's pose turns with the digit (measured in its best 2-D plane)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
import pyqtgraph as pg  # after PySide6
from superqt import QLabeledSlider
from superqt.utils import signals_blocked

from capsviewer.analysis.rotation import RotationSweep
from capsviewer.app.views.common import (
    class_ticks,
    FORMULAS,
    MARGIN_HIGH,
    MARGIN_LOW,
    ExportableView,
    Table,
    image_box,
    rich,
    image_item,
    set_image,
)

CNN_COLOUR = (230, 140, 30)
CAPSULE_COLOUR = (60, 150, 230)
PLANE_TIP = (
    "Where the reference capsule is present (‖v‖ ≥ 0.5 around 0°): the direction of its 16-D pose\n"
    "v(θ)/‖v(θ)‖, projected on the plane through the origin that holds those directions best;\n"
    "φ is its angle in that plane, unwrapped. A pose that turned exactly with the input would\n"
    "lie on a line of slope 1."
)


SWEEP_HINT = "Press the sweep button to rotate the input through the circle."


def sweep_angles(step: float) -> np.ndarray:
    """−180°, −180° + step, … below 180°: the angles of a full-circle sweep."""
    return np.arange(-180.0, 180.0, float(step))


def _span(correct_range) -> str:
    low, high = correct_range
    return f"from {low:+.0f}° to {high:+.0f}°"


def _range_text(correct_range, fraction, count) -> str:
    hits = int(round(fraction * count))
    if correct_range is None:
        return f"wrong at 0° already; right at {hits} of {count} angles"
    return f"right {_span(correct_range)} around 0°; at {hits} of {count} angles in all"


def plain_summary(sweep: RotationSweep, class_names) -> str:
    """One sentence a student can read: how far each model keeps the class, and how the
    capsule's pose turns while it does."""
    name = str(class_names[sweep.reference_class])
    seen = []
    for model, predictions, correct in (("the CNN", sweep.cnn_predictions, sweep.cnn_correct_range),
                                        ("the CapsNet", sweep.capsule_predictions,
                                         sweep.capsule_correct_range)):
        if predictions is not None:
            seen.append(f"{model} {_span(correct)}" if correct is not None
                        else f"{model} not even at 0°")
    text = f"Turning this {name}, " + " and ".join(seen) + f" still see{'s' * (len(seen) == 1)} a {name}"
    plane = sweep.plane
    if plane is not None:
        low, high = sweep.pose_range
        text += (f"; while capsule {name} is on ({low:+.0f}° to {high:+.0f}°) its pose turns "
                 f"{plane.slope:.1f}° for each degree the digit turns (turning with the digit "
                 "would be 1°)")
    elif sweep.capsule_predictions is not None:
        text += f"; capsule {name} is off at 0°, so there is no pose to follow"
    return text + "."


def describe_sweep(sweep: RotationSweep, class_names) -> str:
    """The plain summary first, then the numbers measured."""
    name = str(class_names[sweep.reference_class])
    origin = "the true label" if sweep.true_class is not None else "the capsule prediction at 0°"
    if sweep.true_class is None and sweep.capsule_predictions is None:
        origin = "the CNN prediction at 0°"
    count = len(sweep.angles)
    lines = [plain_summary(sweep, class_names),
             f"Following class {name} ({origin}) over {count} angles."]
    if sweep.cnn_predictions is not None:
        lines.append("CNN: " + _range_text(sweep.cnn_correct_range, sweep.cnn_correct_fraction,
                                           count) + ".")
    if sweep.capsule_predictions is not None:
        lines.append("CapsNet: " + _range_text(sweep.capsule_correct_range,
                                               sweep.capsule_correct_fraction, count) + ".")
    plane = sweep.plane
    if plane is not None:
        low, high = sweep.pose_range
        lines.append(
            f"Pose fit over {low:+.0f}°…{high:+.0f}° (where ‖v_{name}‖ ≥ 0.5): φ ≈ "
            f"{plane.slope:.2f}·θ {plane.intercept:+.0f}°, RMS residual "
            f"{plane.residual_deg:.0f}°; turning exactly with the input (slope 1) is "
            f"{plane.equivariance_error_deg:.0f}° away (RMS), and {plane.in_plane:.0%} of the "
            "pose's direction lies in the plane.")
    return "\n".join(lines)


def _key(colour, text: str) -> str:
    """Title text in a curve's colour: the legend, off the data."""
    return f"<span style='color:rgb{tuple(colour)}'>{text}</span>"


def _bar_plot(layout: pg.GraphicsLayout, title: str, colour) -> tuple[pg.PlotItem, pg.BarGraphItem]:
    plot = layout.addPlot(title=title)
    plot.setYRange(0, 1, padding=0.02)
    plot.setXRange(-0.6, 9.6, padding=0)
    plot.setMouseEnabled(False, False)
    plot.setMenuEnabled(False)
    plot.hideButtons()
    bars = pg.BarGraphItem(x=np.arange(10), height=np.zeros(10), width=0.7, brush=colour)
    plot.addItem(bars)
    return plot, bars


class RotationView(QWidget, ExportableView):
    """Rotated input, both models' scores, and a sweep over the circle."""

    angle_changed = Signal(float)  # degrees, counter-clockwise
    sweep_requested = Signal(object)  # angles (A,) degrees, increasing
    export_name = "rotation"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._class_names = [str(d) for d in range(10)]
        self._sweep: RotationSweep | None = None
        self._cnn_probabilities: np.ndarray | None = None
        self._capsule_lengths: np.ndarray | None = None

        # Controls: the angle, and the sweep.
        self.angle_slider = QLabeledSlider(Qt.Orientation.Horizontal)
        self.angle_slider.setRange(-180, 180)
        self.angle_slider.setValue(0)
        self.angle_slider.setToolTip("Rotation of the input in degrees; positive turns it "
                                     "counter-clockwise (bilinear, about the centre)")
        self.angle_slider.valueChanged.connect(self._on_angle)
        self.step_spin = QSpinBox()
        self.step_spin.setRange(1, 90)
        self.step_spin.setValue(5)
        self.step_spin.setSuffix("°")
        self.step_spin.setToolTip("Angle step of the sweep (5° gives 72 angles)")
        self.sweep_button = QPushButton("Sweep −180…180°")
        self.sweep_button.setToolTip("Rotate the input through the whole circle and run both "
                                     "models on every angle (one batch per model)")
        self.sweep_button.clicked.connect(self._request_sweep)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Angle (°)"))
        controls.addWidget(self.angle_slider, 1)
        controls.addWidget(QLabel("Step"))
        controls.addWidget(self.step_spin)
        controls.addWidget(self.sweep_button)

        # One angle: rotated input and the two bar charts.
        self.image_item = image_item()
        self.image_box = image_box(self.image_item, "The rotated input")
        self.image_box.setFixedSize(150, 150)
        self.bars_widget = pg.GraphicsLayoutWidget()
        self.bars_widget.setMaximumHeight(220)
        self.cnn_plot, self.cnn_bars = _bar_plot(self.bars_widget.ci, "CNN probability",
                                                 CNN_COLOUR)
        self.cnn_plot.setToolTip(FORMULAS["cnn"])
        self.capsule_plot, self.capsule_bars = _bar_plot(self.bars_widget.ci, "capsule length ‖v‖",
                                                         CAPSULE_COLOUR)
        self.capsule_plot.setToolTip(FORMULAS["squash"] + "\n" + FORMULAS["margin"])
        for margin in (MARGIN_HIGH, MARGIN_LOW):
            self.capsule_plot.addItem(pg.InfiniteLine(
                margin, angle=0, pen=pg.mkPen(style=Qt.PenStyle.DashLine)))
        self._set_ticks(self._class_names)
        one_angle = QHBoxLayout()
        one_angle.addWidget(self.image_box)
        one_angle.addWidget(self.bars_widget, 1)

        # The sweep: scores, predictions and pose plane against the input angle. The titles
        # name the curves in their colours (no legend over the data).
        self.sweep_widget = pg.GraphicsLayoutWidget()
        self.sweep_widget.setMinimumHeight(260)
        self.score_plot = self.sweep_widget.addPlot(row=0, col=0)
        self.score_plot.setLabel("left", "score")
        self.score_plot.setYRange(0, 1, padding=0.02)
        self.cnn_curve = self.score_plot.plot(pen=pg.mkPen(CNN_COLOUR, width=2),
                                              name="CNN probability")
        self.capsule_curve = self.score_plot.plot(pen=pg.mkPen(CAPSULE_COLOUR, width=2),
                                                  name="capsule length")
        self.prediction_plot = self.sweep_widget.addPlot(row=1, col=0)
        self.prediction_plot.setTitle(f"predicted class: {_key(CNN_COLOUR, '● CNN')} · "
                                      f"{_key(CAPSULE_COLOUR, '× CapsNet')}")
        self.prediction_plot.setLabel("bottom", "input angle θ (°)")
        self.prediction_plot.setYRange(-0.5, 9.5, padding=0)
        self.prediction_plot.setXLink(self.score_plot)
        self.reference_line = pg.InfiniteLine(0, angle=0, pen=pg.mkPen(style=Qt.PenStyle.DotLine))
        self.prediction_plot.addItem(self.reference_line)
        self.cnn_prediction_points = self.prediction_plot.plot(
            pen=None, symbol="o", symbolSize=6, symbolBrush=CNN_COLOUR, symbolPen=None, name="CNN")
        self.capsule_prediction_points = self.prediction_plot.plot(
            pen=None, symbol="x", symbolSize=8, symbolBrush=CAPSULE_COLOUR, symbolPen=None,
            name="CapsNet")
        self.angle_lines = []
        for plot in (self.score_plot, self.prediction_plot):
            line = pg.InfiniteLine(0, angle=90, pen=pg.mkPen(width=1))
            plot.addItem(line)
            self.angle_lines.append(line)
            plot.setXRange(-180, 180, padding=0.02)
        self.plane_plot = self.sweep_widget.addPlot(row=0, col=1, rowspan=2)
        self.plane_plot.setTitle(f"pose angle φ: {_key(CAPSULE_COLOUR, '● measured')} · "
                                 "— fitted line")
        self.plane_plot.setLabel("bottom", "input angle θ (°)")
        self.plane_plot.setLabel("left", "φ (°)")
        self.plane_plot.setToolTip(PLANE_TIP)
        self.plane_points = self.plane_plot.plot(
            pen=None, symbol="o", symbolSize=5, symbolBrush=CAPSULE_COLOUR, symbolPen=None,
            name="φ(θ)")
        self.plane_line = self.plane_plot.plot(pen=pg.mkPen(width=1.5), name="least-squares line")
        foreground = pg.getConfigOption("foreground")
        self.sweep_placeholders = []
        for plot in (self.score_plot, self.plane_plot):
            placeholder = pg.TextItem("", anchor=(0.5, 0.5), color=foreground)
            plot.addItem(placeholder, ignoreBounds=True)
            self.sweep_placeholders.append(placeholder)
        self.summary = QLabel(SWEEP_HINT)
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setToolTip(PLANE_TIP)
        sweep_part = QWidget()
        sweep_layout = QVBoxLayout(sweep_part)
        sweep_layout.setContentsMargins(0, 0, 0, 0)
        sweep_layout.addWidget(self.sweep_widget, 1)
        sweep_layout.addWidget(self.summary)

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addLayout(controls)
        top_layout.addLayout(one_angle)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(sweep_part)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([240, 560])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        self.clear_sweep()

    # -- bound to the app state ------------------------------------------------------------------
    def bind(self, state) -> None:
        """Draw ``state``'s rotated input and sweep; write the angle and sweep requests."""
        self._state = state
        self.angle_changed.connect(lambda degrees: setattr(state, "angle", degrees))
        self.sweep_requested.connect(
            lambda _: setattr(state, "sweep_step", int(self.step_spin.value())))
        state.events.angle.connect(self._render_angle)
        state.events.rotated.connect(self._render_rotated)
        state.events.sweep.connect(self._render_sweep)
        self._render_rotated()
        self._render_sweep()

    def _render_angle(self, degrees: float) -> None:
        with signals_blocked(self.angle_slider):
            self.angle_slider.setValue(int(round(degrees)))
        for line in self.angle_lines:
            line.setValue(degrees)

    def _render_rotated(self, *_) -> None:
        state, result = self._state, self._state.rotated
        if result.value is not None:
            image, capsules, cnn = result.value
            self.show_angle(image, cnn, capsules, state.class_names, state.routing_iterations)
        else:
            self.clear_angle("computing…" if result.pending else
                             "no input" if state.image is None else "no model")

    def _render_sweep(self, *_) -> None:
        state, result = self._state, self._state.sweep
        if result.value is not None:
            self.show_sweep(result.value)
            routing = state.routing_iterations
            self._set_score_title(self._class_names[result.value.reference_class],
                                  f" ({state.image.source}"
                                  + (f", R = {routing})" if routing else ")"))
        elif result.pending:
            self.clear_sweep(f"Sweeping {state.image.source} through the circle…")
        else:
            self.clear_sweep()

    def clear_angle(self, message: str) -> None:
        self.image_item.clear()
        self._cnn_probabilities = self._capsule_lengths = None
        for plot, bars, title in ((self.cnn_plot, self.cnn_bars, "CNN probability"),
                                  (self.capsule_plot, self.capsule_bars, "capsule length ‖v‖")):
            bars.setVisible(False)
            plot.setTitle(f"{title}: {message}")

    def clear_sweep(self, message: str = SWEEP_HINT) -> None:
        """No sweep on screen (another input, or none asked for): ``message`` instead."""
        self._sweep = None
        for item in (self.cnn_curve, self.capsule_curve, self.cnn_prediction_points,
                     self.capsule_prediction_points, self.plane_points, self.plane_line):
            item.setData([], [])
        self.reference_line.setVisible(False)  # nothing of the last input's sweep stays
        self._set_score_title(None)
        for plot, placeholder, (y_low, y_high), text in (
                (self.score_plot, self.sweep_placeholders[0], (0, 1), "no sweep yet"),
                (self.plane_plot, self.sweep_placeholders[1], (-90, 90), "φ: after a sweep")):
            plot.setRange(xRange=(-180, 180), yRange=(y_low, y_high), padding=0.02)
            placeholder.setPos(0, (y_low + y_high) / 2)
            placeholder.setText(text)
        self.summary.setText(message)

    def _set_score_title(self, name: str | None, context: str = "") -> None:
        followed = "the class followed" if name is None else f"class {name}{context}"
        self.score_plot.setTitle(f"{followed}: {_key(CNN_COLOUR, '— CNN probability')}"
                                 f" · {_key(CAPSULE_COLOUR, '— capsule length')}")

    # -- what the controller calls -----------------------------------------------------------
    def angle(self) -> float:
        return float(self.angle_slider.value())

    def set_angle(self, degrees: float) -> None:
        """Move the angle slider; emits angle_changed like a drag."""
        self.angle_slider.setValue(int(round(degrees)))

    def sweep_step(self) -> int:
        return self.step_spin.value()

    def show_angle(self, image: np.ndarray, cnn_probabilities: np.ndarray | None,
                   capsule_lengths: np.ndarray | None, class_names,
                   iterations: int | None = None) -> None:
        """Draw the rotated input and each model's scores for it (None: that model is absent)."""
        self._set_ticks(class_names)
        set_image(self.image_item, np.squeeze(np.asarray(image)), (0.0, 1.0))
        self._cnn_probabilities = _vector(cnn_probabilities)
        self._capsule_lengths = _vector(capsule_lengths)
        for plot, bars, values, title, colour in (
            (self.cnn_plot, self.cnn_bars, self._cnn_probabilities, "CNN probability",
             CNN_COLOUR),
            (self.capsule_plot, self.capsule_bars, self._capsule_lengths,
             "capsule length ‖v‖" + (f" (R = {iterations})" if iterations else ""),
             CAPSULE_COLOUR),
        ):
            bars.setVisible(values is not None)
            if values is None:
                plot.setTitle(f"{title}: no model")
                continue
            winner = int(np.argmax(values))
            brushes = [pg.mkBrush(colour if k == winner else (*colour, 110))
                       for k in range(len(values))]
            bars.setOpts(x=np.arange(len(values)), height=values, brushes=brushes)
            plot.setTitle(f"{title}: {self._class_names[winner]} ({values[winner]:.2f})")

    @Slot(object)
    def show_sweep(self, sweep: RotationSweep) -> None:
        self._sweep = sweep
        ref = sweep.reference_class
        angles = sweep.angles
        name = self._class_names[ref] if ref < len(self._class_names) else str(ref)
        self._set_score_title(name)
        _set_curve(self.cnn_curve, angles,
                   None if sweep.cnn_probabilities is None else sweep.cnn_probabilities[:, ref])
        _set_curve(self.capsule_curve, angles,
                   None if sweep.capsule_lengths is None else sweep.capsule_lengths[:, ref])
        _set_curve(self.cnn_prediction_points, angles, sweep.cnn_predictions)
        _set_curve(self.capsule_prediction_points, angles, sweep.capsule_predictions)
        self.reference_line.setValue(ref)
        self.reference_line.setVisible(True)
        self.prediction_plot.getAxis("left").setTicks(
            class_ticks(self._class_names, alternate=True))
        plane = sweep.plane
        measured = angles[sweep.pose_run] if plane is not None else angles
        _set_curve(self.plane_points, measured, None if plane is None else plane.plane_angles)
        _set_curve(self.plane_line, measured,
                   None if plane is None else plane.slope * measured + plane.intercept)
        for placeholder in self.sweep_placeholders:
            placeholder.setText("")
        if plane is None:
            self.sweep_placeholders[1].setText(f"capsule {name} is off at 0°: no pose to follow")
            self.plane_plot.setRange(xRange=(-180, 180), yRange=(-90, 90), padding=0.02)
        else:
            self.plane_plot.enableAutoRange()
        for plot in (self.score_plot, self.prediction_plot):
            plot.setXRange(float(angles[0]), float(angles[-1]), padding=0.02)
        first, *details = describe_sweep(sweep, self._class_names).split("\n")
        self.summary.setText(f"<b>{rich(first)}</b><br><small>{'<br>'.join(map(rich, details))}"
                             "</small>")

    # -- internals --------------------------------------------------------------------------
    def _set_ticks(self, class_names) -> None:
        self._class_names = [str(name) for name in class_names]
        ticks = class_ticks(self._class_names)
        for plot in (self.cnn_plot, self.capsule_plot):
            plot.getAxis("bottom").setTicks(ticks)

    @Slot(int)
    def _on_angle(self, value: int) -> None:
        for line in self.angle_lines:
            line.setValue(value)
        self.angle_changed.emit(float(value))

    @Slot()
    def _request_sweep(self) -> None:
        self.sweep_requested.emit(sweep_angles(self.step_spin.value()))

    # -- export -----------------------------------------------------------------------------
    def export_tables(self) -> dict[str, Table]:
        tables: dict[str, Table] = {}
        if self._cnn_probabilities is not None or self._capsule_lengths is not None:
            rows = [[name,
                     _cell(self._cnn_probabilities, k),
                     _cell(self._capsule_lengths, k)]
                    for k, name in enumerate(self._class_names)]
            tables["rotation_at_angle"] = (
                ["class", f"cnn_probability_at_{self.angle():+.0f}deg",
                 f"capsule_length_at_{self.angle():+.0f}deg"], rows)
        sweep = self._sweep
        if sweep is not None:
            ref = sweep.reference_class
            rows = []
            for i, angle in enumerate(sweep.angles):
                rows.append([
                    float(angle),
                    _cell(None if sweep.cnn_probabilities is None
                          else sweep.cnn_probabilities[:, ref], i),
                    _cell(None if sweep.capsule_lengths is None
                          else sweep.capsule_lengths[:, ref], i),
                    _cell(sweep.cnn_predictions, i),
                    _cell(sweep.capsule_predictions, i),
                    _cell(sweep.plane_angles, i),
                ])
            tables["rotation_sweep"] = (
                ["angle_deg", f"cnn_probability_{ref}", f"capsule_length_{ref}",
                 "cnn_prediction", "capsule_prediction", "pose_plane_angle_deg"], rows)
        return tables

    def export_scenes(self) -> dict[str, pg.GraphicsItem]:
        return {"rotation_scores": self.bars_widget.ci, "rotation_sweep": self.sweep_widget.ci}


def _vector(values) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float64).ravel()


def _cell(values, index):
    """A CSV cell: the number, or '' where that model is absent."""
    if values is None:
        return ""
    value = values[index]
    return int(value) if np.issubdtype(np.asarray(value).dtype, np.integer) else float(value)


def _set_curve(item: pg.PlotDataItem, x: np.ndarray, y) -> None:
    if y is None:
        item.setData([], [])
    else:
        item.setData(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))

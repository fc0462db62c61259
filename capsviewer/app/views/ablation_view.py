"""Routing ablation for the current image: the reconstruction after k = 0 (uniform couplings),
1, 2 (as trained), 3 and 5 agreement updates in one column each, the digit-capsule lengths of
every k side by side on one chart; and, on request, test accuracy against k."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QGridLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget,
)

import pyqtgraph as pg  # after PySide6

from capsviewer.analysis.inspection import MNIST_CLASSES
from capsviewer.analysis.routing_diagnostics import RoutingAblation, UpdatesAccuracy
from capsviewer.app.views.common import (
    class_ticks,
    FORMULAS, MARGIN_HIGH, MARGIN_LOW, ExportableView, Table, rich, static_plot,
)
from capsviewer.app.views.prediction_view import ImagePanel

# one colour per k, readable on light and dark backgrounds; grey for k = 0 (no routing)
K_COLOURS = ("#9a9a9a", "#7fb3e0", "#3d7cc9", "#9b62cf", "#e07b39", "#3caa6e", "#d94f70")


class AblationView(QWidget, ExportableView):
    """Passive: ``show_ablation`` draws one column per k and the lengths chart;
    ``accuracy_requested(n)`` asks the controller to measure test accuracy on n test images,
    ``show_accuracy`` shows it."""

    export_name = "routing-ablation"
    accuracy_requested = Signal(int)  # number of test images
    cancel_requested = Signal()  # stop the measurement

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.ablation: RoutingAblation | None = None
        self.accuracy: UpdatesAccuracy | None = None
        self.names: tuple[str, ...] = MNIST_CLASSES
        self.headers: list[QLabel] = []
        self.images: list[ImagePanel] = []
        self.scores: list[QLabel] = []
        self.bars: list[pg.BarGraphItem] = []
        self.columns = QGridLayout()
        self.columns.setSpacing(4)
        self.lengths_plot = self._build_lengths_plot()
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.count = QSpinBox()
        self.count.setRange(100, 10000)
        self.count.setSingleStep(500)
        self.count.setValue(2000)
        self.count.setToolTip("Random test images (the same subset as `capsviewer ablation "
                              "--test-subset N`, seed 0)")
        self.measure_button = QPushButton("Measure test accuracy")
        self.measure_button.setToolTip("Classify the test images once per k, in the background "
                                       "(about 1 s per 100 images on a CPU core)")
        self.measure_button.clicked.connect(self._measure_clicked)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.progress.setMaximumWidth(220)
        self._measuring = False
        self.accuracy_text = QLabel()
        self.accuracy_text.setWordWrap(True)
        self.accuracy_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        measure = QHBoxLayout()
        measure.addWidget(self.measure_button)
        measure.addWidget(QLabel("on"))
        measure.addWidget(self.count)
        measure.addWidget(QLabel("test images"))
        measure.addWidget(self.progress)
        measure.addWidget(self.accuracy_text, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        title = QLabel(rich("The same input routed with k agreement updates (r = k + 1 "
                            "iterations): digit-capsule lengths ‖v_j‖ and the reconstruction."))
        title.setWordWrap(True)
        title.setToolTip(FORMULAS["updates"])
        layout.addWidget(title)
        body = QHBoxLayout()
        body.addLayout(self.columns, 3)
        body.addWidget(self.lengths_plot, 2)
        layout.addLayout(body, 1)
        layout.addWidget(self.summary)
        layout.addLayout(measure)
        self.setToolTip(FORMULAS["updates"])
        self.show_ablation(None)

    # -- input from the controller ----------------------------------------------------------
    @Slot(object)
    def show_ablation(self, ablation: RoutingAblation | None,
                      names: tuple[str, ...] | None = None) -> None:
        self.ablation = ablation
        if names is not None:
            self.names = names
        self.measure_button.setEnabled(self._measuring or ablation is not None)
        if ablation is None:
            for panel in self.images:
                panel.show_message("no CapsNet")
            for bars in self.bars:
                bars.setVisible(False)
            self.summary.setText("No CapsNet analysis yet")
            return
        self._ensure_columns(len(ablation.updates))
        for n in range(len(ablation.updates)):
            k = ablation.updates[n]
            predicted = int(ablation.predictions[n])
            colour = K_COLOURS[n % len(K_COLOURS)]  # the colour of its bars in the chart
            self.headers[n].setText(f"<b style='color:{colour}'>■ k = {k}</b><br>"
                                    f"{ablation.label(n).split(' ', 2)[2]}<br>"
                                    f"→ {self.names[predicted]}, ‖v‖ = "
                                    f"{ablation.lengths[n, predicted]:.3f}")
            self.images[n].set_image(ablation.reconstructions[n])
        self._draw_lengths(ablation)
        self.summary.setText(rich(ablation_summary(ablation, self.names)))
        self._show_scores()

    @Slot(object)
    def show_accuracy(self, accuracy: UpdatesAccuracy | None) -> None:
        """Test accuracy for each k (None: forget it, e.g. after a model change)."""
        self.accuracy = accuracy
        self.set_measuring(False)
        if accuracy is None:
            self.accuracy_text.setText("")
        else:
            best, worst = accuracy.accuracy.max(), accuracy.accuracy.min()
            spread = int(round((best - worst) * accuracy.count))
            self.accuracy_text.setText(
                f"{accuracy.count:,} test images: accuracy spans {100 * worst:.2f}–"
                f"{100 * best:.2f} % over k ({spread} image{'s' * (spread != 1)} apart); "
                f"'changed': predictions that differ from {accuracy.label(accuracy.reference)}.")
        self._show_scores()

    def set_measuring(self, measuring: bool, progress: tuple[int, int] | None = None) -> None:
        """While measuring, the button cancels and the bar shows the images done."""
        self._measuring = measuring
        self.measure_button.setEnabled(measuring or self.ablation is not None)
        self.measure_button.setText("Cancel" if measuring else "Measure test accuracy")
        self.count.setEnabled(not measuring)
        self.progress.setVisible(measuring)
        if measuring:
            done, total = progress or (0, 0)
            self.progress.setRange(0, max(total, 1))
            self.progress.setValue(done)
            self.progress.setFormat(f"{done:,} of {total:,} images" if total else "starting…")
            self.accuracy_text.setText("")

    def _measure_clicked(self) -> None:
        if self._measuring:
            self.cancel_requested.emit()
        else:
            self.accuracy_requested.emit(self.count.value())

    def column_count(self) -> int:
        return len(self.headers) if self.ablation is not None else 0

    # -- drawing --------------------------------------------------------------------------
    def _build_lengths_plot(self) -> pg.PlotWidget:
        widget = pg.PlotWidget()
        plot = widget.getPlotItem()
        plot.setTitle(rich("‖v_j‖ for each k"))
        static_plot(plot, "‖v_j‖", "class j", grid=(False, True))
        plot.getAxis("bottom").setTicks(class_ticks(self.names))
        foreground = pg.getConfigOption("foreground")
        for value in (MARGIN_HIGH, MARGIN_LOW):
            plot.addItem(pg.InfiniteLine(pos=value, angle=0, movable=False,
                                         pen=pg.mkPen(foreground, width=1, style=Qt.PenStyle.DashLine)))
        plot.setXRange(-0.6, 9.6, padding=0)
        plot.setYRange(0, 1, padding=0.03)
        widget.setToolTip(FORMULAS["squash"] + "\n" + FORMULAS["updates"]
                          + f"\ndashed: the margins m⁺ = {MARGIN_HIGH}, m⁻ = {MARGIN_LOW}"
                          "\nbar colours: the k of the columns beside it")
        return widget

    def _draw_lengths(self, ablation: RoutingAblation) -> None:
        """Grouped bars: for each class j, one bar per k."""
        plot = self.lengths_plot.getPlotItem()
        count = len(ablation.updates)
        while len(self.bars) < count:
            n = len(self.bars)
            colour = K_COLOURS[n % len(K_COLOURS)]
            bars = pg.BarGraphItem(x=np.arange(10), height=np.zeros(10), width=0.1,
                                   brush=pg.mkBrush(colour), pen=None)
            plot.addItem(bars)
            self.bars.append(bars)
        width = 0.84 / count
        for n, bars in enumerate(self.bars):
            bars.setVisible(n < count)
            if n >= count:
                continue
            offset = (n - (count - 1) / 2) * width
            classes = np.arange(ablation.lengths.shape[1])
            bars.setOpts(x=classes + offset, height=ablation.lengths[n], width=width * 0.92)
        plot.getAxis("bottom").setTicks(class_ticks(self.names))
        plot.setYRange(0, max(1.0, float(ablation.lengths.max())), padding=0.03)

    def bar_heights(self) -> np.ndarray:
        """The drawn lengths (K, J): row n is k = updates[n]."""
        count = len(self.ablation.updates) if self.ablation is not None else 0
        return np.array([np.asarray(b.opts["height"], dtype=np.float64) for b in self.bars[:count]])

    def _ensure_columns(self, count: int) -> None:
        while len(self.headers) < count:
            column = len(self.headers)
            header = QLabel()
            header.setAlignment(Qt.AlignmentFlag.AlignCenter)
            header.setWordWrap(True)
            header.setToolTip(FORMULAS["updates"])
            image = ImagePanel("")
            image.setToolTip(FORMULAS["reconstruction"])
            image.setMinimumSize(70, 70)
            score = QLabel()
            score.setAlignment(Qt.AlignmentFlag.AlignCenter)
            score.setWordWrap(True)
            for row, widget in enumerate((header, image, score)):
                self.columns.addWidget(widget, row, column)
            self.headers.append(header)
            self.images.append(image)
            self.scores.append(score)
        for n, widgets in enumerate(zip(self.headers, self.images, self.scores)):
            for widget in widgets:
                widget.setVisible(n < count)
        self.columns.setRowStretch(1, 1)

    def _show_scores(self) -> None:
        accuracy, ablation = self.accuracy, self.ablation
        for n, label in enumerate(self.scores):
            if ablation is None or accuracy is None or n >= len(ablation.updates) \
                    or ablation.updates[n] not in accuracy.updates:
                label.setText("test accuracy: —")
                continue
            m = accuracy.updates.index(ablation.updates[n])
            label.setText(f"test accuracy {100 * accuracy.accuracy[m]:.2f} %<br>"
                          f"changed: {int(accuracy.changed[m])}")

    # -- export ---------------------------------------------------------------------------
    def export_tables(self) -> dict[str, Table]:
        ablation = self.ablation
        if ablation is None:
            return {}
        header = ["updates_k", "iterations_r", "prediction"] + [f"length_{n}" for n in self.names]
        rows = [[k, k + 1, self.names[int(ablation.predictions[n])],
                 *map(float, ablation.lengths[n])] for n, k in enumerate(ablation.updates)]
        tables = {"lengths": (header, rows)}
        if self.accuracy is not None:
            rows = [[row["updates"], row["iterations"], row["correct"], row["count"],
                     row["accuracy"], row["changed_vs_reference"]] for row in self.accuracy.rows()]
            tables["accuracy"] = (["updates_k", "iterations_r", "correct", "count", "accuracy",
                                   "changed_vs_reference"], rows)
        return tables

    def export_scenes(self) -> dict[str, pg.GraphicsItem]:
        return {"lengths": self.lengths_plot.getPlotItem()} if self.ablation is not None else {}


def ablation_summary(ablation: RoutingAblation, names: tuple[str, ...]) -> str:
    """A sentence from the numbers: does the prediction change with k, and by how much do the
    lengths move?"""
    predictions = [names[int(p)] for p in ablation.predictions]
    same = len(set(predictions)) == 1
    winner = int(ablation.predictions[-1])
    lengths = ", ".join(f"{ablation.lengths[n, winner]:.3f}" for n in range(len(ablation.updates)))
    change = float(np.abs(ablation.lengths - ablation.lengths[0]).max())
    text = (f"Prediction {predictions[0]} for every k. " if same else
            "Predictions by k: " + ", ".join(f"k = {k}: {p}" for k, p in zip(ablation.updates, predictions))
            + ". ")
    text += (f"‖v_{names[winner]}‖ for k = {', '.join(map(str, ablation.updates))}: {lengths}; "
             f"no length moves by more than {change:.3f} from uniform routing (k = 0).")
    return text

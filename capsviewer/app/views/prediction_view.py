"""What each model predicts for the current image: digit-capsule lengths ‖v_j‖ against the
margins m⁺/m⁻, the CNN's probabilities on the same class axis, the primary-capsule lengths
‖u_i‖ on their 32×6×6 grid, and the input beside the CapsNet's reconstruction."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QSplitter, QVBoxLayout, QWidget

import pyqtgraph as pg  # after PySide6

from capsviewer.analysis.inspection import MNIST_CLASSES, CapsuleInspection, CNNInspection
from capsviewer.app.views.common import (
    RoomyAxis,
    class_ticks,
    FORMULAS, MARGIN_HIGH, MARGIN_LOW, ExportableView, Table, headline_label, image_item, rich,
    set_image,
)
from capsviewer.app.views.grid_mosaic import MosaicPanel

BAR_BRUSH = pg.mkBrush(86, 140, 205)  # reads on light and dark backgrounds
HIGHLIGHT_BRUSH = pg.mkBrush(240, 140, 30)  # the predicted / selected class
TRUTH_BRUSH = pg.mkBrush(60, 180, 90, 70)  # band behind the true label


class ClassBars(pg.PlotWidget):
    """Ten bars on a class axis, y in [0, 1]: one highlighted, the true label banded, optional
    margin lines m⁺/m⁻. Clicking a bar emits ``class_clicked(k)``."""

    class_clicked = Signal(int)

    def __init__(self, title: str, symbol: str, axis: str = "class j", margins: bool = False,
                 parent: QWidget | None = None):
        super().__init__(parent, axisItems={"left": RoomyAxis("left")})
        plot = self.getPlotItem()
        plot.setTitle(rich(title))
        plot.setLabel("left", rich(symbol))
        plot.setLabel("bottom", axis)
        plot.setMenuEnabled(False)
        plot.setMouseEnabled(False, False)
        plot.hideButtons()
        plot.showGrid(y=True, alpha=0.2)
        plot.getAxis("left").enableAutoSIPrefix(False)
        self.truth = pg.BarGraphItem(x=[0], height=[0], width=0.9, brush=TRUTH_BRUSH, pen=None)
        self.truth.setZValue(-1)
        self.truth.setVisible(False)
        self.bars = pg.BarGraphItem(x=np.arange(10), height=np.zeros(10), width=0.6,
                                    brush=BAR_BRUSH, pen=None)
        plot.addItem(self.truth)
        plot.addItem(self.bars)
        foreground = pg.getConfigOption("foreground")
        self.margin_lines: list[pg.InfiniteLine] = []
        if margins:  # dashed lines, named on the right axis: off the bars
            for value in (MARGIN_HIGH, MARGIN_LOW):
                self.margin_lines.append(pg.InfiniteLine(
                    pos=value, angle=0, movable=False,
                    pen=pg.mkPen(foreground, width=1, style=Qt.PenStyle.DashLine)))
                plot.addItem(self.margin_lines[-1])
            plot.showAxis("right")
            plot.getAxis("right").setTicks([[(MARGIN_HIGH, f"m⁺ {MARGIN_HIGH}"),
                                             (MARGIN_LOW, f"m⁻ {MARGIN_LOW}")]])
        self.placeholder = pg.TextItem("", anchor=(0.5, 0.5), color=foreground)
        self.placeholder.setPos(4.5, 0.5)
        plot.addItem(self.placeholder)
        plot.setXRange(-0.6, 9.6, padding=0)
        plot.setYRange(0, 1, padding=0.03)
        self.values: np.ndarray | None = None
        self.highlight: int | None = None
        self.set_class_names(MNIST_CLASSES)
        self.scene().sigMouseClicked.connect(self._clicked)

    def set_class_names(self, names: tuple[str, ...]) -> None:
        self.getPlotItem().getAxis("bottom").setTicks(class_ticks(names))

    def show_margins(self, shown: bool) -> None:
        """Show or hide the margin lines m⁺/m⁻ (the margin loss's; not every model's)."""
        for line in self.margin_lines:
            line.setVisible(shown)
        if self.margin_lines:
            self.getPlotItem().showAxis("right", shown)

    def set_values(self, values: np.ndarray, highlight: int | None = None,
                   label: int | None = None) -> None:
        self.values = np.asarray(values, dtype=np.float64)
        self.highlight = highlight
        brushes = [HIGHLIGHT_BRUSH if k == highlight else BAR_BRUSH for k in range(len(values))]
        self.bars.setOpts(x=np.arange(len(values)), height=self.values, brushes=brushes)
        self.bars.setVisible(True)
        self.set_label(label)
        self.placeholder.setText("")

    def set_label(self, label: int | None) -> None:
        self.truth.setOpts(x=[label if label is not None else 0], height=[1.0])
        self.truth.setVisible(label is not None)

    def show_message(self, message: str = "") -> None:
        """Hide the bars and show ``message`` instead (e.g. no model loaded)."""
        self.values = None
        self.highlight = None
        self.bars.setVisible(False)
        self.truth.setVisible(False)
        self.placeholder.setText(message)

    def heights(self) -> np.ndarray:
        return np.asarray(self.bars.opts["height"], dtype=np.float64)

    def _clicked(self, event) -> None:
        view = self.getPlotItem().getViewBox()
        if self.values is None or not view.sceneBoundingRect().contains(event.scenePos()):
            return
        k = int(round(view.mapSceneToView(event.scenePos()).x()))
        if 0 <= k < len(self.values):
            self.class_clicked.emit(k)


class ImagePanel(pg.GraphicsLayoutWidget):
    """A titled 28×28 grey image with a placeholder text when there is nothing to show."""

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = self.addLabel(title, row=0, col=0)
        self.view = self.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMouse=False)
        self.view.setMenuEnabled(False)
        self.item = image_item()
        self.view.addItem(self.item)
        self.placeholder = pg.TextItem("", anchor=(0.5, 0.5), color=pg.getConfigOption("foreground"))
        self.placeholder.setPos(14, 14)
        self.view.addItem(self.placeholder)
        self.view.setRange(xRange=(0, 28), yRange=(0, 28), padding=0.02)

    def set_image(self, values: np.ndarray) -> None:
        set_image(self.item, values, (0.0, 1.0))
        self.placeholder.setText("")

    def show_message(self, message: str = "") -> None:
        self.item.clear()
        self.placeholder.setText(message)


def class_names_of(capsules: CapsuleInspection | None, cnn: CNNInspection | None):
    source = capsules if capsules is not None else cnn
    return source.class_names if source is not None else MNIST_CLASSES


def headline(capsules: CapsuleInspection | None, cnn: CNNInspection | None,
             label: int | None) -> str:
    """"CapsNet: 7 (‖v‖ = 0.97) · CNN: 7 (p = 0.99) · label 7"."""
    names = class_names_of(capsules, cnn)
    parts = []
    if capsules is not None:
        k = capsules.prediction
        parts.append(f"CapsNet: {names[k]} (‖v‖ = {capsules.lengths[k]:.2f}, "
                     f"R = {len(capsules.iterations)})")
    else:
        parts.append("CapsNet: not loaded")
    if cnn is not None:
        parts.append(f"CNN: {names[cnn.prediction]} (p = {cnn.probabilities[cnn.prediction]:.2f})")
    else:
        parts.append("CNN: not loaded")
    if label is not None:
        parts.append(f"label {names[label]}")
    return " · ".join(parts)


class PredictionView(QWidget, ExportableView):
    """Both models' verdicts on one image: ``show_inspection`` draws an analysis; bound to the
    app state (:meth:`bind`), it draws the state's analysis of the current input."""

    export_name = "prediction"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.capsules: CapsuleInspection | None = None
        self.cnn: CNNInspection | None = None
        self.label: int | None = None

        self.headline = headline_label("No image analysed yet")

        self.capsule_bars = ClassBars("Digit capsules: length ‖v_j‖", "‖v_j‖", margins=True)
        self.capsule_bars.setToolTip(FORMULAS["squash"] + "\n" + FORMULAS["margin"])
        self.cnn_bars = ClassBars("CNN: class probability p_k", "p_k", axis="class k")
        self.cnn_bars.setToolTip(FORMULAS["cnn"])
        self.primary = MosaicPanel("Primary capsules: length ‖u_i‖ (32 maps of 6×6)", "‖u_i‖")
        self.primary.setToolTip("‖u_i‖ of each primary capsule on its (map, row, col) grid\n"
                                + FORMULAS["squash"])
        self.input_panel = ImagePanel("Input x")
        self.reconstruction_panel = ImagePanel("Reconstruction")
        self.reconstruction_panel.setToolTip(FORMULAS["reconstruction"])

        bars = QWidget()
        bars_layout = QHBoxLayout(bars)
        bars_layout.setContentsMargins(0, 0, 0, 0)
        bars_layout.addWidget(self.capsule_bars)
        bars_layout.addWidget(self.cnn_bars)
        lower = QWidget()
        lower_layout = QHBoxLayout(lower)
        lower_layout.setContentsMargins(0, 0, 0, 0)
        lower_layout.addWidget(self.input_panel, 1)
        lower_layout.addWidget(self.reconstruction_panel, 1)
        lower_layout.addWidget(self.primary, 3)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(bars)
        splitter.addWidget(lower)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.headline)
        layout.addWidget(splitter, 1)
        self.show_inspection(None, None, None)

    def bind(self, state) -> None:
        """Render ``state``'s input and analysis whenever they change."""
        self._state = state
        for event in (state.events.analysis, state.events.image, state.events.models):
            event.connect(self._render)
        self._render()

    def _render(self, *_) -> None:
        state = self._state
        image, result = state.image, state.analysis
        if image is None:
            self.show_inspection(None, None, None)
            self.headline.setText("No input: pick a test image, draw a digit or open a file")
            return
        pixels = image.pixels / 255.0
        if result.ready:
            self.show_inspection(*result.value, image.label, pixels)
        elif result.pending:
            self.show_pending(pixels, state.routing_iterations)
        else:
            self.show_inspection(None, None, image.label, pixels)

    def show_pending(self, image: np.ndarray, iterations: int | None) -> None:
        """The input is being analysed: its image, and no numbers of another input."""
        self.capsules = self.cnn = None
        routing = f" (R = {iterations})" if iterations is not None else ""
        self.headline.setText(f"Computing{routing}…")
        for panel in (self.capsule_bars, self.cnn_bars, self.primary):
            panel.show_message("computing…")
        self.reconstruction_panel.show_message("computing…")
        self.input_panel.set_image(image)

    @Slot(object, object, object)
    def show_inspection(self, capsules: CapsuleInspection | None, cnn: CNNInspection | None,
                        label: int | None, image: np.ndarray | None = None) -> None:
        """Draw what is there; a missing model gets a placeholder. ``image`` (28×28 in [0, 1])
        is drawn as the input when there is no CapsNet inspection to take it from."""
        self.capsules, self.cnn, self.label = capsules, cnn, label
        names = class_names_of(capsules, cnn)
        anything = capsules is not None or cnn is not None or label is not None
        self.headline.setText(headline(capsules, cnn, label) if anything else "No image analysed yet")
        for bars in (self.capsule_bars, self.cnn_bars):
            bars.set_class_names(names)
        self.capsule_bars.getPlotItem().setTitle(rich(
            "Digit capsules: length ‖v_j‖" + (f" after R = {len(capsules.iterations)} iterations"
                                              if capsules is not None else "")))
        if capsules is not None:
            self.capsule_bars.set_values(capsules.lengths, capsules.prediction, label)
            self.primary.set_values(capsules.primary_lengths)
            self.input_panel.set_image(capsules.image)
            self.reconstruction_panel.set_image(capsules.reconstruction)
        else:
            self.capsule_bars.show_message("No CapsNet loaded")
            self.primary.show_message("No CapsNet loaded")
            self.reconstruction_panel.show_message("needs a CapsNet")
            if image is not None:
                self.input_panel.set_image(image)
            else:
                self.input_panel.show_message("no image")
        if cnn is not None:
            self.cnn_bars.set_values(cnn.probabilities, cnn.prediction, label)
        else:
            self.cnn_bars.show_message("No CNN loaded")

    # -- export ---------------------------------------------------------------------------
    def export_tables(self) -> dict[str, Table]:
        names = class_names_of(self.capsules, self.cnn)
        tables: dict[str, Table] = {}
        if self.capsules is not None or self.cnn is not None:
            rows = []
            for k, name in enumerate(names):
                rows.append([
                    k, name,
                    float(self.capsules.lengths[k]) if self.capsules is not None else "",
                    float(self.cnn.probabilities[k]) if self.cnn is not None else "",
                    int(k == self.label) if self.label is not None else "",
                ])
            tables["classes"] = (["class", "name", "capsule_length", "cnn_probability", "label"], rows)
        if self.capsules is not None:
            tables["primary_lengths"] = (
                ["map", "row", "col", "length"],
                [[*index, float(value)] for index, value in np.ndenumerate(self.capsules.primary_lengths)],
            )
        return tables

    def export_scenes(self) -> dict[str, pg.GraphicsItem]:
        return {
            "capsule_lengths": self.capsule_bars.getPlotItem(),
            "cnn_probabilities": self.cnn_bars.getPlotItem(),
            "primary_lengths": self.primary.plot,
        }

"""Step through dynamic routing (Procedure 1) one iteration at a time, or show what another
vector routing of the CapsNet has: uniform couplings (no routing), self-attention's weights of
its one pass, inverted attention's routing weights per iteration, each named as its paper does
(:data:`capsviewer.analysis.routing_maps.ROUTING_TERMS`).

For iteration r and a chosen digit capsule j the view draws, on the 32×6×6 primary grid, by
default how far each coupling is from uniform (c_ij − 1/J, faded by the part's activity
‖u_i‖), or what the last iteration changed, each part's support c_ij‖û_{j|i}‖, or the raw
c_ij, b_ij and û_{j|i}·v_j (:mod:`capsviewer.analysis.routing_maps`); beside it every parent's
length ‖v_j‖ at r and across iterations, the ‖u_i‖-weighted mean coupling to each parent, where
on the input digit capsule j's strongest parts look, and a finding measured from the numbers
(:mod:`capsviewer.analysis.routing_findings`). Hovering a cell of the grid frames its receptive
field on the input. Below, panels on routing for this image: diagnostics per iteration, the
vote cloud of j (both follow the scrubber), a decoded vote of the parts clicked on the grid or
the part map, and the ablation over the number of agreement updates.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QIcon, QPainter, QPalette, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import (
    QButtonGroup, QComboBox, QGraphicsRectItem, QHBoxLayout, QLabel, QPushButton, QSizePolicy,
    QSlider, QSpinBox, QSplitter, QStackedWidget, QTabWidget, QToolButton, QVBoxLayout, QWidget,
)

import pyqtgraph as pg  # after PySide6
from superqt.utils import signals_blocked

from capsviewer.analysis.inspection import CapsuleInspection, IterationSnapshot
from capsviewer.analysis.routing_findings import describe_strongest, strongest_part
from capsviewer.analysis.routing_maps import (
    DEFAULT_MODE, MAP_MODES, ROUTING_TERMS, activity_weights, all_iterations, map_levels,
    map_modes,
)
from capsviewer.app.views.ablation_view import AblationView
from capsviewer.app.views.common import (
    FORMULAS, ExportableView, Table, class_colour, dark_background, frame_field, heat_lut, rich,
    set_image, static_plot, unicode_scripts,
)
from capsviewer.app.views.em_routing_panel import DEFAULT_EM_MAP, EM_MAPS, EMRoutingPanel
from capsviewer.app.views.grid_mosaic import MosaicPanel, cell_at, tile_origin
from capsviewer.app.views.prediction_view import ClassBars, ImagePanel
from capsviewer.app.views.routing_diagnostics_view import RoutingDiagnosticsView
from capsviewer.app.views.vote_cloud_view import VoteCloudView
from capsviewer.app.views.vote_decoder_view import VoteDecoderView
from capsviewer.maths import ROUTING_ALGORITHMS

EM = "em"  # AppState.routing_model: step the matrix-capsule model's EM routing
PLAY_INTERVAL_MS = 700
MAX_ITERATIONS = 10
PART_COLOURS = ("#e8453c", "#f39c12", "#f4d03f")  # boxes of the 1st, 2nd, 3rd strongest part
HOVER_COLOUR = "#3ec1d3"  # the receptive field of the grid cell under the mouse
SELECTION_PEN = pg.mkPen(240, 140, 30, width=2)  # the primary capsules chosen for decoding

QUANTITIES = MAP_MODES  # what the grid can show (dynamic routing has every map): key → MapMode
FORMULA_OF = {"deviation": "coupling", "change": "routing", "support": "votes",
              "couplings": "coupling", "logits": "routing", "agreement": "agreement"}
# The formula of the other routings' weights (FORMULAS keys); "support" stays "votes".
ROUTING_FORMULA = {"uniform": "uniform_routing", "self-attention": "self_attention",
                   "inverted-attention": "inverted_attention"}


def formula_of(routing: str, quantity: str) -> str:
    """The formula behind map ``quantity`` of ``routing``, for its tooltip."""
    if routing == "dynamic" or quantity == "support":
        return FORMULAS[FORMULA_OF[quantity]]
    return FORMULAS[ROUTING_FORMULA[routing]]


def map_colours(mode: str) -> str:
    """A colour map for the mode that reads on the current plot background."""
    if MAP_MODES[mode].diverging:
        return "CET-D4" if dark_background() else "CET-D1"  # dark or light middle
    return "viridis"


def weighted_mean_couplings(couplings: np.ndarray, primary_lengths: np.ndarray) -> np.ndarray:
    """Σ_i ‖u_i‖ c_ij / Σ_i ‖u_i‖ for each digit capsule j (sums to 1 over j)."""
    weights = primary_lengths[..., None]
    return (couplings * weights).sum(axis=(0, 1, 2)) / max(float(weights.sum()), 1e-12)


STEP_SHAPES = {  # the stepper's icons on a 16 × 16 grid: triangles (▶ or ◀) and bars
    "first": (("bar", 3), ("left", 4)), "previous": (("left", 1), ("left", 8)),
    "play": (("right", 4),), "pause": (("bar", 4), ("bar", 10)),
    "next": (("right", 1), ("right", 8)), "last": (("right", 3), ("bar", 12)),
}


def step_icon(kind: str, palette: QPalette) -> QIcon:
    """A stepper icon drawn in the palette's button text colour, with a disabled state that
    stays visible on light and dark themes (the style's own icons vanish on dark)."""
    icon = QIcon()
    for mode, group in ((QIcon.Mode.Normal, QPalette.ColorGroup.Active),
                        (QIcon.Mode.Disabled, QPalette.ColorGroup.Disabled)):
        colour = palette.color(group, QPalette.ColorRole.ButtonText)
        if mode is QIcon.Mode.Disabled:  # half-way to the button: dimmed, never gone
            button = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.Button)
            text = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.ButtonText)
            colour = QColor((text.red() + button.red()) // 2, (text.green() + button.green()) // 2,
                            (text.blue() + button.blue()) // 2)
        pixmap = QPixmap(32, 32)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.scale(2, 2)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        for shape, x in STEP_SHAPES[kind]:
            if shape == "bar":
                painter.drawRect(QRectF(x, 3, 2.5, 10))
            elif shape == "right":
                painter.drawPolygon(QPolygonF([QPointF(x, 3), QPointF(x + 7, 8), QPointF(x, 13)]))
            else:
                painter.drawPolygon(QPolygonF([QPointF(x + 7, 3), QPointF(x, 8),
                                               QPointF(x + 7, 13)]))
        painter.end()
        icon.addPixmap(pixmap, mode)
    return icon


class RoutingView(QWidget, ExportableView):
    """Passive: ``show(capsules)`` draws an inspection; the controls only move within it, and
    ``iterations_changed`` asks the controller to recompute with another iteration count."""

    export_name = "routing"
    iterations_changed = Signal(int)  # the user asked for R routing iterations
    capsule_selected = Signal(int)  # the user selected digit capsule j
    iteration_changed = Signal(int)  # the iteration on screen, 1-based
    vote_decode_requested = Signal(object)  # VoteSelection: decode these votes, please
    accuracy_requested = Signal(int)  # measure test accuracy against k on n test images

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.capsules: CapsuleInspection | None = None
        self.em = None  # EMInspection of the matrix-capsule model, when it is shown
        self._em_mode = False  # stepping the matrix-capsule model's EM routing
        self._em_map = DEFAULT_EM_MAP
        self._iteration = 1
        self._wanted_iteration: int | None = None  # asked for before the analysis arrived
        self._digit = 0
        self._quantity = DEFAULT_MODE
        self._state = None  # the app state, once bound
        self._routing = "dynamic"  # the routing of the model shown; its maps:
        self._modes = MAP_MODES
        self._couplings: np.ndarray | None = None  # c_ij of (r, j) on the grid, as drawn
        self._shown: np.ndarray | None = None  # the drawn quantity of (r, j)
        self.finding = None  # StrongestPart of (r, j)
        self._history_of: tuple | None = None  # (inspection, j) the history curves show
        self.play_timer = QTimer(self)
        self.play_timer.setInterval(PLAY_INTERVAL_MS)
        self.play_timer.timeout.connect(self._advance)

        layout = QVBoxLayout(self)
        layout.addLayout(self._build_stepper())
        layout.addLayout(self._build_routing_row())
        layout.addLayout(self._build_selectors())
        self.panel_splitter = QSplitter(Qt.Orientation.Vertical)  # the view above, panels below
        self.panel_splitter.setChildrenCollapsible(False)
        self.body_stack = QStackedWidget()  # the CapsNet's routing, or the EM model's
        self.body_stack.addWidget(self._build_body())
        self.em_panel = EMRoutingPanel()
        self.body_stack.addWidget(self.em_panel)
        self.em_panel.activation_bars.class_clicked.connect(self.select_capsule)
        self.em_panel.sigma_bars.class_clicked.connect(self.select_capsule)
        self.panel_splitter.addWidget(self.body_stack)
        self.panel_splitter.addWidget(self._build_panels())
        self.panel_splitter.setStretchFactor(0, 2)
        self.panel_splitter.setStretchFactor(1, 1)
        self.panel_splitter.setSizes([480, 240])
        layout.addWidget(self.panel_splitter, 1)
        self._routing = ""  # name dynamic routing's terms everywhere until a model says
        self._set_routing("dynamic")
        self._restyle()
        self.show_inspection(None)

    # -- construction ---------------------------------------------------------------------
    def _tool_button(self, tip: str, slot) -> QToolButton:
        button = QToolButton()
        button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    def _build_stepper(self) -> QHBoxLayout:
        self.first_button = self._tool_button("First iteration", lambda: self._step_by_hand(1))
        self.previous_button = self._tool_button("Previous iteration",
                                                 lambda: self._step_by_hand(self._iteration - 1))
        self.play_button = QPushButton("Play")
        self.play_button.setToolTip("Animate the routing iterations one after another")
        self.play_button.clicked.connect(self.toggle_play)
        self.next_button = self._tool_button("Next iteration",
                                             lambda: self._step_by_hand(self._iteration + 1))
        self.last_button = self._tool_button("Last iteration",
                                             lambda: self._step_by_hand(self.iteration_count))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(1, 1)
        self.slider.setPageStep(1)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setTickInterval(1)
        self.slider.setToolTip("Scrub through routing iterations r\n" + FORMULAS["routing"])
        self.slider.valueChanged.connect(self.set_iteration)
        self.slider.sliderPressed.connect(self.pause)
        self.iteration_label = QLabel()
        self.iteration_label.setMinimumWidth(110)
        self.iterations_spin = QSpinBox()
        self.iterations_spin.setRange(1, MAX_ITERATIONS)
        self.iterations_spin.setToolTip("Routing iterations R to run (recomputes the routing)")
        self.iterations_spin.valueChanged.connect(self.iterations_changed)
        row = QHBoxLayout()
        for widget in (self.first_button, self.previous_button, self.play_button,
                       self.next_button, self.last_button):
            row.addWidget(widget)
        row.addWidget(self.slider, 1)
        row.addWidget(self.iteration_label)
        row.addSpacing(8)
        row.addWidget(QLabel("Iterations R:"))
        row.addWidget(self.iterations_spin)
        return row

    def _build_routing_row(self) -> QHBoxLayout:
        self.routing_label = QLabel()  # which routing the model has, in words
        self.routing_label.setWordWrap(True)
        self.routing_label.setTextFormat(Qt.TextFormat.RichText)
        self.model_label = QLabel("Model:")
        self.model_combo = QComboBox()  # shown when a matrix-capsule model is loaded
        self.model_combo.addItem("CapsNet", "capsnet")
        self.model_combo.addItem("Matrix capsules (EM)", EM)
        self.model_combo.setToolTip("Whose routing to step through: the CapsNet's, or the "
                                    "matrix-capsule network's EM routing")
        row = QHBoxLayout()
        row.addWidget(self.routing_label, 1)
        row.addWidget(self.model_label)
        row.addWidget(self.model_combo)
        self.model_label.setVisible(False)
        self.model_combo.setVisible(False)
        return row

    def _build_selectors(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.digit_label = QLabel("Digit capsule j:")
        row.addWidget(self.digit_label)
        self.digit_group = QButtonGroup(self)
        self.digit_group.setExclusive(True)
        self.digit_buttons: list[QPushButton] = []
        buttons = QHBoxLayout()
        buttons.setSpacing(2)
        for k in range(10):
            button = QPushButton(str(k))
            button.setCheckable(True)
            button.setFixedWidth(30)
            self.digit_group.addButton(button, k)
            self.digit_buttons.append(button)
            buttons.addWidget(button)
        row.addLayout(buttons)
        self.digit_group.idClicked.connect(self.select_capsule)
        row.addStretch(1)
        row.addWidget(QLabel("Show:"))
        self.map_combo = QComboBox()
        self._fill_map_combo()
        self.map_combo.setToolTip("What the grid shows for digit capsule j at iteration r")
        self.map_combo.currentIndexChanged.connect(
            lambda index: self.set_quantity(self.map_combo.itemData(index)))
        row.addWidget(self.map_combo)
        return row

    def _fill_map_combo(self) -> None:
        """The maps the current routing has, each with its explanation and formula."""
        with signals_blocked(self.map_combo):
            self.map_combo.clear()
            if self._em_mode:
                for key, mode in EM_MAPS.items():
                    self.map_combo.addItem(unicode_scripts(mode.label), key)
                    self.map_combo.setItemData(self.map_combo.count() - 1,
                                               mode.hint + "\n" + FORMULAS["em_routing"],
                                               Qt.ItemDataRole.ToolTipRole)
                self.map_combo.setCurrentIndex(max(self.map_combo.findData(self._em_map), 0))
                return
            for key, mode in self._modes.items():
                self.map_combo.addItem(unicode_scripts(mode.label), key)
                self.map_combo.setItemData(
                    self.map_combo.count() - 1,
                    mode.explanation + "\n" + formula_of(self._routing, key),
                    Qt.ItemDataRole.ToolTipRole)
            self.map_combo.setCurrentIndex(max(self.map_combo.findData(self._quantity), 0))

    def _set_routing(self, routing: str) -> None:
        """Name and offer what ``routing`` has: its maps, weights, scores and iterations."""
        if routing == self._routing:
            return
        before = ROUTING_TERMS[self._routing].default if self._routing else DEFAULT_MODE
        self._routing = routing
        self._modes = map_modes(routing)
        terms = ROUTING_TERMS[routing]
        if self._quantity not in self._modes or self._quantity == before:  # not chosen
            self._quantity = terms.default
        self._fill_map_combo()
        algorithm = ROUTING_ALGORITHMS[routing]
        self.routing_label.setText(f"<b>{algorithm.title}</b> ({algorithm.paper}): "
                                   f"{rich(terms.summary)}.")
        self.routing_label.setToolTip(formula_of(routing, "couplings"))
        one_pass = not algorithm.iterative
        self.iterations_spin.setEnabled(not one_pass)
        self.iterations_spin.setToolTip(
            f"{algorithm.title} runs in one pass: R does not apply" if one_pass
            else "Routing iterations R to run (recomputes the routing)")
        axis = terms.scores if len(terms.scores) < 8 else "score"  # ‖v_j‖, or the read-out's
        self.length_bars.getPlotItem().setLabel("left", rich(axis))
        self.length_bars.show_margins(terms.scores == "‖v_j‖")  # the margin loss's lines
        self.history.getPlotItem().setTitle(rich(f"{terms.scores} across iterations"))
        self.history.getPlotItem().setLabel("left", rich(axis))
        self.share_bars.getPlotItem().setLabel("left", rich(f"mean {terms.symbol}"))
        self.mosaic.setToolTip(formula_of(routing, "couplings"))
        share = (f"Σ_i ‖u_i‖ {terms.symbol} / Σ_i ‖u_i‖: where the primary capsules send "
                 "their output")
        self.share_bars.setToolTip(share)
        index = self.panels.indexOf(self.share_bars)
        self.panels.setTabText(index, "Mean coupling" if terms.noun == "couplings"
                               else "Mean weight")
        self.panels.setTabToolTip(index, share + "\n" + formula_of(routing, "couplings"))

    def _build_body(self) -> QSplitter:
        self.mosaic = MosaicPanel("c_ij − 1/J", "c_ij − 1/J")
        self.mosaic.setToolTip(FORMULAS["coupling"])
        self.mosaic.cell_hovered.connect(self._hover_cell)

        self.overlay = ImagePanel("Where digit capsule j's support comes from")
        self.overlay.setMinimumSize(150, 150)
        self.overlay.setToolTip("Heat: Σ_maps c_ij ‖û_{j|i}‖ spread over each grid cell's "
                                "receptive field; boxes: the 3 strongest primary capsules\n"
                                + FORMULAS["votes"])
        self.part_map_item = pg.ImageItem(axisOrder="row-major")
        self.part_map_item.setLookupTable(heat_lut())
        self.part_map_item.setLevels((0.0, 1.0))
        self.part_map_item.setZValue(1)
        self.overlay.view.addItem(self.part_map_item)
        self.part_boxes: list[QGraphicsRectItem] = []
        self.part_labels: list[pg.TextItem] = []
        for colour in (*PART_COLOURS, HOVER_COLOUR):
            box = QGraphicsRectItem()
            pen = QPen(QColor(colour), 2)
            pen.setCosmetic(True)
            if colour == HOVER_COLOUR:
                pen.setStyle(Qt.PenStyle.DashLine)
            box.setPen(pen)
            box.setVisible(False)
            box.setZValue(2)
            self.overlay.view.addItem(box)
            text = pg.TextItem("", color=colour, anchor=(0, 0))
            text.setZValue(3)
            self.overlay.view.addItem(text)
            self.part_boxes.append(box)
            self.part_labels.append(text)
        self.hover_box = self.part_boxes.pop()  # the cell under the mouse, not a strongest part
        self.part_labels.pop()
        self.parts_text = QLabel()
        self.parts_text.setWordWrap(True)
        self.parts_text.setTextFormat(Qt.TextFormat.RichText)
        self.parts_text.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.parts_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.parts_text.setOpenExternalLinks(False)
        self.parts_text.linkActivated.connect(self._part_link)
        self.parts_text.setToolTip(FORMULAS["votes"])
        self.parts_text.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.parts_text.setMinimumWidth(150)
        self.finding_text = QLabel()  # what the numbers say, in words
        self.finding_text.setWordWrap(True)
        self.finding_text.setTextFormat(Qt.TextFormat.RichText)
        self.finding_text.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.finding_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.finding_text.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        # room for the longest sentence at 1280×800 (six lines): stepping never moves the layout
        self.finding_text.setFixedHeight(6 * self.finding_text.fontMetrics().lineSpacing() + 4)
        self.finding_text.setToolTip("Measured from this input's routing: the part with the most "
                                     "support c_ij‖û_{j|i}‖ for digit capsule j\n"
                                     + FORMULAS["votes"])

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.mosaic, 1)
        left_layout.addWidget(self.finding_text)
        parts = QWidget()
        parts_layout = QHBoxLayout(parts)
        parts_layout.setContentsMargins(0, 0, 0, 0)
        parts_layout.addWidget(self.overlay, 1)
        parts_layout.addWidget(self.parts_text, 1)

        self.length_bars = ClassBars("‖v_j‖ at iteration r", "‖v_j‖", margins=True)
        self.length_bars.setToolTip("Click a bar to select digit capsule j\n"
                                    + FORMULAS["routing"] + "\n" + FORMULAS["squash"])
        self.length_bars.class_clicked.connect(self.select_capsule)
        self.history = pg.PlotWidget()
        history = self.history.getPlotItem()
        history.setTitle(rich("‖v_j‖ across iterations"))
        static_plot(history, "‖v_j‖", "iteration r")
        history.setRange(xRange=(0.8, 3.5), yRange=(0, 1), padding=0)  # until there is data
        self.history.setToolTip(FORMULAS["routing"])
        self.history_curves = [
            history.plot([], [], pen=pg.mkPen(class_colour(j), width=1.5),
                         symbol="o", symbolSize=5, symbolBrush=class_colour(j), symbolPen=None)
            for j in range(10)
        ]
        self.history_labels = [pg.TextItem(str(j), color=class_colour(j), anchor=(0, 0.5))
                               for j in range(10)]
        for text in self.history_labels:
            history.addItem(text)
        self.iteration_line = pg.InfiniteLine(angle=90, movable=False,
                                              pen=pg.mkPen(pg.getConfigOption("foreground"),
                                                           width=1, style=Qt.PenStyle.DashLine))
        history.addItem(self.iteration_line)
        self.share_bars = ClassBars("Mean coupling to j", "mean c_ij")
        self.share_bars.setToolTip("Σ_i ‖u_i‖ c_ij / Σ_i ‖u_i‖: where the primary capsules "
                                   "send their output\n" + FORMULAS["coupling"])
        self.share_bars.class_clicked.connect(self.select_capsule)
        for plot in (self.length_bars, self.history, self.share_bars):
            plot.setMinimumSize(200, 110)

        right = QSplitter(Qt.Orientation.Vertical)
        right.setChildrenCollapsible(False)
        for widget in (parts, self.length_bars, self.history):
            right.addWidget(widget)
        body = QSplitter(Qt.Orientation.Horizontal)
        body.setChildrenCollapsible(False)
        body.addWidget(left)
        body.addWidget(right)
        body.setStretchFactor(0, 1)
        body.setStretchFactor(1, 1)
        body.setSizes([520, 420])
        return body

    def _build_panels(self) -> QTabWidget:
        """Diagnostics, vote cloud, decoded vote and ablation, in tabs under the grid."""
        self.diagnostics_view = RoutingDiagnosticsView()
        self.cloud_view = VoteCloudView()
        self.decoder_view = VoteDecoderView()
        self.ablation_view = AblationView()
        self.panels = QTabWidget()
        self.panels.setDocumentMode(True)
        for view, title, tip in (
            (self.diagnostics_view, "Diagnostics", FORMULAS["coupling_entropy"]),
            (self.cloud_view, "Vote cloud", FORMULAS["vote_cloud"]),
            (self.decoder_view, "Decode a vote", FORMULAS["vote_decode"]),
            (self.ablation_view, "Ablation", FORMULAS["updates"]),
            (self.share_bars, "Mean coupling", "Σ_i ‖u_i‖ c_ij / Σ_i ‖u_i‖ for each digit "
                                               "capsule j\n" + FORMULAS["coupling"]),
        ):
            self.panels.setTabToolTip(self.panels.addTab(view, title), tip)
        self.cloud_view.child_clicked.connect(lambda i, add: self.select_parts((i,), add))
        self.decoder_view.decode_requested.connect(self.vote_decode_requested)
        self.decoder_view.selection_changed.connect(self._draw_selection)
        self.ablation_view.accuracy_requested.connect(self.accuracy_requested)
        self.mosaic.graphics.scene().sigMouseClicked.connect(self._mosaic_clicked)
        self.overlay.scene().sigMouseClicked.connect(self._part_map_clicked)
        self.selection_marks = pg.ScatterPlotItem(pxMode=False, symbol="s", size=1.0, brush=None,
                                                  pen=SELECTION_PEN)
        self.selection_marks.setZValue(5)
        self.mosaic.plot.addItem(self.selection_marks)
        self.panels.currentChanged.connect(lambda _: self._draw_selection(self.selected_parts()))
        return self.panels

    def animation_widget(self) -> QWidget:
        """What File ▸ Export routing animation grabs at each iteration: the grid, the finding,
        the input's support and the lengths (not the panels below)."""
        return self.panel_splitter.widget(0)

    def export_panels(self) -> list[ExportableView]:
        """The panels under the grid, exported with the view (the CapsNet's: none for EM)."""
        if self._em_mode:
            return []
        return [self.diagnostics_view, self.cloud_view, self.decoder_view, self.ablation_view]

    # -- state ----------------------------------------------------------------------------
    @property
    def iteration(self) -> int:
        """The iteration on screen, 1-based."""
        return self._iteration

    @property
    def iteration_count(self) -> int:
        if self._em_mode:
            return len(self.em.steps) if self.em is not None else 1
        return len(self.capsules.iterations) if self.capsules is not None else 1

    @property
    def em_mode(self) -> bool:
        """Stepping the matrix-capsule model's EM routing (else the CapsNet's routing)."""
        return self._em_mode

    def _on_screen(self):
        """The inspection on screen: the EM model's in EM mode, else the CapsNet's."""
        return self.em if self._em_mode else self.capsules

    @property
    def digit(self) -> int:
        """The selected digit capsule j."""
        return self._digit

    @property
    def quantity(self) -> str:
        return self._quantity

    @property
    def mosaic_item(self) -> pg.ImageItem:
        """The ImageItem the primary-grid mosaic is drawn into."""
        return self.mosaic.image

    def displayed_couplings(self) -> np.ndarray | None:
        """c_ij of the current iteration and digit capsule on the grid (32, 6, 6): the array
        the mosaic draws when it shows couplings."""
        return self._couplings

    def displayed_values(self) -> np.ndarray | None:
        """The grid (32, 6, 6) of the quantity the mosaic draws now."""
        return self._shown

    def mode(self):
        """The MapMode the grid shows."""
        return self._modes[self._quantity]

    def mode_keys(self) -> tuple[str, ...]:
        """The maps the current routing offers (MAP_MODES keys)."""
        return tuple(self._modes)

    @property
    def routing(self) -> str:
        """The routing of the model shown (CapsNetConfig.routing)."""
        return self._routing

    def snapshot(self) -> IterationSnapshot | None:
        return self.capsules.iterations[self._iteration - 1] if self.capsules is not None else None

    # -- bound to the app state ------------------------------------------------------------------
    def bind(self, state) -> None:
        """Draw ``state``'s analysis and the panels' results; write R, j, the parts chosen for
        decoding and accuracy requests into it."""
        self._state = state
        self.iterations_changed.connect(lambda r: setattr(state, "iterations", int(r)))
        self.iteration_changed.connect(lambda r: setattr(state, "routing_step", int(r)))
        self.capsule_selected.connect(state.select_capsule)
        self.vote_decode_requested.connect(lambda selection: setattr(state, "vote_selection",
                                                                     selection))
        ablation = self.ablation_view
        self.accuracy_requested.connect(lambda n: setattr(state, "accuracy_images", int(n)))
        ablation.cancel_requested.connect(lambda: setattr(state, "accuracy_images", None))
        events = state.events
        events.analysis.connect(self._render_analysis)
        events.capsule.connect(self._render_capsule)
        events.routing_step.connect(self._render_step)
        events.diagnostics.connect(
            lambda result: self.diagnostics_view.show_diagnostics(result.value))
        events.vote_cloud.connect(self._render_cloud)
        events.ablation.connect(self._render_ablation)
        events.accuracy.connect(self._render_accuracy)
        events.decoded_vote.connect(self._render_decoded_vote)
        events.em_analysis.connect(self._render_em)
        events.routing_model.connect(self._render_mode)
        events.models.connect(self._render_models)
        self.model_combo.currentIndexChanged.connect(
            lambda index: setattr(state, "routing_model", self.model_combo.itemData(index)))
        self._render_models()
        self._render_mode()
        self._render_analysis()
        self._render_panels()
        self._render_accuracy()

    def _render_panels(self) -> None:
        """The panels' results as the state holds them now: a view built after they were
        computed (tabs are built when first needed) draws them at once."""
        state = self._state
        if state.analysis.ready and state.diagnostics.ready:
            self.diagnostics_view.show_diagnostics(state.diagnostics.value)
        if self.capsules is not None and state.vote_cloud.ready:
            self._render_cloud(state.vote_cloud)
        self._render_ablation(state.ablation)

    def _render_models(self, *_) -> None:
        """Offer the EM model's routing while one is loaded; back to the CapsNet without it."""
        state = self._state
        loaded = state.em_model is not None
        self.model_label.setVisible(loaded)
        self.model_combo.setVisible(loaded)
        if not loaded and state.routing_model == EM:
            state.routing_model = "capsnet"

    def _render_mode(self, *_) -> None:
        """Show the routing of the model the state names: the CapsNet's or the EM model's."""
        em_mode = self._state.routing_model == EM
        with signals_blocked(self.model_combo):
            self.model_combo.setCurrentIndex(self.model_combo.findData(
                self._state.routing_model))
        if em_mode == self._em_mode:
            return
        self.pause()
        self._em_mode = em_mode
        self.body_stack.setCurrentIndex(1 if em_mode else 0)
        self.panels.setVisible(not em_mode)  # diagnostics, clouds, ablation: the CapsNet's
        self.digit_label.setText("Class capsule j:" if em_mode else "Digit capsule j:")
        self._fill_map_combo()
        if em_mode:
            algorithm = ROUTING_ALGORITHMS["em"]
            self.routing_label.setText(
                f"<b>{algorithm.title}</b> ({algorithm.paper}) of the matrix-capsule network's "
                "class layer: an M-step fits each class a Gaussian to the votes weighted by "
                "R<sub>ij</sub> a<sub>i</sub> and sets a<sub>j</sub>; an E-step reassigns "
                "R<sub>ij</sub>.")
            self.routing_label.setToolTip(FORMULAS["em_routing"])
            self.length_bars.show_margins(False)
            self._render_em()
        else:
            self.em = None
            routing, self._routing = self._routing, ""
            self._set_routing(routing)  # its label and maps again
            self.capsules = None  # drawn afresh from the state
            self._render_analysis()
            self._render_panels()  # EM mode's messages cleared them; the state still has them

    def _render_em(self, *_) -> None:
        if not self._em_mode:
            return
        state, result = self._state, self._state.em_analysis
        if result.ready:
            self.show_em(result.value)
            return
        self.em = None
        if result.pending:
            self._clear("computing…")
        elif result.error:
            self._clear("EM routing failed: see the message")
        elif state.image is None:
            self._clear("No input")
        else:
            self._clear("No matrix-capsule model loaded")

    def show_em(self, em) -> None:
        """An EMInspection: a new image starts at the last iteration with the predicted class
        selected (or the one chosen); another R keeps j and clamps t to 1..R."""
        previous, self.em = self.em, em
        count = len(em.steps)
        shown = self._iteration
        if previous is None or not np.array_equal(previous.image, em.image):
            self._iteration = self._wanted_iteration or count
            chosen = self._state.capsule if self._state is not None else None
            self._digit = chosen if chosen is not None else em.prediction
        self._wanted_iteration = None
        self._iteration = min(max(self._iteration, 1), count)
        self.em_panel.set_class_names(em.class_names)
        self._set_controls_enabled(True)
        self._redraw()
        if self._iteration != shown or previous is None:
            self.iteration_changed.emit(self._iteration)

    def _render_analysis(self, *_) -> None:
        if self._em_mode:
            return
        state, result = self._state, self._state.analysis
        if result.ready and result.value[0] is not None:
            self.show_inspection(result.value[0])
            self._render_capsule()
            return
        self.show_inspection(None)
        if result.pending:
            self._clear("computing…")
            with signals_blocked(self.iterations_spin):
                self.iterations_spin.setValue(state.routing_iterations or 1)
        elif state.image is None:
            self._clear("No input")
        elif state.capsnet is None:
            self._clear("No CapsNet loaded")

    def _render_capsule(self, *_) -> None:
        j = self._state.capsule if self._em_mode else self._state.selected_capsule
        if j is not None and j != self._digit:
            self._digit = j
            if self._on_screen() is not None:
                self._redraw()

    def _render_step(self, r) -> None:
        """The state asks for iteration r (None: a new input, its last iteration)."""
        if r is None or self._on_screen() is None:
            self._wanted_iteration = r
        elif r != self._iteration:
            self.set_iteration(r)

    def _render_cloud(self, result) -> None:
        names = self.capsules.class_names if self.capsules is not None else None
        self.cloud_view.show_cloud(result.value, self._iteration if result.value is not None
                                   else None, names)

    def _render_ablation(self, result) -> None:
        self.show_ablation(result.value)

    def _render_accuracy(self, *_) -> None:
        result = self._state.accuracy
        if result.pending:
            self.ablation_view.set_measuring(True, result.progress)
        else:
            self.ablation_view.show_accuracy(result.value)

    def _render_decoded_vote(self, result) -> None:
        if result.value is not None:
            self.decoder_view.show_decoded(result.value)

    # -- input from the controller ----------------------------------------------------------
    @Slot(object)
    def show_inspection(self, capsules: CapsuleInspection | None) -> None:
        """A new image starts at the last iteration with the predicted capsule selected; a
        recomputation of the same image (another R) keeps j and clamps r to 1..R."""
        previous = self.capsules
        self.capsules = capsules
        if capsules is None:
            self.pause()
            self._clear()
            return
        if capsules.routing != self._routing:
            self._set_routing(capsules.routing)
            if self._state is not None:  # the ablation, or why this routing has none
                self.show_ablation(self._state.ablation.value)
        count = len(capsules.iterations)
        shown = self._iteration
        if previous is None or not np.array_equal(previous.image, capsules.image):
            self._iteration = self._wanted_iteration or count
            self._digit = capsules.prediction
        self._wanted_iteration = None
        self._iteration = min(max(self._iteration, 1), count)
        for button, name in zip(self.digit_buttons, capsules.class_names):
            button.setToolTip(f"Digit capsule {name}")
        for bars in (self.length_bars, self.share_bars):
            bars.set_class_names(capsules.class_names)
        self._set_controls_enabled(True)
        self._redraw()
        if self._iteration != shown or previous is None:
            self.iteration_changed.emit(self._iteration)

    @Slot(object)
    def show_decoded_vote(self, decoded) -> None:
        """A DecodedVote the controller computed for ``vote_decode_requested``."""
        self.decoder_view.show_decoded(decoded)

    @Slot(object)
    def show_ablation(self, ablation) -> None:
        """A RoutingAblation of the current image (None: no CapsNet). A one-pass routing has
        no agreement updates to take away: the panel says so instead."""
        names = self.capsules.class_names if self.capsules is not None else None
        algorithm = ROUTING_ALGORITHMS[self._routing]
        if self.capsules is not None and not algorithm.iterative:
            self.ablation_view.show_ablation(None, names, f"{algorithm.title} runs in one pass: "
                                             "there are no agreement updates to take away.")
            return
        self.ablation_view.show_ablation(ablation, names)

    @Slot(object)
    def show_accuracy(self, accuracy) -> None:
        """UpdatesAccuracy for ``accuracy_requested`` (None: forget the last one)."""
        self.ablation_view.show_accuracy(accuracy)

    # -- slots ----------------------------------------------------------------------------
    @Slot(int)
    def set_iteration(self, r: int) -> None:
        """Show iteration r (1-based, clamped to 1..R)."""
        r = min(max(int(r), 1), self.iteration_count)
        if r == self._iteration:
            self._sync_stepper()
            return
        self._iteration = r
        if self._on_screen() is not None:
            self._redraw()
        self.iteration_changed.emit(r)

    @Slot()
    def next_iteration(self) -> None:
        self.set_iteration(self._iteration + 1)

    @Slot()
    def previous_iteration(self) -> None:
        self.set_iteration(self._iteration - 1)

    @Slot()
    def toggle_play(self) -> None:
        """Play from the current iteration to the last (from the first when at the last)."""
        if self.play_timer.isActive():
            self.pause()
            return
        if self._on_screen() is None or self.iteration_count < 2:
            return
        if self._iteration >= self.iteration_count:
            self.set_iteration(1)
        self.play_timer.start()
        self._sync_play_button()

    @Slot()
    def pause(self) -> None:
        self.play_timer.stop()
        self._sync_play_button()

    @property
    def playing(self) -> bool:
        return self.play_timer.isActive()

    @Slot(int)
    def select_capsule(self, j: int) -> None:
        """Select digit capsule j; emits ``capsule_selected`` when it changes."""
        j = int(j)
        if not 0 <= j < 10:
            return
        changed = j != self._digit
        self._digit = j
        if self._on_screen() is not None:
            self._redraw()
        if changed:
            self.capsule_selected.emit(j)

    @Slot(str)
    def set_quantity(self, name: str) -> None:
        """Draw one of MAP_MODES on the grid ("deviation", "change", "support", "couplings",
        "logits", "agreement"); one the current routing lacks (say, logits with uniform
        couplings) draws its default map."""
        if self._em_mode and name in EM_MAPS:
            self._em_map = name
            with signals_blocked(self.map_combo):
                self.map_combo.setCurrentIndex(self.map_combo.findData(name))
            if self.em is not None:
                self._redraw()
            return
        if name not in QUANTITIES:
            raise ValueError(f"unknown map {name!r}; one of {', '.join(QUANTITIES)}")
        self._quantity = name if name in self._modes else ROUTING_TERMS[self._routing].default
        with signals_blocked(self.map_combo):
            self.map_combo.setCurrentIndex(self.map_combo.findData(name))
        if self.capsules is not None:
            self._redraw()

    def _step_by_hand(self, r: int) -> None:
        self.pause()
        self.set_iteration(r)

    def _advance(self) -> None:
        if self._iteration < self.iteration_count:
            self.next_iteration()
        if self._iteration >= self.iteration_count:
            self.pause()

    # -- drawing --------------------------------------------------------------------------
    def _redraw(self) -> None:
        if self._em_mode:
            self._sync_stepper()
            self.em_panel.draw(self.em, self._iteration, self._digit, self._em_map)
            return
        capsules, r, j = self.capsules, self._iteration, self._digit
        snapshot = capsules.iterations[r - 1]
        count = len(capsules.iterations)
        name = capsules.class_names[j]
        self._sync_stepper()

        self._couplings = snapshot.couplings[..., j]
        mode, terms = self._modes[self._quantity], ROUTING_TERMS[self._routing]
        every = all_iterations(capsules, self._quantity, j)  # one scale for every iteration
        self._shown = every[r - 1]
        weights = activity_weights(capsules.primary_lengths) if mode.fade else None
        self.mosaic.set_values(
            self._shown, map_levels(every, self._quantity), map_colours(self._quantity),
            symbol=mode.symbol, weights=weights,
            title=(f"{rich(mode.label[0].upper() + mode.label[1:])}<br>"
                   f"digit capsule {name} · iteration {r} of {count}"),
        )
        hint = mode.hint
        if self._quantity == "change" and r == 1:
            hint = f"iteration 1: nothing has changed yet, every {terms.symbol} is 1/J"
        self.mosaic.set_hint(rich(hint))
        self.mosaic.setToolTip(mode.explanation + "\n" + formula_of(self._routing,
                                                                     self._quantity))

        self.length_bars.set_values(snapshot.parent_lengths, highlight=j)
        self.length_bars.getPlotItem().setTitle(rich(f"{terms.scores} at iteration {r}"))
        share = weighted_mean_couplings(snapshot.couplings, capsules.primary_lengths)
        self.share_bars.set_values(share, highlight=j)
        self.share_bars.getPlotItem().setYRange(0, max(0.2, 1.15 * float(share.max())), padding=0)
        self.share_bars.getPlotItem().setTitle(
            rich(f"Mean {terms.weights} to j at iteration {r}"))
        self._draw_history(capsules, r, j)
        self._draw_parts(capsules, r, j)
        self._draw_panels(capsules, r, j)

    def _draw_panels(self, capsules: CapsuleInspection, r: int, j: int) -> None:
        """The panels follow r; their numbers (diagnostics, vote cloud) come from the state."""
        self.diagnostics_view.set_iteration(r)
        self.cloud_view.set_iteration(r)
        self.decoder_view.set_context(capsules, j, r)

    # -- choosing parts to decode -------------------------------------------------------------
    def select_parts(self, children, add: bool = False) -> None:
        """Decode the votes of primary capsules ``children`` (flat i = map·36 + row·6 + col);
        ``add`` toggles them in the current selection."""
        if self.capsules is None:
            return
        self.decoder_view.select_children(children, add)
        if self.panels.currentWidget() not in (self.decoder_view, self.cloud_view):
            self.panels.setCurrentWidget(self.decoder_view)

    def select_location(self, row: int, col: int) -> None:
        """All 32 primary capsules at grid cell (row, col)."""
        maps, rows, cols = self.capsules.primary_lengths.shape
        self.select_parts([m * rows * cols + row * cols + col for m in range(maps)])

    def _mosaic_clicked(self, event) -> None:
        view = self.mosaic.plot.getViewBox()
        if self.capsules is None or event.button() != Qt.MouseButton.LeftButton \
                or not view.sceneBoundingRect().contains(event.scenePos()):
            return
        point = view.mapSceneToView(event.scenePos())
        grid = self.capsules.primary_lengths.shape
        cell = cell_at(point.x(), point.y(), grid)
        if cell is not None:
            grid_map, row, col = cell
            add = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)
            self.select_parts([(grid_map * grid[1] + row) * grid[2] + col], add)

    def _part_map_clicked(self, event) -> None:
        """The grid cell whose receptive field is centred nearest the clicked pixel."""
        view = self.overlay.view
        if self.capsules is None or event.button() != Qt.MouseButton.LeftButton \
                or not view.sceneBoundingRect().contains(event.scenePos()):
            return
        point = view.mapSceneToView(event.scenePos())
        fields = self.capsules.receptive_fields.astype(np.float64)  # (rows, cols, 4)
        centre_y = (fields[..., 0] + fields[..., 2]) / 2
        centre_x = (fields[..., 1] + fields[..., 3]) / 2
        distance = (centre_y - point.y()) ** 2 + (centre_x - point.x()) ** 2
        row, col = np.unravel_index(int(np.argmin(distance)), distance.shape)
        self.select_location(int(row), int(col))

    @Slot(object)
    def _draw_selection(self, children) -> None:
        """Outline the selected primary capsules on the mosaic and in the vote cloud."""
        self.cloud_view.set_selection(children)
        shown = self.panels.currentWidget() in (self.decoder_view, self.cloud_view)
        if self.capsules is None or not children or not shown \
                or len(children) >= self.capsules.primary_lengths.size:  # all: nothing to mark
            self.selection_marks.setData([], [])
            return
        grid = self.capsules.primary_lengths.shape
        xs, ys = [], []
        for i in children:
            grid_map, rest = divmod(int(i), grid[1] * grid[2])
            row, col = divmod(rest, grid[2])
            y, x = tile_origin(grid_map, grid)
            xs.append(x + col + 0.5)
            ys.append(y + row + 0.5)
        self.selection_marks.setData(xs, ys)

    def selected_parts(self) -> tuple[int, ...]:
        return self.decoder_view.children

    def _draw_history(self, capsules: CapsuleInspection, r: int, j: int) -> None:
        self.iteration_line.setPos(r)
        if self._history_of == (id(capsules), j):  # the same curves: only the marker moved
            return
        self._history_of = (id(capsules), j)
        lengths = np.stack([s.parent_lengths for s in capsules.iterations])  # (R, 10)
        steps = np.arange(1, len(lengths) + 1)
        for k, (curve, text) in enumerate(zip(self.history_curves, self.history_labels)):
            colour = class_colour(k)
            curve.setData(steps, lengths[:, k])
            curve.setPen(pg.mkPen(colour, width=3.5 if k == j else 1.2))
            curve.setZValue(1 if k == j else 0)
            # named at the end of the curve: the chosen capsule and any that stands out (the
            # short ones would pile up near 0)
            shown = k == j or lengths[-1, k] >= 0.2
            text.setText(capsules.class_names[k] if shown else "")
            text.setPos(steps[-1] + 0.08, float(lengths[-1, k]))
        plot = self.history.getPlotItem()
        plot.setXRange(0.8, len(steps) + 0.5, padding=0)
        # room above the longest curve for its name, which is centred on the curve's end
        plot.setYRange(0, max(0.1, float(lengths.max()) * 1.3), padding=0)
        plot.getAxis("bottom").setTicks([[(int(s), str(int(s))) for s in steps]])

    def _draw_parts(self, capsules: CapsuleInspection, r: int, j: int) -> None:
        self.overlay.set_image(capsules.image)
        set_image(self.part_map_item, capsules.part_map(j, r - 1), (0.0, 1.0))
        self.part_map_item.setVisible(True)
        name = capsules.class_names[j]
        self.overlay.title.setText(f"Support of {name} · r = {r}")
        self.finding = strongest_part(capsules, j, r - 1)
        w = ROUTING_TERMS[self._routing].symbol
        self.finding_text.setText(rich(describe_strongest(self.finding, capsules.class_names,
                                                          w[0])))
        lines = [f"<b>Strongest parts</b><br>support {rich(w + '‖û_{j|i}‖')}; click to decode"]
        parts = capsules.strongest_parts(j, len(self.part_boxes), r - 1)
        grid = capsules.primary_lengths.shape
        for rank, (box, text) in enumerate(zip(self.part_boxes, self.part_labels)):
            if rank >= len(parts):
                box.setVisible(False)
                text.setText("")
                continue
            grid_map, row, col, value = parts[rank]
            top, left, bottom, right = (int(v) for v in capsules.receptive_fields[row, col])
            inset = 0.3 * rank  # coincident receptive fields stay distinguishable
            box.setRect(left + inset, top + inset, right - left - 2 * inset, bottom - top - 2 * inset)
            box.setVisible(True)
            text.setText(str(rank + 1))
            text.setPos(left + inset, top + inset)
            index = (grid_map * grid[1] + row) * grid[2] + col
            lines.append(f"<span style='color:{PART_COLOURS[rank]}'>■</span> {rank + 1}. "
                         f"<a href='part:{index}'>map {grid_map}, row {row}, col {col}</a>: "
                         f"{value:.3g}")
        self.parts_text.setText("<br>".join(lines))

    @Slot(str)
    def _part_link(self, link: str) -> None:
        """A strongest part clicked in the text: decode its vote."""
        if link.startswith("part:"):
            self.select_parts((int(link.split(":", 1)[1]),))

    @Slot(object)
    def _hover_cell(self, cell) -> None:
        """Frame the receptive field of the grid cell under the mouse on the input."""
        frame_field(self.hover_box, cell,
                    self.capsules.receptive_fields if self.capsules is not None else None)

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._restyle()

    def _restyle(self) -> None:
        """Icons in the current palette's colours; the grid's colour map for its background."""
        palette = self.palette()
        for button, kind in ((self.first_button, "first"), (self.previous_button, "previous"),
                             (self.next_button, "next"), (self.last_button, "last")):
            button.setIcon(step_icon(kind, palette))
        self._sync_play_button()
        if self._on_screen() is not None:
            self._redraw()

    def _sync_stepper(self) -> None:
        count, r = self.iteration_count, self._iteration
        self.slider.blockSignals(True)
        self.slider.setRange(1, count)
        self.slider.setValue(r)
        self.slider.blockSignals(False)
        self.iterations_spin.blockSignals(True)
        self.iterations_spin.setValue(count)
        self.iterations_spin.blockSignals(False)
        self.iteration_label.setText(f"iteration {r} of {count}")
        loaded = self._on_screen() is not None
        self.first_button.setEnabled(loaded and r > 1)
        self.previous_button.setEnabled(loaded and r > 1)
        self.next_button.setEnabled(loaded and r < count)
        self.last_button.setEnabled(loaded and r < count)
        for k, button in enumerate(self.digit_buttons):
            button.setChecked(k == self._digit)
        self._sync_play_button()

    def _sync_play_button(self) -> None:
        playing = self.play_timer.isActive()
        self.play_button.setText("Pause" if playing else "Play")
        self.play_button.setIcon(step_icon("pause" if playing else "play", self.palette()))
        self.play_button.setEnabled(self._on_screen() is not None and self.iteration_count > 1)

    def _set_controls_enabled(self, enabled: bool) -> None:
        for widget in (self.slider, self.map_combo, *self.digit_buttons):
            widget.setEnabled(enabled)

    def _clear(self, message: str = "No CapsNet analysis yet") -> None:
        self._couplings = self._shown = None
        self._iteration = 1
        self._sync_stepper()
        self._set_controls_enabled(False)
        self.mosaic.show_message(message)
        self.em_panel.show_message(message)
        self.length_bars.show_message(message)
        self.share_bars.show_message(message)
        self._history_of = None
        for curve in self.history_curves:
            curve.setData([], [])
        for text in self.history_labels:
            text.setText("")
        self.overlay.show_message(message)
        self.part_map_item.clear()
        for box, text in zip(self.part_boxes, self.part_labels):
            box.setVisible(False)
            text.setText("")
        self.parts_text.setText("")
        self.finding_text.setText("")
        self.finding = None
        self.hover_box.setVisible(False)
        self.diagnostics_view.show_diagnostics(None)
        self.cloud_view.show_cloud(None)
        self.decoder_view.set_context(None)
        self.selection_marks.setData([], [])
        if self._state is not None and self._state.ablation.ready:
            # the ablation depends on the image and the models only: another R keeps it
            self._render_ablation(self._state.ablation)
        else:
            self.ablation_view.show_ablation(None)

    # -- export ---------------------------------------------------------------------------
    def export_tables(self) -> dict[str, Table]:
        if self._em_mode:
            return self.em_panel.tables(self._iteration)
        if self.capsules is None:
            return {}
        capsules, r = self.capsules, self._iteration
        snapshot = capsules.iterations[r - 1]
        digits = range(snapshot.couplings.shape[-1])
        terms = ROUTING_TERMS[self._routing]
        weight, logit = terms.symbol[0], (terms.logits[1] if terms.logits else "b_ij")[0]
        header = (["map", "row", "col"] + [f"{weight}_{j}" for j in digits]
                  + [f"{logit}_{j}" for j in digits] + [f"agreement_{j}" for j in digits])
        rows = [
            [*index, *map(float, snapshot.couplings[index]), *map(float, snapshot.logits[index]),
             *map(float, snapshot.agreement[index])]
            for index in np.ndindex(snapshot.couplings.shape[:3])
        ]
        lengths = [[s + 1, *map(float, snapshot_lengths)]
                   for s, snapshot_lengths in enumerate(x.parent_lengths for x in capsules.iterations)]
        names = capsules.class_names
        return {
            f"iteration-{r}": (header, rows),
            "parent-lengths": (["iteration"] + [f"length_{names[j]}" for j in digits], lengths),
        }

    def export_scenes(self) -> dict[str, pg.GraphicsItem]:
        if self._em_mode:
            return self.em_panel.scenes()
        return {
            "mosaic": self.mosaic.plot,
            "parent-lengths": self.length_bars.getPlotItem(),
            "length-history": self.history.getPlotItem(),
            "mean-couplings": self.share_bars.getPlotItem(),
        }

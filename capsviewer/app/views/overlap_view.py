"""Overlap: two MNIST test digits overlaid as in MultiMNIST (Sabour et al. 2017, Section 6) and
what a CapsNet trained on such pairs makes of them: the two longest digit capsules, each one's
reconstruction in its own colour over the input (the paper's Fig. 5), and the routing map
colouring every primary capsule by which of the two winners it couples to more, iteration by
iteration (routing's part assignment made visible). Pose sliders move either winner."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
import pyqtgraph as pg  # after PySide6
from superqt import QLabeledDoubleSlider, QLabeledSlider
from superqt.utils import signals_blocked

from capsviewer.analysis.overlap import PairChoice, PairInspection
from capsviewer.app.overlap_session import NO_PAIR_MODEL
from capsviewer.app.state import DEFAULT_POSE_RANGE, POSE_DIMENSIONS
from capsviewer.app.views.common import (
    FORMULAS,
    ExportableView,
    Table,
    headline_label,
    lut,
    set_image,
)
from capsviewer.app.views.grid_mosaic import MosaicPanel
from capsviewer.app.views.prediction_view import ClassBars, ImagePanel
from capsviewer.data.multimnist import IMAGE_SIZE

# Diverging, grey in the middle, blue and orange at the ends (colour-blind safe): a_i = 1, all
# of primary capsule i's coupling to the two winners goes to A, the longest; 0, all to B.
ASSIGNMENT_MAP = "CET-D11"
_ENDS = pg.colormap.get(ASSIGNMENT_MAP).map(np.array([1.0, 0.0]), mode="float")[:, :3]
COLOURS = {"A": _ENDS[0], "B": _ENDS[1]}  # RGB in [0, 1]
INPUT_DIM = 0.35  # the input under the coloured reconstructions (Fig. 5)

ASSIGNMENT_TIP = (
    "a_i = c_iA / (c_iA + c_iB): how primary capsule i divides its coupling between the\n"
    "two longest digit capsules A and B at routing iteration r (orange: A, blue: B).\n"
    "Iteration 1 is uniform (grey); agreement û_{j|i}·v_j moves the couplings after it.\n"
    + FORMULAS["coupling"] + "\n" + FORMULAS["routing"]
)
FIG5_TIP = ("The paper's Fig. 5: each winner's reconstruction in its own colour (A orange, "
            "B blue) over the dimmed input;\nwhere both draw, the colours add up.\n"
            + FORMULAS["reconstruction"])


def tint(image: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """(H, W) intensities in [0, 1] as an RGB image (H, W, 3) of ``colour``."""
    return image[..., None] * colour


def fig5_composite(image: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """The input dimmed in grey plus reconstruction A in orange and B in blue, clipped."""
    grey = INPUT_DIM * image[..., None]
    return np.clip(grey + tint(reconstructions[0], COLOURS["A"])
                   + tint(reconstructions[1], COLOURS["B"]), 0.0, 1.0)


def assignment_levels(spread: float | None) -> tuple[float, float]:
    """The colour scale of a_i: 0 to 1, or stretched to ½ ± ``spread`` (at least ±0.001)."""
    if spread is None:
        return 0.0, 1.0
    spread = min(max(spread, 1e-3), 0.5)
    return 0.5 - spread, 0.5 + spread


def assignment_ink(image: np.ndarray, locations: np.ndarray,
                   levels: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """The input's ink (H, W) coloured by the assignment at the nearest primary-grid location
    (rows, cols), on the colour scale ``levels``: grid cell (row, col) sees input rows 2·row …
    2·row + 16, centred on 2·row + 8, so pixel y takes row (y − 7) // 2, clipped to the grid.
    RGB (H, W, 3)."""
    rows = np.clip((np.arange(image.shape[0]) - 7) // 2, 0, locations.shape[0] - 1)
    cols = np.clip((np.arange(image.shape[1]) - 7) // 2, 0, locations.shape[1] - 1)
    table = lut(ASSIGNMENT_MAP)[:, :3] / 255.0
    low, high = levels
    scaled = (locations[rows[:, None], cols[None, :]] - low) / (high - low)
    index = np.clip(np.rint(scaled * 255), 0, 255).astype(int)
    return image[..., None] * table[index]


def _panel(title: str, tip: str) -> ImagePanel:
    """A 36×36 image panel (RGB when given (H, W, 3))."""
    panel = ImagePanel(title)
    panel.view.setRange(xRange=(0, IMAGE_SIZE), yRange=(0, IMAGE_SIZE), padding=0.02)
    panel.placeholder.setPos(IMAGE_SIZE / 2, IMAGE_SIZE / 2)
    panel.setToolTip(tip)
    panel.setMinimumSize(120, 130)
    return panel


NOT_A_TEST_PAIR = -1  # the pair spin box's value for a pair not of the fixed test set


class OverlapView(QWidget, ExportableView):
    """Bound to the app state (:meth:`bind`): renders ``state.overlap`` for ``state.pair`` and
    writes the user's choices (pair, R, which winner the sliders move, the offsets) into it."""

    export_name = "overlap"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._state = None
        self.inspection: PairInspection | None = None
        self.iteration = -1  # the routing iteration shown (index into the trace)

        self.pair_spin = QSpinBox()
        self.pair_spin.setRange(NOT_A_TEST_PAIR, 9_999)
        self.pair_spin.setPrefix("test pair ")
        self.pair_spin.setSpecialValueText("other pair")  # a random or chosen pair
        self.pair_spin.setToolTip("Pair n of the fixed MultiMNIST test set (seed 2017): test "
                                  "digit n with a partner of another class, both shifted ≤ 4 px")
        self.pair_spin.valueChanged.connect(self._test_pair_chosen)
        self.first_spin, self.second_spin = QSpinBox(), QSpinBox()
        for spin, which in ((self.first_spin, "first"), (self.second_spin, "second")):
            spin.setRange(0, 9_999)
            spin.setToolTip(f"The {which} digit: an index into the MNIST test set")
            spin.valueChanged.connect(self._digits_chosen)
        self.random_button = QPushButton("Random pair")
        self.random_button.setToolTip("A random test digit, a random partner of another class, "
                                      "random shifts of up to 4 px each")
        self.random_button.clicked.connect(self.random_pair)
        self.current_button = QPushButton("Current input + another")
        self.current_button.setToolTip("The test image shown in the Input panel with a random "
                                       "partner of another class")
        self.current_button.clicked.connect(self.pair_current_input)
        self.iterations_spin = QSpinBox()
        self.iterations_spin.setRange(1, 10)
        self.iterations_spin.setPrefix("R = ")
        self.iterations_spin.setToolTip("Routing iterations (the same R as the Routing tab)\n"
                                        + FORMULAS["routing"])
        self.iterations_spin.valueChanged.connect(self._iterations_chosen)
        controls = QHBoxLayout()
        for widget in (self.pair_spin, QLabel("digits"), self.first_spin, QLabel("+"),
                       self.second_spin, self.random_button, self.current_button):
            controls.addWidget(widget)
        controls.addStretch(1)
        controls.addWidget(self.iterations_spin)

        self.headline = headline_label("No pair yet", 1.15)
        self.message = QLabel(NO_PAIR_MODEL)
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.input_panel = _panel("Input (36×36)", "The two digits overlaid: the MultiMNIST input")
        self.fig5_panel = _panel("A and B over the input", FIG5_TIP)
        self.a_panel = _panel("Capsule A", "Reconstruction from the longest capsule's pose")
        self.b_panel = _panel("Capsule B", "Reconstruction from the second longest's pose")
        self.routing_panel = _panel("Routing on the ink", ASSIGNMENT_TIP + "\nHere the ink "
                                    "is coloured by a_i averaged over the 32 maps at the "
                                    "nearest grid location, weighted by ‖u_i‖")
        for panel in (self.fig5_panel, self.a_panel, self.b_panel, self.routing_panel):
            panel.item.setLookupTable(None)  # RGB
        images = QHBoxLayout()
        for panel in (self.input_panel, self.fig5_panel, self.a_panel, self.b_panel,
                      self.routing_panel):
            images.addWidget(panel, 1)

        self.length_bars = ClassBars("Digit capsules ‖v_j‖ (A, B: longest)", "‖v_j‖",
                                     margins=True)
        self.length_bars.setToolTip(FORMULAS["squash"] + "\nBands: the pair's two labels")
        self.mosaic = MosaicPanel("Routing: a_i = c_iA / (c_iA + c_iB)", "a_i",
                                  colormap=ASSIGNMENT_MAP, levels=(0.0, 1.0), grid=(32, 10, 10))
        self.mosaic.setToolTip(ASSIGNMENT_TIP)
        self.iteration_slider = QLabeledSlider(Qt.Orientation.Horizontal)
        self.iteration_slider.setRange(1, 3)
        self.iteration_slider.setToolTip("Routing iteration r shown by the maps")
        self.iteration_slider.valueChanged.connect(self.set_iteration)
        self.stretch_box = QCheckBox("Stretch colours")
        self.stretch_box.setChecked(True)
        self.stretch_box.setToolTip(
            "A trained CapsNet's couplings move little from uniform (a_i stays near ½): stretch "
            "the colour scale to ½ ± the largest |a_i − ½| of this pair over all iterations (the "
            "colour bar and the panel titles give the range). Off: the full 0 to 1.")
        self.stretch_box.toggled.connect(lambda _: self.inspection is not None
                                         and self._draw_routing())
        routing = QWidget()
        routing_layout = QVBoxLayout(routing)
        routing_layout.setContentsMargins(0, 0, 0, 0)
        routing_layout.addWidget(self.mosaic, 1)
        stepper = QHBoxLayout()
        stepper.addWidget(QLabel("iteration r"))
        stepper.addWidget(self.iteration_slider, 1)
        stepper.addWidget(self.stretch_box)
        routing_layout.addLayout(stepper)
        middle = QSplitter(Qt.Orientation.Horizontal)
        middle.addWidget(self.length_bars)
        middle.addWidget(routing)
        middle.setStretchFactor(0, 2)
        middle.setStretchFactor(1, 3)

        self.capsule_combo = QComboBox()
        self.capsule_combo.addItems(["A (longest)", "B (second)"])
        self.capsule_combo.setToolTip("Which winner's pose the sliders offset")
        self.capsule_combo.currentIndexChanged.connect(self._capsule_chosen)
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("All offsets back to 0: the capsule's own pose")
        self.reset_button.clicked.connect(self.reset_pose)
        self.sliders: list[QLabeledDoubleSlider] = []
        sliders = QGridLayout()
        sliders.setVerticalSpacing(1)
        sliders.addWidget(QLabel("Pose of"), 0, 0)
        sliders.addWidget(self.capsule_combo, 0, 1)
        sliders.addWidget(self.reset_button, 0, 3)
        for k in range(POSE_DIMENSIONS):
            slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            slider.setRange(-DEFAULT_POSE_RANGE, DEFAULT_POSE_RANGE)
            slider.setDecimals(3)
            slider.setValue(0.0)
            slider.setToolTip(f"Offset added to dimension {k} of the winner's pose v_j before "
                              "decoding\n" + FORMULAS["reconstruction"])
            slider.valueChanged.connect(self._offsets_moved)
            row, col = 1 + k // 4, 2 * (k % 4)
            sliders.addWidget(QLabel(f"dim {k}"), row, col)
            sliders.addWidget(slider, row, col + 1)
            self.sliders.append(slider)
        pose = QWidget()
        pose.setLayout(sliders)

        self.body = QSplitter(Qt.Orientation.Vertical)
        upper = QWidget()
        upper.setLayout(images)
        for part in (upper, middle, pose):
            self.body.addWidget(part)
        self.body.setStretchFactor(0, 3)
        self.body.setStretchFactor(1, 3)
        self.body.setStretchFactor(2, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(self.headline)
        # The body keeps its room while the message shows: the tab's minimum size stays the
        # same when the pair model arrives, so the window never widens under the user.
        policy = self.body.sizePolicy()
        policy.setRetainSizeWhenHidden(True)
        self.body.setSizePolicy(policy)
        layout.addWidget(self.message)
        layout.addWidget(self.body, 1)
        self.show_inspection(None)

    # -- state ------------------------------------------------------------------------------------
    def bind(self, state) -> None:
        self._state = state
        events = state.events
        for event in (events.overlap, events.pair_model, events.pair_digits, events.pair):
            event.connect(self._render)
        events.overlap_reconstruction.connect(self._render_reconstructions)
        for event in (events.pair_capsule, events.pair_pose_offsets):
            event.connect(self._render_pose)
        events.iterations.connect(self._render_iterations)
        events.image.connect(self._render_controls)
        self._render_iterations()
        self._render()

    @Slot()
    def _render(self, *_) -> None:
        state = self._state
        self.message.setVisible(state.pair_model is None)
        self.body.setVisible(state.pair_model is not None)
        self._render_controls()
        result = state.overlap
        if state.pair_model is None:
            self.headline.setText("Overlap needs a MultiMNIST CapsNet")
            self.show_inspection(None)
        elif state.pair_digits is None or state.pair is None:
            self.headline.setText("Loading the MNIST test digits…")
            self.show_inspection(None, "loading…")
        elif result.ready:
            self.show_inspection(result.value)
        elif result.error:
            self.headline.setText(f"Failed: {result.error}")
            self.show_inspection(None, "failed")
        else:
            r = state.iterations or state.pair_model.model.config.routing_iterations
            self.headline.setText(f"{state.pair.describe()}: computing (R = {r})…")
            self.show_inspection(None, "computing…")
        self._render_pose()

    def _render_controls(self, *_) -> None:
        state = self._state
        digits, pair = state.pair_digits, state.pair
        usable = digits is not None and state.pair_model is not None
        for widget in (self.pair_spin, self.first_spin, self.second_spin, self.random_button):
            widget.setEnabled(usable)
        image = state.image
        self.current_button.setEnabled(usable and image is not None and image.index is not None
                                       and state.dataset == digits.name)
        if digits is not None:
            with signals_blocked(self.pair_spin):
                self.pair_spin.setMaximum(len(digits) - 1)
            for spin in (self.first_spin, self.second_spin):
                with signals_blocked(spin):
                    spin.setMaximum(len(digits) - 1)
        if pair is not None:
            for spin, value in ((self.first_spin, pair.first), (self.second_spin, pair.second)):
                with signals_blocked(spin):
                    spin.setValue(value)
            with signals_blocked(self.pair_spin):  # a random pair is no test pair
                self.pair_spin.setValue(NOT_A_TEST_PAIR if pair.test_pair is None
                                        else pair.test_pair)

    def _render_iterations(self, *_) -> None:
        state = self._state
        model = state.pair_model
        value = state.iterations or (model.model.config.routing_iterations if model else 3)
        with signals_blocked(self.iterations_spin):
            self.iterations_spin.setValue(value)

    def _render_pose(self, *_) -> None:
        state = self._state
        with signals_blocked(self.capsule_combo):
            self.capsule_combo.setCurrentIndex(state.pair_capsule)
        for slider, value in zip(self.sliders, state.pair_pose_offsets):
            with signals_blocked(slider):
                slider.setValue(value)
        self._render_reconstructions()

    # -- drawing ----------------------------------------------------------------------------------
    def show_inspection(self, inspection: PairInspection | None, message: str = "") -> None:
        self.inspection = inspection
        if inspection is None:
            for panel in (self.input_panel, self.fig5_panel, self.a_panel, self.b_panel,
                          self.routing_panel):
                panel.show_message(message)
            self.length_bars.show_message(message)
            self.mosaic.show_message(message)
            return
        count = len(inspection.capsules.iterations)
        with signals_blocked(self.iteration_slider):
            self.iteration_slider.setRange(1, count)
            self.iteration = min(self.iteration, count - 1) if self.iteration >= 0 else count - 1
            self.iteration_slider.setValue(self.iteration + 1)
        self.headline.setText(self._headline(inspection))
        self.input_panel.set_image(inspection.image)
        a, b = inspection.winners
        lengths = inspection.capsules.lengths
        self.length_bars.set_values(lengths)
        brushes = [pg.mkBrush(*(255 * COLOURS["A"] if k == a else 255 * COLOURS["B"] if k == b
                                else (150, 150, 150))) for k in range(len(lengths))]
        self.length_bars.bars.setOpts(brushes=brushes)
        self.length_bars.truth.setOpts(x=list(inspection.labels), height=[1.0, 1.0])
        self.length_bars.truth.setVisible(True)
        self._draw_routing()
        self._render_reconstructions()

    def _headline(self, inspection: PairInspection) -> str:
        a, b = inspection.winners
        lengths = inspection.capsules.lengths
        verdict = "both found" if inspection.correct else "not both found"
        return (f"{inspection.pair.describe()} · labels {inspection.labels[0]} + "
                f"{inspection.labels[1]} · longest capsules A = {a} (‖v‖ {lengths[a]:.2f}), "
                f"B = {b} ({lengths[b]:.2f}) · {verdict} · R = "
                f"{len(inspection.capsules.iterations)}")

    def reconstructions(self) -> np.ndarray | None:
        """Both winners' reconstructions as drawn: the moved one from its offset pose (the
        last one decoded while a slider moves on)."""
        inspection, state = self.inspection, self._state
        if inspection is None:
            return None
        images = inspection.reconstructions.copy()
        if state is not None and state.overlap_reconstruction.value is not None:
            images[state.pair_capsule] = state.overlap_reconstruction.value
        return images

    @Slot()
    def _render_reconstructions(self, *_) -> None:
        images = self.reconstructions()
        if images is None:
            return
        a, b = self.inspection.winners
        self.a_panel.title.setText(f"Capsule A: {a}")
        self.b_panel.title.setText(f"Capsule B: {b}")
        set_image(self.a_panel.item, tint(images[0], COLOURS["A"]), (0.0, 1.0))
        set_image(self.b_panel.item, tint(images[1], COLOURS["B"]), (0.0, 1.0))
        set_image(self.fig5_panel.item, fig5_composite(self.inspection.image, images), (0.0, 1.0))
        for panel in (self.a_panel, self.b_panel, self.fig5_panel):
            panel.placeholder.setText("")

    def _draw_routing(self) -> None:
        inspection, r = self.inspection, self.iteration
        stretch = self.stretch_box.isChecked()
        levels = assignment_levels(inspection.assignment_spread() if stretch else None)
        self.mosaic.set_values(inspection.assignment(r), levels=levels,
                               title=f"Routing, iteration {r + 1}: a_i = c_iA / (c_iA + c_iB)"
                               + (f", colours ½ ± {levels[1] - 0.5:.3f}" if stretch else ""))
        ink_levels = assignment_levels(inspection.assignment_spread(True) if stretch else None)
        self.routing_panel.set_image(assignment_ink(inspection.image,
                                                    inspection.location_assignment(r), ink_levels))
        self.routing_panel.title.setText(f"Routing on the ink, r = {r + 1}"
                                         + (f"<br>colours ½ ± {ink_levels[1] - 0.5:.3f}"
                                            if stretch else ""))

    # -- user choices -----------------------------------------------------------------------------
    @Slot(int)
    def set_iteration(self, r: int) -> None:
        """Show routing iteration ``r`` (1-based)."""
        self.iteration = int(r) - 1
        with signals_blocked(self.iteration_slider):
            self.iteration_slider.setValue(r)
        if self.inspection is not None:
            self._draw_routing()

    def _test_pair_chosen(self, index: int) -> None:
        digits = self._state.pair_digits
        if digits is not None and index != NOT_A_TEST_PAIR:
            self._state.choose_pair(PairChoice.from_test_set(digits, index))

    def _digits_chosen(self, *_) -> None:
        pair = self._state.pair
        if pair is not None:
            self._state.choose_pair(pair.with_digits(self.first_spin.value(),
                                                     self.second_spin.value()))

    @Slot()
    def random_pair(self) -> None:
        digits = self._state.pair_digits
        if digits is not None:
            self._state.choose_pair(PairChoice.random(digits))

    @Slot()
    def pair_current_input(self) -> None:
        state = self._state
        if state.image is None or state.image.index is None or state.pair_digits is None:
            return
        state.choose_pair(PairChoice.with_partner(state.pair_digits, state.image.index))

    def _iterations_chosen(self, value: int) -> None:
        self._state.iterations = int(value)

    def _capsule_chosen(self, index: int) -> None:
        self._state.select_pair_capsule(index)

    def _offsets_moved(self, *_) -> None:
        self._state.pair_pose_offsets = tuple(float(s.value()) for s in self.sliders)

    @Slot()
    def reset_pose(self) -> None:
        self._state.pair_pose_offsets = (0.0,) * POSE_DIMENSIONS

    # -- export -----------------------------------------------------------------------------------
    def export_tables(self) -> dict[str, Table]:
        inspection = self.inspection
        if inspection is None:
            return {}
        pair = inspection.pair
        a, b = inspection.winners
        lengths = inspection.capsules.lengths
        tables: dict[str, Table] = {
            "pair": (["first", "second", "first_label", "second_label", "first_dy", "first_dx",
                      "second_dy", "second_dx", "test_pair", "capsule_a", "capsule_b",
                      "both_found"],
                     [[pair.first, pair.second, *inspection.labels, *pair.shifts[0],
                       *pair.shifts[1], "" if pair.test_pair is None else pair.test_pair,
                       a, b, int(inspection.correct)]]),
            "capsules": (["class", "length", "winner", "label"],
                         [[k, float(lengths[k]), "A" if k == a else "B" if k == b else "",
                           int(k in inspection.labels)] for k in range(len(lengths))]),
        }
        rows = []
        primary = inspection.capsules.primary_lengths
        for r, step in enumerate(inspection.capsules.iterations):
            share = inspection.assignment(r)
            for (m, y, x), value in np.ndenumerate(share):
                rows.append([r + 1, m, y, x, float(primary[m, y, x]),
                             float(step.couplings[m, y, x, a]), float(step.couplings[m, y, x, b]),
                             float(value)])
        tables["routing"] = (["iteration", "map", "row", "col", "primary_length", "c_a", "c_b",
                              "a_share"], rows)
        images = self.reconstructions()
        pixels = np.stack([inspection.image, *inspection.digits, *images]).reshape(5, -1)
        size = inspection.image.shape[1]
        tables["images"] = (["y", "x", "overlay", "first_alone", "second_alone",
                             "reconstruction_a", "reconstruction_b"],
                            [[i // size, i % size, *map(float, pixels[:, i])]
                             for i in range(pixels.shape[1])])
        return tables

    def export_scenes(self) -> dict[str, pg.GraphicsItem]:
        return {
            "input": self.input_panel.ci,
            "reconstructions": self.fig5_panel.ci,
            "capsule_a": self.a_panel.ci,
            "capsule_b": self.b_panel.ci,
            "routing_over_input": self.routing_panel.ci,
            "lengths": self.length_bars.getPlotItem(),
            "routing": self.mosaic.plot,
        }

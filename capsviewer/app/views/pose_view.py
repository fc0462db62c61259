"""Pose sliders: offset each of the 16 dimensions of one digit capsule's pose and see what the
decoder draws (Sabour et al. 2017, Fig. 4), plus the whole Fig. 4 grid at once."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
import pyqtgraph as pg  # after PySide6
from superqt import QLabeledDoubleSlider
from superqt.utils import signals_blocked

from capsviewer.app.views.common import (
    FORMULAS,
    ExportableView,
    Table,
    image_box,
    image_item,
    set_image,
)
from capsviewer.app.views.grid_mosaic import mosaic
from capsviewer.data.transforms import to_float

POSE_DIMENSIONS = 16
GRID_COLUMNS = 11  # offsets −R, …, +R in 10 steps (0.05 apart for the paper's R = 0.25)
_GAP = 1  # pixels between tiles of the Fig. 4 mosaic

DIMENSION_TIP = (
    "Pose dimension {k}: entry {k} of the 16-D activity vector v_j of digit capsule j.\n"
    "The slider adds an offset to v_j[{k}] before decoding; every other capsule is masked to 0.\n"
    "Sabour et al. found dimensions that encode stroke thickness, skew, width, scale and\n"
    "position; which dimension does what differs between trained models."
)
RECONSTRUCTION_TIP = (
    "Reconstruction from the offset pose.\n" + FORMULAS["reconstruction"]
)


def image_mosaic(grid: np.ndarray, gap: int = _GAP) -> np.ndarray:
    """Tile images (rows, cols, H, W) into one image; gaps are NaN (drawn transparent)."""
    rows, cols, height, width = grid.shape
    return mosaic(grid.reshape(rows * cols, height, width), columns=cols, gap=gap)


class PoseView(QWidget, ExportableView):
    """Sixteen sliders offset a digit capsule's pose; the controller decodes and calls back."""

    pose_changed = Signal(object)  # (digit, pose + offsets as float32 (16,))
    capsule_selected = Signal(int)  # the user picked another digit capsule
    grid_requested = Signal(object)  # (digit, pose + offsets, offsets of the grid columns (K,))
    export_name = "pose"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._digit: int | None = None
        self._pose: np.ndarray | None = None  # the capsule's own pose; sliders offset it
        self._grid_offsets: np.ndarray | None = None

        self.capsule_combo = QComboBox()
        self.capsule_combo.setToolTip("Digit capsule whose pose the sliders offset "
                                      "(the longest capsule, the prediction, by default)")
        self.capsule_combo.currentIndexChanged.connect(self._on_capsule_chosen)
        self.range_spin = QDoubleSpinBox()
        self.range_spin.setRange(0.05, 5.0)
        self.range_spin.setSingleStep(0.05)
        self.range_spin.setDecimals(2)
        self.range_spin.setPrefix("± ")
        self.range_spin.setValue(0.25)
        self.range_spin.setToolTip("Slider range R: offsets in [−R, R]. The paper tweaks each "
                                   "dimension by steps of 0.05 in [−0.25, 0.25].")
        self.range_spin.valueChanged.connect(self._on_range_changed)
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("All offsets back to 0: the capsule's own pose")
        self.reset_button.clicked.connect(self.reset)

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Capsule"))
        controls.addWidget(self.capsule_combo, 1)
        controls.addWidget(QLabel("Range"))
        controls.addWidget(self.range_spin)
        controls.addWidget(self.reset_button)

        self.sliders: list[QLabeledDoubleSlider] = []
        slider_grid = QGridLayout()
        slider_grid.setVerticalSpacing(2)
        half = POSE_DIMENSIONS // 2
        for k in range(POSE_DIMENSIONS):
            slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            slider.setDecimals(3)
            slider.setValue(0.0)
            tip = DIMENSION_TIP.format(k=k)
            slider.setToolTip(tip)
            slider.valueChanged.connect(self._emit_pose)
            label = QLabel(f"dim {k}")
            label.setToolTip(tip)
            row, col = k % half, 2 * (k // half)
            slider_grid.addWidget(label, row, col)
            slider_grid.addWidget(slider, row, col + 1)
            self.sliders.append(slider)
        self._apply_range(self.range_spin.value())

        # Reconstruction (big) beside the input (small), under the sliders.
        self.reconstruction_item = image_item()
        self.reconstruction_box = image_box(self.reconstruction_item, RECONSTRUCTION_TIP)
        self.reconstruction_box.setFixedSize(240, 240)
        self.input_item = image_item()
        self.input_box = image_box(self.input_item, "The input image, for comparison")
        self.input_box.setFixedSize(96, 96)
        self.caption = QLabel("No capsule selected")
        self.caption.setWordWrap(True)
        self.caption.setToolTip(RECONSTRUCTION_TIP)
        images = QGridLayout()
        images.addWidget(QLabel("Reconstruction"), 0, 0)
        images.addWidget(QLabel("Input"), 0, 1)
        images.addWidget(self.reconstruction_box, 1, 0)
        images.addWidget(self.input_box, 1, 1, Qt.AlignmentFlag.AlignTop)
        images.setColumnStretch(2, 1)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addLayout(controls)
        left_layout.addLayout(slider_grid)
        left_layout.addWidget(self.caption)
        left_layout.addLayout(images)
        left_layout.addStretch(1)

        # Fig. 4: every dimension × every offset in one mosaic.
        self.grid_button = QPushButton("Perturbation grid")
        self.grid_button.setToolTip(
            "Sabour et al. Fig. 4: decode the current pose with each dimension (rows) offset by\n"
            "each of 11 values in [−R, R] (columns). One decoder call.\n" + FORMULAS["reconstruction"]
        )
        self.grid_button.clicked.connect(self._request_grid)
        self.grid_widget = pg.GraphicsLayoutWidget()
        self.grid_plot: pg.PlotItem = self.grid_widget.addPlot()
        self.grid_plot.invertY(True)
        self.grid_plot.setAspectLocked(True)
        self.grid_plot.setMenuEnabled(False)
        self.grid_plot.setMouseEnabled(False, False)
        self.grid_plot.hideButtons()
        self.grid_plot.setLabel("bottom", "offset added to the dimension")
        self.grid_plot.setLabel("left", "pose dimension")
        self.grid_item = image_item()
        self.grid_plot.addItem(self.grid_item)
        self.grid_plot.getAxis("left").setTicks(
            [[(d, str(d)) for d in range(POSE_DIMENSIONS)]])
        # Before a grid: the frame it will fill (16 dimensions × 11 offsets) and what to press.
        self.grid_hint = pg.TextItem(anchor=(0.5, 0.5), color=pg.getConfigOption("foreground"))
        self.grid_hint.setPos((GRID_COLUMNS - 1) / 2, (POSE_DIMENSIONS - 1) / 2)
        self.grid_plot.addItem(self.grid_hint, ignoreBounds=True)
        grid_box = self.grid_box = QGroupBox("Fig. 4 grid")
        grid_layout = QVBoxLayout(grid_box)
        grid_layout.addWidget(self.grid_button)
        grid_layout.addWidget(self.grid_widget, 1)
        self.clear_grid()

        splitter = QSplitter(Qt.Orientation.Horizontal)
        for part in (left, grid_box):
            splitter.addWidget(part)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self._set_enabled(False)

    # -- bound to the app state ------------------------------------------------------------------
    def bind(self, state) -> None:
        """Draw ``state``'s capsule, offsets, reconstruction and grid; write the user's."""
        self._state = state
        self.pose_changed.connect(self._write_offsets)
        self.capsule_selected.connect(state.select_capsule)
        self.grid_requested.connect(lambda _: setattr(state, "grid_wanted", True))
        self.range_spin.valueChanged.connect(lambda bound: setattr(state, "pose_range", bound))
        events = state.events
        for event in (events.analysis, events.capsule, events.image):
            event.connect(self._render_capsule)
        events.pose_offsets.connect(self._render_offsets)
        events.pose_range.connect(lambda bound: self.range_spin.setValue(bound))
        events.reconstruction.connect(self._render_reconstruction)
        events.grid.connect(self._render_grid)
        self._render_capsule()
        self._render_grid()

    def _write_offsets(self, _request=None) -> None:
        self._state.pose_offsets = tuple(float(v) for v in self.offsets())

    def _render_capsule(self, *_) -> None:
        state = self._state
        inspection = state.inspection
        if inspection is None:
            self._digit = self._pose = None
            self._set_enabled(False)
            self.caption.setText("Computing…" if state.analysis.pending else
                                 "No input" if state.image is None else "No CapsNet loaded")
            self.reconstruction_item.clear()
            if state.image is None:
                self.input_item.clear()
            else:
                self.set_input_image(state.image.pixels)
            return
        j = state.selected_capsule
        with signals_blocked(self):  # drawing the state, not a choice of the user
            self.set_capsule(j, inspection.poses[j], inspection.class_names,
                             len(inspection.iterations))
        self.set_input_image(inspection.image)
        self._render_offsets()
        self._render_reconstruction()

    def _render_offsets(self, *_) -> None:
        self._set_offsets(np.asarray(self._state.pose_offsets))

    def _render_reconstruction(self, *_) -> None:
        result = self._state.reconstruction
        if result.value is not None:
            self.show_reconstruction(result.value)
        else:
            self.reconstruction_item.clear()

    def _render_grid(self, *_) -> None:
        state, result = self._state, self._state.grid
        if result.value is not None:
            self.show_grid(*result.value)
            name = state.class_names[state.selected_capsule]
            self.grid_box.setTitle(f"Fig. 4 grid: capsule {name} of {state.image.source}"
                                   + (" (computing…)" if result.pending else ""))
        else:
            self.clear_grid("Fig. 4 grid: computing…" if result.pending else "Fig. 4 grid")

    def clear_grid(self, title: str = "Fig. 4 grid") -> None:
        self._grid_offsets = None
        self.grid_item.clear()
        self.grid_box.setTitle(title)
        self.grid_hint.setText("computing…" if "computing" in title else
                               "Press “Perturbation grid” to decode every\n"
                               "pose dimension with 11 offsets (Fig. 4)")
        self.grid_plot.getAxis("bottom").setTicks([[]])
        self.grid_plot.setRange(xRange=(-0.5, GRID_COLUMNS - 0.5),
                                yRange=(-0.5, POSE_DIMENSIONS - 0.5), padding=0)

    # -- what the controller calls -----------------------------------------------------------
    def set_capsule(self, digit: int, pose: np.ndarray, class_names,
                    iterations: int | None = None) -> None:
        """Show capsule ``digit`` with its pose (16,); offsets go back to 0. Emits pose_changed
        once, so the one decode path (pose_changed → decoder → show_reconstruction) also draws
        the capsule's own reconstruction."""
        self._digit = int(digit)
        self._pose = np.asarray(pose, dtype=np.float32).copy()
        names = [str(name) for name in class_names]
        with signals_blocked(self.capsule_combo):
            if [self.capsule_combo.itemText(i) for i in range(self.capsule_combo.count())] != names:
                self.capsule_combo.clear()
                self.capsule_combo.addItems(names)
            self.capsule_combo.setCurrentIndex(self._digit)
        self._set_offsets(np.zeros(POSE_DIMENSIONS))
        self._set_enabled(True)
        routing = f" (R = {iterations})" if iterations is not None else ""
        self.caption.setText(
            f"Capsule {names[self._digit]}{routing}: ‖v‖ = {np.linalg.norm(self._pose):.3f}. "
            "Reconstruction from its pose plus the slider offsets.")
        self._emit_pose()

    @Slot(object)
    def show_reconstruction(self, image: np.ndarray) -> None:
        set_image(self.reconstruction_item, np.squeeze(np.asarray(image)), (0.0, 1.0))

    def set_input_image(self, image: np.ndarray) -> None:
        set_image(self.input_item, np.squeeze(to_float(image).numpy()), (0.0, 1.0))

    @Slot(object)
    def show_grid(self, grid: np.ndarray, offsets: np.ndarray) -> None:
        """Draw images (16, K, H, W): row d is dimension d, column k has offset offsets[k]."""
        grid = np.asarray(grid)
        dims, count, height, width = grid.shape
        self._grid_offsets = np.asarray(offsets, dtype=np.float64)
        set_image(self.grid_item, image_mosaic(grid), (0.0, 1.0))
        self.grid_hint.setText("")
        # One unit per tile, tile centres at integer (k, d).
        self.grid_item.setRect(-0.5, -0.5, (count * (width + _GAP) - _GAP) / (width + _GAP),
                               (dims * (height + _GAP) - _GAP) / (height + _GAP))
        labels = [(k, f"{o:+.2f}") for k, o in enumerate(self._grid_offsets)]
        self.grid_plot.getAxis("bottom").setTicks([labels[::2], labels[1::2]])  # major, minor
        self.grid_plot.getAxis("left").setTicks([[(d, str(d)) for d in range(dims)]])
        self.grid_plot.setRange(xRange=(-0.5, count - 0.5), yRange=(-0.5, dims - 0.5), padding=0)

    # -- state ------------------------------------------------------------------------------
    def offsets(self) -> np.ndarray:
        return np.array([slider.value() for slider in self.sliders], dtype=np.float32)

    def set_offset(self, dimension: int, value: float) -> None:
        """Move slider ``dimension`` (clamped to ±R); emits pose_changed like a drag."""
        self.sliders[dimension].setValue(float(value))

    def current_pose(self) -> np.ndarray | None:
        return None if self._pose is None else self._pose + self.offsets()

    def digit(self) -> int | None:
        return self._digit

    def slider_range(self) -> float:
        return self.range_spin.value()

    def set_slider_range(self, value: float) -> None:
        self.range_spin.setValue(value)

    @Slot()
    def reset(self) -> None:
        """All offsets to 0; emits pose_changed once."""
        self._set_offsets(np.zeros(POSE_DIMENSIONS))
        self._emit_pose()

    # -- internals --------------------------------------------------------------------------
    def _set_offsets(self, values: np.ndarray) -> None:
        for slider, value in zip(self.sliders, values):
            with signals_blocked(slider):
                slider.setValue(float(value))

    def _apply_range(self, bound: float) -> bool:
        """Set every slider to [−bound, bound]; True when a value had to be clamped."""
        clamped = False
        for slider in self.sliders:
            before = slider.value()
            with signals_blocked(slider):
                slider.setRange(-bound, bound)
                slider.setSingleStep(bound / 25)
                slider.setPageStep(bound / 5)
            clamped |= slider.value() != before
        return clamped

    @Slot(float)
    def _on_range_changed(self, bound: float) -> None:
        if self._apply_range(bound):
            self._emit_pose()

    @Slot(int)
    def _on_capsule_chosen(self, index: int) -> None:
        if index >= 0:
            self.capsule_selected.emit(index)

    def _emit_pose(self, *_) -> None:
        pose = self.current_pose()
        if pose is not None:
            self.pose_changed.emit((self._digit, pose))

    @Slot()
    def _request_grid(self) -> None:
        pose = self.current_pose()
        if pose is not None:
            bound = self.range_spin.value()
            self.grid_requested.emit(
                (self._digit, pose, np.linspace(-bound, bound, GRID_COLUMNS)))

    def _set_enabled(self, enabled: bool) -> None:
        for widget in (*self.sliders, self.reset_button, self.grid_button):
            widget.setEnabled(enabled)

    # -- export -----------------------------------------------------------------------------
    def export_tables(self) -> dict[str, Table]:
        if self._pose is None:
            return {}
        offsets = self.offsets()
        rows = [[k, float(self._pose[k]), float(offsets[k]), float(self._pose[k] + offsets[k])]
                for k in range(POSE_DIMENSIONS)]
        tables = {f"pose_capsule_{self._digit}": (
            ["dimension", "capsule_pose", "offset", "decoded_pose"], rows)}
        if self._grid_offsets is not None:
            tables["perturbation_grid_offsets"] = (
                ["column", "offset"], [[k, float(o)] for k, o in enumerate(self._grid_offsets)])
        return tables

    def export_scenes(self) -> dict[str, pg.GraphicsItem]:
        return {"perturbation_grid": self.grid_plot, "reconstruction": self.reconstruction_box.ci}

"""The primary-capsule grid (32 maps of 6×6) drawn as one mosaic image: 4 rows of 8 tiles with
1-pixel transparent gaps, a colour bar labelled in the values' units, a hover readout of
(map, row, col, value), and optionally a veil that fades cells by a weight (activity ‖u_i‖)."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

import pyqtgraph as pg  # after PySide6

from capsviewer.app.views.common import lut, rich, set_image

COLUMNS, GAP = 8, 1  # tiles per mosaic row, pixels between tiles


def mosaic_shape(grid: tuple[int, int, int], columns: int = COLUMNS, gap: int = GAP) -> tuple[int, int]:
    maps, rows, cols = grid
    tile_rows = math.ceil(maps / columns)
    return tile_rows * (rows + gap) - gap, columns * (cols + gap) - gap


def tile_origin(grid_map: int, grid: tuple[int, int, int], columns: int = COLUMNS,
                gap: int = GAP) -> tuple[int, int]:
    """(y, x) of the top-left pixel of map ``grid_map``'s tile."""
    _, rows, cols = grid
    tile_row, tile_col = divmod(grid_map, columns)
    return tile_row * (rows + gap), tile_col * (cols + gap)


def mosaic(values: np.ndarray, columns: int = COLUMNS, gap: int = GAP) -> np.ndarray:
    """(maps, rows, cols) → one float32 image of tiles; gaps are NaN (drawn transparent)."""
    grid = values.shape
    out = np.full(mosaic_shape(grid, columns, gap), np.nan, dtype=np.float32)
    _, rows, cols = grid
    for grid_map in range(grid[0]):
        y, x = tile_origin(grid_map, grid, columns, gap)
        out[y:y + rows, x:x + cols] = values[grid_map]
    return out


def cell_at(x: float, y: float, grid: tuple[int, int, int], columns: int = COLUMNS,
            gap: int = GAP) -> tuple[int, int, int] | None:
    """The (map, row, col) under mosaic pixel coordinates (x, y); None over a gap or outside."""
    maps, rows, cols = grid
    if x < 0 or y < 0:
        return None
    tile_row, row = divmod(int(y), rows + gap)
    tile_col, col = divmod(int(x), cols + gap)
    grid_map = tile_row * columns + tile_col
    if row >= rows or col >= cols or tile_col >= columns or grid_map >= maps:
        return None
    return grid_map, row, col


class _HoverImage(pg.ImageItem):
    """An ImageItem that reports the pixel under the mouse (None when it leaves)."""

    def __init__(self, on_hover):
        super().__init__(axisOrder="row-major")
        self._on_hover = on_hover

    def hoverEvent(self, ev):
        self._on_hover(None if ev.isExit() else (ev.pos().x(), ev.pos().y()))


FADE_FLOOR = 0.12  # the opacity of a cell of weight 0: faint, never invisible


def veil(weights: np.ndarray, background, columns: int = COLUMNS, gap: int = GAP) -> np.ndarray:
    """An RGBA mosaic in the ``background`` colour, opaque where a cell's weight (0…1) is low:
    drawn over the values, it fades cells of weight w to an opacity FADE_FLOOR + (1 − FADE_FLOOR)·w."""
    cover = (1.0 - FADE_FLOOR) * (1.0 - np.clip(mosaic(weights, columns, gap), 0.0, 1.0))
    colour = pg.mkColor(background)
    out = np.zeros((*cover.shape, 4), dtype=np.uint8)
    out[..., 0], out[..., 1], out[..., 2] = colour.red(), colour.green(), colour.blue()
    out[..., 3] = np.nan_to_num(cover * 255).astype(np.uint8)  # gaps: transparent
    return out


class MosaicPanel(QWidget):
    """A titled mosaic of values on the primary grid, with a colour bar and a readout line.

    ``symbol`` names the quantity in the readout and on the colour bar ("c_ij", "‖u_i‖");
    levels are fixed per call. ``cell_hovered`` reports the (map, row, col) under the mouse
    (None when it leaves).
    """

    cell_hovered = Signal(object)

    def __init__(self, title: str, symbol: str, colormap: str = "viridis",
                 levels: tuple[float, float] = (0.0, 1.0), grid: tuple[int, int, int] = (32, 6, 6),
                 parent: QWidget | None = None, columns: int = COLUMNS):
        super().__init__(parent)
        self.columns = columns  # tiles per mosaic row
        self.symbol = symbol
        self.values: np.ndarray | None = None
        self.levels = levels
        self.grid = grid
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumSize(260, 150)
        self.plot = self.graphics.addPlot(title=rich(title))
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(False, False)
        self.plot.hideButtons()
        self.plot.invertY(True)
        self.plot.setAspectLocked(True)
        self.plot.setLabel("left", "maps")
        self.plot.setLabel("bottom", "map offset")
        self._set_ticks(grid)
        self.image = _HoverImage(self._hovered)
        self.image.setLookupTable(lut(colormap))
        self.image.setLevels(levels)
        self.plot.addItem(self.image)
        self.veil = pg.ImageItem(axisOrder="row-major")  # fades cells of low weight
        self.veil.setZValue(1)
        self.plot.addItem(self.veil)
        self.weights: np.ndarray | None = None
        self.colour_bar = pg.ColorBarItem(values=levels, colorMap=pg.colormap.get(colormap),
                                          interactive=False, width=14,
                                          pen=pg.getConfigOption("foreground"))
        self.colour_bar.getAxis("right").enableAutoSIPrefix(False)
        # Labels on the major ticks only: a narrow range's minor ticks (0.45, 0.55) were
        # labelled with the major ticks' decimals and repeated them (0.4, 0.4, 0.5, 0.5).
        self.colour_bar.getAxis("right").setStyle(maxTextLevel=0)
        self.graphics.addItem(self.colour_bar)
        self.graphics.ci.layout.setColumnMinimumWidth(1, 80)  # ticks and units stay readable
        self.set_units(symbol)
        self.placeholder = pg.TextItem("", anchor=(0.5, 0.5), color=pg.getConfigOption("foreground"))
        self.plot.addItem(self.placeholder)
        self.hint = ""
        self.readout = QLabel(" ")
        self.readout.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.readout)

    def set_hint(self, text: str) -> None:
        """What the readout line says while the mouse is off the grid (how to read the colours)."""
        self.hint = text
        if not self.readout.property("hovering"):
            self.readout.setText(text or " ")

    def set_units(self, symbol: str) -> None:
        """Name the quantity in the readout and along the colour bar."""
        self.symbol = symbol
        self.colour_bar.setLabel("right", rich(symbol))

    def set_values(self, values: np.ndarray, levels: tuple[float, float] | None = None,
                   colormap: str | None = None, title: str | None = None,
                   symbol: str | None = None, weights: np.ndarray | None = None) -> None:
        """Draw ``values`` (maps, rows, cols) with fixed ``levels`` (the last ones by default);
        ``weights`` (same shape, 0…1) fade cells toward the background."""
        if levels is not None:
            self.levels = (float(levels[0]), float(levels[1]))
        if colormap is not None:
            self.image.setLookupTable(lut(colormap))
            self.colour_bar.setColorMap(pg.colormap.get(colormap))
        if title is not None:
            self.plot.setTitle(rich(title))
        if symbol is not None:
            self.set_units(symbol)
        self.values = values
        if values.shape != self.grid:
            self.grid = values.shape
            self._set_ticks(self.grid)
        set_image(self.image, mosaic(values, self.columns), self.levels)
        self.weights = weights
        if weights is None:
            self.veil.clear()
        else:
            self.veil.setImage(veil(weights, pg.getConfigOption("background"), self.columns),
                               autoLevels=False, levels=(0, 255))
        self.colour_bar.setLevels(self.levels)
        self.placeholder.setText("")
        self._fit()
        self.readout.setText(self.hint or " ")

    def show_message(self, message: str = "") -> None:
        """Remove the image and show ``message`` in its place."""
        self.values = None
        self.weights = None
        self.veil.clear()
        self.image.clear()
        self.hint = ""
        self.readout.setText(" ")
        height, width = mosaic_shape(self.grid, self.columns)
        self.placeholder.setText(message)
        self.placeholder.setPos(width / 2, height / 2)
        self._fit()

    def _fit(self) -> None:
        height, width = mosaic_shape(self.grid, self.columns)
        self.plot.setRange(xRange=(0, width), yRange=(0, height), padding=0.02)

    def readout_at(self, x: float, y: float) -> str | None:
        """The readout text for mosaic pixel (x, y), e.g. "map 12 · row 3 · col 4 · c_ij = 0.101"."""
        if self.values is None:
            return None
        cell = cell_at(x, y, self.values.shape, self.columns)
        if cell is None:
            return None
        return (f"map {cell[0]} · row {cell[1]} · col {cell[2]} · "
                f"{self.symbol} = {self.values[cell]:.4g}")

    def _hovered(self, pos) -> None:
        text = None if pos is None else self.readout_at(*pos)
        self.readout.setProperty("hovering", bool(text))
        self.readout.setText(rich(text) if text else (self.hint or " "))
        self.image.setToolTip(rich(text) if text else "")
        cell = None if pos is None or self.values is None else cell_at(*pos, self.values.shape,
                                                                        self.columns)
        self.cell_hovered.emit(cell)

    def _set_ticks(self, grid: tuple[int, int, int]) -> None:
        """Label tile rows by their first map and tile columns by the offset within the row."""
        maps, rows, cols = grid
        columns = self.columns
        tile_rows = math.ceil(maps / columns)
        left = [(r * (rows + GAP) + rows / 2, f"{r * columns}–{min(maps, (r + 1) * columns) - 1}")
                for r in range(tile_rows)]
        bottom = [(c * (cols + GAP) + cols / 2, f"+{c}") for c in range(columns)]
        self.plot.getAxis("left").setTicks([left])
        self.plot.getAxis("bottom").setTicks([bottom])

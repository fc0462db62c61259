"""The primary-capsule grid (32 maps of 6×6) drawn as one mosaic image: 4 rows of 8 tiles with
1-pixel transparent gaps, a colour bar and a hover readout of (map, row, col, value)."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

import pyqtgraph as pg  # after PySide6

from capsviewer.app.views.common import lut

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


class MosaicPanel(QWidget):
    """A titled mosaic of values on the primary grid, with a colour bar and a readout line.

    ``symbol`` names the quantity in the readout ("c_ij", "‖u_i‖"); levels are fixed per call.
    """

    def __init__(self, title: str, symbol: str, colormap: str = "viridis",
                 levels: tuple[float, float] = (0.0, 1.0), grid: tuple[int, int, int] = (32, 6, 6),
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.symbol = symbol
        self.values: np.ndarray | None = None
        self.levels = levels
        self.grid = grid
        self.graphics = pg.GraphicsLayoutWidget()
        self.plot = self.graphics.addPlot(title=title)
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
        self.colour_bar = pg.ColorBarItem(values=levels, colorMap=pg.colormap.get(colormap),
                                          interactive=False, width=14,
                                          pen=pg.getConfigOption("foreground"))
        self.graphics.addItem(self.colour_bar)
        self.placeholder = pg.TextItem("", anchor=(0.5, 0.5), color=pg.getConfigOption("foreground"))
        self.plot.addItem(self.placeholder)
        self.readout = QLabel(" ")
        self.readout.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.readout)

    def set_values(self, values: np.ndarray, levels: tuple[float, float] | None = None,
                   colormap: str | None = None, title: str | None = None,
                   symbol: str | None = None) -> None:
        """Draw ``values`` (maps, rows, cols) with fixed ``levels`` (the last ones by default)."""
        if levels is not None:
            self.levels = (float(levels[0]), float(levels[1]))
        if colormap is not None:
            self.image.setLookupTable(lut(colormap))
            self.colour_bar.setColorMap(pg.colormap.get(colormap))
        if title is not None:
            self.plot.setTitle(title)
        if symbol is not None:
            self.symbol = symbol
        self.values = values
        if values.shape != self.grid:
            self.grid = values.shape
            self._set_ticks(self.grid)
        self.image.setImage(mosaic(values), autoLevels=False, levels=self.levels)
        self.colour_bar.setLevels(self.levels)
        self.placeholder.setText("")
        self._fit()
        self.readout.setText(" ")

    def show_message(self, message: str = "") -> None:
        """Remove the image and show ``message`` in its place."""
        self.values = None
        self.image.clear()
        self.readout.setText(" ")
        height, width = mosaic_shape(self.grid)
        self.placeholder.setText(message)
        self.placeholder.setPos(width / 2, height / 2)
        self._fit()

    def _fit(self) -> None:
        height, width = mosaic_shape(self.grid)
        self.plot.setRange(xRange=(0, width), yRange=(0, height), padding=0.02)

    def readout_at(self, x: float, y: float) -> str | None:
        """The readout text for mosaic pixel (x, y), e.g. "map 12 · row 3 · col 4 · c_ij = 0.101"."""
        if self.values is None:
            return None
        cell = cell_at(x, y, self.values.shape)
        if cell is None:
            return None
        return (f"map {cell[0]} · row {cell[1]} · col {cell[2]} · "
                f"{self.symbol} = {self.values[cell]:.4g}")

    def _hovered(self, pos) -> None:
        text = None if pos is None else self.readout_at(*pos)
        self.readout.setText(text or " ")
        self.image.setToolTip(text or "")

    def _set_ticks(self, grid: tuple[int, int, int]) -> None:
        """Label tile rows by their first map and tile columns by the offset within the row."""
        maps, rows, cols = grid
        tile_rows = math.ceil(maps / COLUMNS)
        left = [(r * (rows + GAP) + rows / 2, f"{r * COLUMNS}–{min(maps, (r + 1) * COLUMNS) - 1}")
                for r in range(tile_rows)]
        bottom = [(c * (cols + GAP) + cols / 2, f"+{c}") for c in range(COLUMNS)]
        self.plot.getAxis("left").setTicks([left])
        self.plot.getAxis("bottom").setTicks([bottom])

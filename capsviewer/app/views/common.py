"""Pieces every view shares: colour tables, image items, the formulas shown in tooltips, and the
export protocol (PNG/SVG of the view, CSV of its numbers)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

# The maths behind each view, written once; used in tooltips and the help dialog.
FORMULAS = {
    "squash": "v = squash(s) = ‖s‖² / (1 + ‖s‖²) · s / ‖s‖   (length in [0, 1), direction kept)",
    "votes": "û_{j|i} = W_ij u_i   (prediction of primary capsule i for digit capsule j)",
    "coupling": "c_ij = exp(b_ij) / Σ_k exp(b_ik)   (softmax over digit capsules j; Σ_j c_ij = 1)",
    "routing": "s_j = Σ_i c_ij û_{j|i},  v_j = squash(s_j),  b_ij ← b_ij + û_{j|i} · v_j",
    "agreement": "a_ij = û_{j|i} · v_j   (added to the logit b_ij for the next iteration)",
    "margin": "L_k = T_k max(0, 0.9 − ‖v_k‖)² + 0.5 (1 − T_k) max(0, ‖v_k‖ − 0.1)²",
    "reconstruction": "x̂ = decoder(v masked to one capsule); loss 0.0005 · Σ (x̂ − x)²",
    "cnn": "p = softmax(logits) of the baseline CNN (conv–ReLU–max-pool ×3, FC)",
}

MARGIN_HIGH, MARGIN_LOW = 0.9, 0.1  # m⁺ and m⁻ of the margin loss


def lut(name: str = "viridis") -> np.ndarray:
    """A 256-entry RGBA lookup table of a colour map bundled with pyqtgraph (offline)."""
    return pg.colormap.get(name).getLookupTable(0.0, 1.0, 256, alpha=True)


GRAY_LUT = np.stack([np.arange(256)] * 3 + [np.full(256, 255)], axis=1).astype(np.uint8)


def image_item(levels: tuple[float, float] = (0.0, 1.0), colormap: str | None = None) -> pg.ImageItem:
    """An ImageItem in row-major order with fixed levels (no auto-levels on every frame)."""
    item = pg.ImageItem(axisOrder="row-major")
    item.setLevels(levels)
    item.setLookupTable(GRAY_LUT if colormap is None else lut(colormap))
    return item


def set_image(item: pg.ImageItem, values: np.ndarray, levels: tuple[float, float]) -> None:
    item.setImage(np.ascontiguousarray(values, dtype=np.float32), autoLevels=False, levels=levels)


def image_box(item: pg.ImageItem, title: str | None = None) -> pg.GraphicsLayoutWidget:
    """A small square, non-interactive image panel."""
    widget = pg.GraphicsLayoutWidget()
    view = widget.addViewBox(lockAspect=True, invertY=True, enableMouse=False)
    view.addItem(item)
    view.setMenuEnabled(False)
    if title:
        widget.setToolTip(title)
    return widget


Table = tuple[list[str], list[list]]


class ExportableView:
    """Mixin: what File ▸ Export uses. A view overrides these three to name what it exports."""

    export_name = "view"

    def export_widget(self) -> QWidget:
        """The widget grabbed to PNG."""
        return self  # type: ignore[return-value]

    def export_tables(self) -> dict[str, Table]:
        """CSV tables: file stem → (header, rows)."""
        return {}

    def export_scenes(self) -> dict[str, pg.GraphicsItem]:
        """pyqtgraph items (PlotItem, GraphicsLayout…) that can be written as SVG."""
        return {}

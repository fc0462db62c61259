"""Pieces every view shares: colour tables, image items, the formulas shown in tooltips (typed
once in the paper's notation, rendered with sub- and superscripts), and the export protocol
(PNG/SVG of the view, CSV of its numbers)."""

from __future__ import annotations

import html
import re

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetricsF
from PySide6.QtWidgets import QApplication, QLabel, QTabWidget, QWidget

# The maths behind each view, written once; used in tooltips and the help dialog.
FORMULAS = {
    "squash": "v = squash(s) = ‖s‖² / (1 + ‖s‖²) · s / ‖s‖   (length in [0, 1), direction kept)",
    "votes": "û_{j|i} = W_ij u_i   (prediction of primary capsule i for digit capsule j)",
    "coupling": "c_ij = exp(b_ij) / Σ_k exp(b_ik)   (softmax over digit capsules j; Σ_j c_ij = 1)",
    "routing": "s_j = Σ_i c_ij û_{j|i},  v_j = squash(s_j),  b_ij ← b_ij + û_{j|i} · v_j",
    "agreement": "a_ij = û_{j|i} · v_j   (added to the logit b_ij for the next iteration)",
    "margin": "L_k = T_k max(0, 0.9 − ‖v_k‖)² + 0.5 (1 − T_k) max(0, ‖v_k‖ − 0.1)²",
    "reconstruction": "x_rec = decoder(v masked to one capsule); loss 0.0005 · Σ (x_rec − x)²",
    "cnn": "p = softmax(logits) of the baseline CNN (conv–ReLU–max-pool ×3, FC)",
    "coupling_entropy": "H_i = −Σ_j c_ij log c_ij   (log J = log 10 ≈ 2.3026 when uniform; "
                        "mean over parts i, plain or weighted by ‖u_i‖)",
    "max_coupling": "max_j c_ij   (1/J = 0.1 when uniform; mean over parts i)",
    "routing_objective": "Σ_ij c_ij û_{j|i} · v_j = Σ_j s_j · v_j   (rises with the linear update "
                         "v = s; with squash it can fall: see the Routing lab)",
    "updates": "k agreement updates b_ij ← b_ij + û_{j|i}·v_j = r − 1 routing iterations; "
               "k = 0 (r = 1): uniform couplings c_ij = 1/J",
    "vote_decode": "x_rec = decoder(Σ_{i∈S} w_i û_{j|i} in slot j, other slots 0), w_i = 1 or c_ij; "
                   "all parts with w = c and squash give v_j",
    "vote_cloud": "(û_{j|i} − μ) Pᵀ: the votes for digit j on their two principal components; "
                  "dot diameter ∝ c_ij",
    # The routing lab: 2-D votes û_{j|i} of children i for parents j.
    "em_routing": "M-step: μ_j = Σ_i R_ij a_i V_ij / Σ_i R_ij a_i, σ²_j likewise per axis, "
                  "a_j = logistic(λ(β_a − Σ_h (β_u + log σ_j^h) Σ_i R_ij a_i));\n"
                  "E-step: R_ij = a_j N(V_ij; μ_j, σ²_j) / Σ_k a_k N(V_ij; μ_k, σ²_k)",
    "logit_map": "Δ' = g(Δ): every child starts at b_i = (Δ, 0, …), one update b ← b + û·v, "
                 "Δ' = mean_i (b'_i0 − b'_i1);\nsymmetric votes: g(Δ) = Δ + f(2σ(Δ)) − "
                 "f(2 − 2σ(Δ)), f(x) = x²/(1+x²), so g'(0) = 3/2 (v = s: g'(0) = 2)",
    "lab_objective": "O_r = Σ_ij c_ij û_{j|i}·v_j at iteration r. Routing ascends F = "
                     "Σ_j Φ(‖s_j‖) (c ← c·e^{û·∇Φ(s)}/Z, F convex):\nΦ(r) = r²/2 for v = s "
                     "(O = 2F, monotone), Φ(r) = r − arctan r for squash (O = Σ ‖s‖³/(1+‖s‖²) "
                     "can fall)",
    "lp": "LP: max_c Σ_ij c_ij a_ij with Σ_j c_ij = 1, c ≥ 0 → c_ij = 1 for j* = argmax_j a_ij;\n"
          "softmax(κ b) maximises Σ_j c_j b_j + H(c)/κ, so its gap to the LP is ≤ log J / κ",
    "attention": "c_ij = softmax_j((b⁰_ij + û_{j|i}·K_j) / T), keys K_j = Σ_{k<r} v_j^(k); "
                 "at T = 1 these are routing's c_ij^(r)",
    "uniform_routing": "no routing: c_ij = 1/J, s_j = Σ_i û_{j|i} / J, v_j = squash(s_j)   "
                       "(one pass; Paik et al. 2019)",
    "self_attention": "Efficient-CapsNet, one pass: b_ij = û_{j|i}·Σ_k û_{j|k} / √D, "
                      "c_ij = softmax_j(b_ij), s_j = Σ_i (c_ij + β_ij) û_{j|i}, v_j = squash(s_j)",
    "inverted_attention": "Tsai et al.: p_j = 0; each iteration a_ij = p_j·û_{j|i}, "
                          "r_ij = softmax_j(a_ij), p_j = LayerNorm(Σ_i r_ij û_{j|i})",
    "squash_jacobian": "squash: ∂v/∂s = r/(1+r²)(I − ŝŝᵀ) + 2r/(1+r²)² ŝŝᵀ, r = ‖s‖: "
                       "eigenvalues ≤ ½ and ≤ 3√3/8 ≈ 0.650",
    "sigmoid_norm": "sigmoid of the norm: v = σ(‖s‖) s/‖s‖, ∂v/∂s = σ(r)/r (I − ŝŝᵀ) + "
                    "σ(r)(1 − σ(r)) ŝŝᵀ: σ(r)/r > 1 for r < 0.659, → ∞ at 0",
    "softmax_jacobian": "∂c_j/∂b_k = c_j(δ_jk − c_k): symmetric, positive semi-definite, "
                        "eigenvalues in [0, ½]",
    "equivariance": "error(θ) = |angle(out₀(R_θ û)) − angle(out₀(û)) − θ|; invariant aggregator "
                    "[Σ_i ‖û_{0|i}‖, 0]",
}

MARGIN_HIGH, MARGIN_LOW = 0.9, 0.1  # m⁺ and m⁻ of the margin loss

_TAG = re.compile(r"</?[a-z]+[ >/]")
_SCRIPT = re.compile(r"([_^])(\{[^{}]*\}|\([^()]*\)|[A-Za-z0-9αβγδεθκλμσφ·]+)")


def rich(text: str) -> str:
    """Plain notation → Qt rich text: ``c_ij`` → c<sub>ij</sub>, ``û_{j|i}`` → û<sub>j|i</sub>,
    ``Δ^(3)`` → Δ<sup>(3)</sup>, new lines → <br>. Text that is already HTML is left alone."""
    if _TAG.search(text):  # already rich text
        return text

    def script(match: re.Match) -> str:
        tag = "sub" if match.group(1) == "_" else "sup"
        body = match.group(2)
        if body.startswith("{"):
            body = body[1:-1]
        return f"<{tag}>{body}</{tag}>"

    return _SCRIPT.sub(script, html.escape(text, quote=False)).replace("\n", "<br>")


_SUBSCRIPTS = dict(zip("0123456789aehijklmnoprstuvx|", "₀₁₂₃₄₅₆₇₈₉ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ|"))


def unicode_scripts(text: str) -> str:
    """Plain notation → Unicode subscripts, for widgets that cannot show rich text (combo
    boxes): ``c_ij`` → cᵢⱼ, ``û_{j|i}`` → ûⱼ|ᵢ. A subscript without Unicode forms stays."""
    def script(match: re.Match) -> str:
        body = match.group(2).strip("{}")
        if match.group(1) != "_" or not all(c in _SUBSCRIPTS for c in body):
            return match.group(0)
        return "".join(_SUBSCRIPTS[c] for c in body)

    return _SCRIPT.sub(script, text)


def tip(text: str) -> str:
    """A tooltip in rich text (Qt wraps it at a readable width)."""
    return text if text.startswith("<qt>") else f"<qt>{rich(text)}</qt>"


def render_tooltips(root: QWidget) -> None:
    """Render the notation in every plain tooltip under ``root`` (widgets and tabs) once."""
    for widget in [root, *root.findChildren(QWidget)]:
        text = widget.toolTip()
        if text and not text.startswith("<qt>"):
            widget.setToolTip(tip(text))
        if isinstance(widget, QTabWidget):
            for index in range(widget.count()):
                text = widget.tabToolTip(index)
                if text and not text.startswith("<qt>"):
                    widget.setTabToolTip(index, tip(text))


# Ten class colours with a contrast of at least 3:1 on both the light (#ffffff) and the dark
# (#16181b) plot background (tests/test_theme.py measures it).
CLASS_COLOURS = ("#1f77b4", "#d9590b", "#2a9d3c", "#d62728", "#9467bd",
                 "#a0664f", "#d1449f", "#7a7a7a", "#8f9a12", "#139fb0")


def class_colour(k: int) -> str:
    return CLASS_COLOURS[int(k) % len(CLASS_COLOURS)]


# Class names short enough for ten ticks on a bar axis; the full names stay in texts and tables.
SHORT_CLASS_NAMES = {"T-shirt/top": "Tee", "Trouser": "Pants", "Pullover": "Pull",
                     "Sandal": "Sand.", "Sneaker": "Snkr", "Ankle boot": "Boot"}


def class_ticks(names, alternate: bool = False) -> list[list[tuple[int, str]]]:
    """pyqtgraph ticks for a class axis: one per class, short names. ``alternate``: the even
    classes as the major level and the odd ones as the minor, which pyqtgraph names only where
    there is room (a short vertical axis)."""
    ticks = [(k, SHORT_CLASS_NAMES.get(str(name), str(name))) for k, name in enumerate(names)]
    return [ticks[::2], ticks[1::2]] if alternate else [ticks]


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
    # pyqtgraph 0.14 applies levels set before an item's first image after that image's own
    # (ImageItem._defferedLevels): set them again, or a first image is drawn on stale levels.
    item.setLevels(levels)


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


def headline_label(text: str, scale: float = 1.25) -> QLabel:
    """A view's bold, larger, selectable first line (what is shown, for which input)."""
    label = QLabel(text)
    font = QFont(label.font())
    font.setPointSizeF(font.pointSizeF() * scale)
    font.setBold(True)
    label.setFont(font)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


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


class RoomyAxis(pg.AxisItem):
    """A vertical axis whose numbered ticks stand at least 1.6 text lines apart.

    pyqtgraph never puts fewer than about 2.25 intervals on an axis, so a 0–1 axis 60 pixels
    tall gets 0.2, 0.4, 0.6, 0.8 packed edge to edge; this one coarsens the numbered ticks in
    1–2–5 steps (0, 0.5, 1) and keeps the finer ones as unnumbered grid lines."""

    def __init__(self, orientation: str = "left", **kwargs):
        super().__init__(orientation, **kwargs)
        self._numbered: float | None = None  # the coarsened spacing, while there is one

    def tickSpacing(self, minVal, maxVal, size):
        levels = super().tickSpacing(minVal, maxVal, size)
        self._numbered = None
        if self._tickSpacing is not None or not levels or self.orientation in ("top", "bottom"):
            return levels
        least = 1.6 * self._line_height()  # pixels from one number to the next
        span, major = abs(maxVal - minVal), levels[0][0]
        spacing = major
        low, high = min(minVal, maxVal), max(minVal, maxVal)
        while spacing * size / span < least:
            mantissa = spacing / 10 ** np.floor(np.log10(spacing))
            coarser = spacing * (2.5 if round(mantissa) == 2 else 2)  # 1 → 2 → 5 → 10
            if np.floor(high / coarser) - np.ceil(low / coarser) < 1:
                break  # it would leave fewer than two numbers
            spacing = coarser
        if spacing == major:
            return levels
        self._numbered = spacing
        return [(spacing, 0), (major, 0)]

    def _line_height(self) -> float:
        return QFontMetricsF(self.style.get("tickFont") or QApplication.font()).height()

    def boundingRect(self):
        # with a grid pyqtgraph drops a number that pokes past the plot's end by half a line
        # (the 0 and the 1 of a 0–1 axis); let it reach into the margin above and below
        rect = super().boundingRect()
        if self.orientation in ("left", "right"):
            half = self._line_height() / 2 + 1
            rect = rect.adjusted(0, -half, 0, half)
        return rect

    def tickStrings(self, values, scale, spacing):
        if self._numbered is not None and spacing < self._numbered:
            return [""] * len(values)  # grid lines only
        return super().tickStrings(values, scale, spacing)


def roomy_left_axis(plot: pg.PlotItem) -> None:
    """Give ``plot`` a RoomyAxis on the left, keeping its label."""
    label = plot.getAxis("left").labelText
    plot.setAxisItems({"left": RoomyAxis("left")})
    if label:
        plot.setLabel("left", label)


def static_plot(plot: pg.PlotItem, left: str | None = None, bottom: str | None = None,
                grid: tuple[bool, bool] = (True, True), mouse: bool = False) -> pg.PlotItem:
    """A read-only figure: axis labels without SI prefixes, numbered ticks with room between
    them, a light grid, no context menu or auto-range button, and (unless ``mouse``) no pan or
    zoom."""
    roomy_left_axis(plot)
    if left is not None:
        plot.setLabel("left", rich(left))
    if bottom is not None:
        plot.setLabel("bottom", rich(bottom))
    plot.setMenuEnabled(False)
    if not mouse:
        plot.setMouseEnabled(False, False)
    plot.hideButtons()
    plot.showGrid(x=grid[0], y=grid[1], alpha=0.2)
    for axis in ("left", "bottom"):
        plot.getAxis(axis).enableAutoSIPrefix(False)
    return plot


def dark_background() -> bool:
    return pg.mkColor(pg.getConfigOption("background")).lightnessF() < 0.5


def heat_lut() -> np.ndarray:
    """'inferno' whose alpha rises with the value, so weak support stays see-through."""
    table = lut("inferno").copy()
    table[:, 3] = np.linspace(0.0, 1.0, 256) ** 1.5 * 180
    return table


def frame_field(box, cell, fields) -> None:
    """Show ``box`` (a QGraphicsRectItem on an input image) around the receptive field of grid
    ``cell`` (map, row, col), given the (rows, cols, 4) boxes ``fields``; hide it for None."""
    if cell is None or fields is None:
        box.setVisible(False)
        return
    _, row, col = cell
    top, left, bottom, right = (int(v) for v in fields[row, col])
    box.setRect(left, top, right - left, bottom - top)
    box.setVisible(True)

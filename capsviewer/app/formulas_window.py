"""Help ▸ Formulas: the maths behind the views, each formula under a plain heading with one
sentence, typeset by matplotlib's mathtext (in the background) in a scrollable window."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QPalette, QPixmap
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QLabel, QScrollArea, QVBoxLayout, QWidget,
)


@dataclass(frozen=True)
class Formula:
    heading: str  # plain words
    sentence: str  # what it means, in one sentence
    tex: str  # mathtext


FORMULA_SHEET = (
    Formula("How sure a capsule is: its length",
            "Squashing keeps a vector's direction and turns its length into a number between "
            "0 and 1: the probability that the thing the capsule stands for is there.",
            r"$v_j = \frac{\Vert s_j\Vert^2}{1+\Vert s_j\Vert^2}\,\frac{s_j}{\Vert s_j\Vert}$"),
    Formula("What a part predicts: its vote",
            "Each primary capsule i multiplies its output by a learned matrix to predict the "
            "pose of digit capsule j.",
            r"$\hat{u}_{j|i} = W_{ij}\,u_i$"),
    Formula("How a vote is shared: the couplings",
            "Each part splits its vote over the J = 10 digit capsules; the shares add up to 1 "
            "and start equal, 1/J.",
            r"$c_{ij} = \frac{\exp\,b_{ij}}{\sum_k \exp\,b_{ik}}$"),
    Formula("One routing iteration",
            "Add up the shared votes, squash the sum, then raise the logits of the votes that "
            "agree with the result.",
            r"$s_j = \sum_i c_{ij}\,\hat{u}_{j|i},\quad v_j = \mathrm{squash}(s_j),\quad "
            r"b_{ij} \leftarrow b_{ij} + \hat{u}_{j|i}\cdot v_j$"),
    Formula("Agreement",
            "A vote pointing where the output points has a large dot product; it is added to "
            "the logit for the next iteration.",
            r"$a_{ij} = \hat{u}_{j|i}\cdot v_j$"),
    Formula("The routing map: compared with uniform, and what changed",
            "The Routing tab colours each part by how far its coupling is from the uniform "
            "1/J, or by how much the last iteration moved it.",
            r"$c_{ij} - \frac{1}{J}\qquad c_{ij}^{(r)} - c_{ij}^{(r-1)}$"),
    Formula("How much a part adds: its support",
            "A part's coupling times the length of its vote is its share in the length of s_j.",
            r"$c_{ij}\,\Vert\hat{u}_{j|i}\Vert$"),
    Formula("How wrong an answer is: the margin loss",
            "The right digit's capsule should be longer than m⁺ = 0.9, every other one shorter "
            "than m⁻ = 0.1.",
            r"$L_k = T_k\,\max(0,\,0.9 - \Vert v_k\Vert)^2 + 0.5\,(1 - T_k)\,"
            r"\max(0,\,\Vert v_k\Vert - 0.1)^2$"),
    Formula("Drawing the digit back: the reconstruction",
            "A decoder redraws the input from the winning capsule alone; its error is a small "
            "extra loss.",
            r"$\hat{x} = \mathrm{decoder}(v\ \mathrm{masked\ to\ one\ capsule}),\quad "
            r"0.0005\,\sum\,(\hat{x} - x)^2$"),
    Formula("The CNN's answer",
            "The baseline network turns its last layer into probabilities that add up to 1.",
            r"$p_k = \frac{\exp\,z_k}{\sum_l \exp\,z_l}$"),
    Formula("How spread out the couplings are",
            "Entropy is largest, log J ≈ 2.30, when a part shares its vote equally; the largest "
            "coupling is 1/J = 0.1 then.",
            r"$H_i = -\sum_j c_{ij}\,\log c_{ij},\qquad \max_j\,c_{ij}$"),
    Formula("What routing increases",
            "With v = s every iteration raises this total agreement; with squash it can fall.",
            r"$\sum_{ij} c_{ij}\,\hat{u}_{j|i}\cdot v_j = \sum_j s_j\cdot v_j$"),
    Formula("How many updates: iterations and agreement updates",
            "r routing iterations make k = r − 1 agreement updates; with k = 0 every coupling "
            "stays 1/J.",
            r"$k = r - 1,\qquad k = 0:\ c_{ij} = \frac{1}{J}$"),
    Formula("Votes seen from above: the vote cloud",
            "The votes for one digit capsule, centred and projected on their two main "
            "directions; a dot's size shows its coupling.",
            r"$(\hat{u}_{j|i} - \mu)\,P^{T}$"),
    Formula("Decoding a vote",
            "Put the (weighted) sum of some parts' votes into capsule j and let the decoder "
            "draw what they predict.",
            r"$\hat{x} = \mathrm{decoder}\left(\sum_{i\in S} w_i\,\hat{u}_{j|i}\right),"
            r"\quad w_i = 1\ \mathrm{or}\ c_{ij}$"),
    Formula("EM routing (the lab)",
            "Each parent is a Gaussian cluster of votes: the M-step fits it, the E-step shares "
            "each vote by how likely each cluster makes it.",
            r"$\mu_j = \frac{\sum_i R_{ij}\,a_i\,V_{ij}}{\sum_i R_{ij}\,a_i},\qquad "
            r"R_{ij} = \frac{a_j\,\mathcal{N}(V_{ij};\,\mu_j,\sigma_j^2)}"
            r"{\sum_k a_k\,\mathcal{N}(V_{ij};\,\mu_k,\sigma_k^2)}$"),
    Formula("A tie that routing cannot break (the lab)",
            "Start one logit a little ahead by Δ and update once: near a perfect tie the "
            "difference grows, by 3/2 per update with squash.",
            r"$g(\Delta) = \Delta + f(2\sigma(\Delta)) - f(2 - 2\sigma(\Delta)),\quad "
            r"f(x) = \frac{x^2}{1+x^2},\quad g'(0) = \frac{3}{2}$"),
    Formula("Routing as attention (the lab)",
            "The couplings are a softmax of votes against keys, the outputs of earlier "
            "iterations; T = 1 gives routing.",
            r"$c_{ij} = \mathrm{softmax}_j\left(\frac{b^0_{ij} + \hat{u}_{j|i}\cdot K_j}{T}"
            r"\right),\quad K_j = \sum_{k<r} v_j^{(k)}$"),
    Formula("Soft or hard assignment (the lab)",
            "The best hard assignment sends each vote to its best parent; softmax with scale κ "
            "is at most log J / κ below it.",
            r"$\max_c \sum_{ij} c_{ij}\,a_{ij},\qquad \mathrm{gap} \leq \frac{\log J}{\kappa}$"),
    Formula("How squash bends a vector (the lab)",
            "Squash never stretches a small change by more than about 0.65; a sigmoid of the "
            "norm can stretch it without limit near 0.",
            r"$\frac{\partial v}{\partial s} = \frac{r}{1+r^2}\,(I - \hat{s}\hat{s}^{T}) + "
            r"\frac{2r}{(1+r^2)^2}\,\hat{s}\hat{s}^{T},\quad r = \Vert s\Vert$"),
)


def render_formula(tex: str, colour: str, size: float = 13.0, dpi: int = 100) -> bytes:
    """A PNG of ``tex`` typeset by matplotlib's mathtext (Agg; any thread, one at a time)."""
    import matplotlib
    from matplotlib import mathtext
    from matplotlib.font_manager import FontProperties

    buffer = io.BytesIO()
    with matplotlib.rc_context({"savefig.transparent": True}):  # on light and dark windows
        mathtext.math_to_image(tex, buffer, dpi=dpi, format="png",
                               prop=FontProperties(size=size), color=colour)
    return buffer.getvalue()


def render_sheet(colour: str, dpi: int) -> list[bytes]:
    return [render_formula(formula.tex, colour, dpi=dpi) for formula in FORMULA_SHEET]


class FormulasWindow(QDialog):
    """Headings, sentences and typeset formulas in a scroll area; the formulas arrive from
    the background (``show_rendered``)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("The maths behind the views")
        self.formula_labels: list[QLabel] = []
        page = QWidget()
        column = QVBoxLayout(page)
        for formula in FORMULA_SHEET:
            heading = QLabel(f"<b>{formula.heading}</b>")
            sentence = QLabel(formula.sentence)
            sentence.setWordWrap(True)
            typeset = QLabel("typesetting…")
            typeset.setToolTip(formula.tex)
            typeset.setContentsMargins(12, 2, 0, 10)
            typeset.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.formula_labels.append(typeset)
            for widget in (heading, sentence, typeset):
                column.addWidget(widget)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(page)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addWidget(buttons)
        self.resize(720, 560)

    def text_colour(self) -> str:
        return self.palette().color(QPalette.ColorRole.WindowText).name()

    @Slot(object)
    def show_rendered(self, images: list[bytes]) -> None:
        ratio = self.devicePixelRatioF()
        for label, png in zip(self.formula_labels, images):
            pixmap = QPixmap()
            pixmap.loadFromData(png, "PNG")
            pixmap.setDevicePixelRatio(ratio)
            label.setPixmap(pixmap)


def open_formulas(window) -> FormulasWindow:
    """Show the window (one per main window) and typeset its formulas on the loading lane."""
    dialog = getattr(window, "formulas_window", None)
    if dialog is None:
        dialog = window.formulas_window = FormulasWindow(window)
        ratio = dialog.devicePixelRatioF()
        window.controller.lanes["loading"].submit(
            "formulas", render_sheet, dialog.text_colour(), int(100 * ratio),
            on_done=dialog.show_rendered,
            on_error=lambda error: window.report_error("Cannot typeset the formulas", str(error)))
    dialog.show()
    dialog.raise_()
    return dialog

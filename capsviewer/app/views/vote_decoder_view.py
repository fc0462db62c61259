"""Decode a vote: what one part (or a selection of parts) predicts digit capsule j looks like.

The decoder gets Σ_{i∈S} w_i û_{j|i} in digit j's slot and zeros elsewhere, as its masking
does; w_i = 1 or the couplings c_ij of the iteration on screen. A single vote is far shorter
than v_j (s_j sums over 1152 of them), so by default its direction is kept and its length set
to ‖v_j‖; "squash" and "as is" are there too. The selection comes from clicks on the primary
grid, the part map or the vote cloud; the controller runs the decoder and calls back."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox, QFrame, QGridLayout, QHBoxLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout,
    QWidget,
)

import pyqtgraph as pg  # after PySide6

from capsviewer.analysis.inspection import CapsuleInspection
from capsviewer.analysis.routing_diagnostics import (
    SCALES, WEIGHTINGS, DecodedVote, VoteSelection, combine_votes,
)
from capsviewer.app.views.common import FORMULAS, ExportableView, Table, rich, unicode_scripts
from capsviewer.app.views.prediction_view import ImagePanel
from capsviewer.app.views.vote_cloud_view import grid_position

STRONGEST = 5


class VoteDecoderView(QWidget, ExportableView):
    """Holds the selection of primary capsules; emits ``decode_requested(VoteSelection)``
    whenever the selection, digit, iteration or options change, and ``selection_changed``."""

    export_name = "routing-vote-decoder"
    decode_requested = Signal(object)  # VoteSelection
    selection_changed = Signal(object)  # tuple of flat primary-capsule indices i

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.capsules: CapsuleInspection | None = None
        self.digit = 0
        self.iteration = 1
        self.children: tuple[int, ...] = ()
        self.decoded: DecodedVote | None = None
        self._requested: tuple | None = None  # (selection, inspection) last asked for

        self.input_panel = ImagePanel("Input x")
        self.reconstruction_panel = ImagePanel("Reconstruction")
        self.reconstruction_panel.setToolTip(FORMULAS["reconstruction"])
        self.decoded_panel = ImagePanel("Decoded vote")
        self.decoded_panel.setToolTip(FORMULAS["vote_decode"])
        self.weighting = QComboBox()
        for key, text in WEIGHTINGS.items():
            self.weighting.addItem(unicode_scripts(text), key)
        self.weighting.setToolTip("How the selected votes are combined")
        self.scale = QComboBox()
        for key, text in SCALES.items():
            self.scale.addItem(unicode_scripts(text), key)
        self.scale.setToolTip("What the decoder gets: the combined vote rescaled to ‖v_j‖ (its "
                              "direction only), squashed like s_j, or unchanged")
        for combo in (self.weighting, self.scale):
            combo.currentIndexChanged.connect(self._request)
        self.strongest_button = QPushButton("Strongest part")
        self.strongest_button.setToolTip("The primary capsule with the largest c_ij ‖û_{j|i}‖")
        self.strongest_button.clicked.connect(lambda: self.select_strongest(1))
        self.five_button = QPushButton(f"Strongest {STRONGEST}")
        self.five_button.clicked.connect(lambda: self.select_strongest(STRONGEST))
        self.all_button = QPushButton("All 1152 parts")
        self.all_button.setToolTip("Σ_i c_ij û_{j|i} = s_j: squashed (or rescaled) it is v_j, "
                                   "and the image is the ordinary reconstruction")
        self.all_button.clicked.connect(self.select_all)
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.info.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.info.setToolTip(FORMULAS["votes"] + "\n" + FORMULAS["vote_decode"])

        controls = QGridLayout()
        controls.addWidget(QLabel("Combine:"), 0, 0)
        controls.addWidget(self.weighting, 0, 1, 1, 3)
        controls.addWidget(QLabel("Decode:"), 1, 0)
        controls.addWidget(self.scale, 1, 1, 1, 3)
        controls.addWidget(self.strongest_button, 2, 1)
        controls.addWidget(self.five_button, 2, 2)
        controls.addWidget(self.all_button, 2, 3)
        hint = QLabel("Click a cell of the primary grid (Ctrl: add or remove), a point of the part "
                      "map (its 32 capsules) or a dot of the vote cloud.")
        hint.setWordWrap(True)
        side = QVBoxLayout()
        side.addLayout(controls)
        side.addWidget(hint)
        scroll = QScrollArea()  # the lines never clip: a short panel scrolls them
        scroll.setWidget(self.info)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        side.addWidget(scroll, 1)
        images = QHBoxLayout()
        for panel in (self.input_panel, self.reconstruction_panel, self.decoded_panel):
            images.addWidget(panel, 1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(images, 3)
        layout.addLayout(side, 2)
        self.set_context(None)

    # -- input from the routing view --------------------------------------------------------
    def set_context(self, capsules: CapsuleInspection | None, digit: int | None = None,
                    iteration: int | None = None) -> None:
        """The inspection, digit capsule j and iteration r (1-based) on screen. A new image
        starts from the strongest part of j."""
        new_image = capsules is not None and (
            self.capsules is None or not np.array_equal(self.capsules.image, capsules.image))
        self.capsules = capsules
        if digit is not None:
            self.digit = int(digit)
        if iteration is not None:
            self.iteration = int(iteration)
        enabled = capsules is not None and capsules.votes is not None
        for widget in (self.weighting, self.scale, self.strongest_button, self.five_button,
                       self.all_button):
            widget.setEnabled(enabled)
        if not enabled:
            self._requested = None
            self.decoded = None
            for panel in (self.input_panel, self.reconstruction_panel, self.decoded_panel):
                panel.show_message("No CapsNet analysis yet")
            self.info.setText("")
            return
        self.iteration = min(max(self.iteration, 1), len(capsules.iterations))
        self.input_panel.set_image(capsules.image)
        self.reconstruction_panel.set_image(capsules.reconstruction)
        name = capsules.class_names[capsules.prediction]
        self.reconstruction_panel.title.setText(f"Reconstruction (v of {name})")
        if new_image or not self.children:
            self.select_strongest(1)
        else:
            self._request()

    def select_children(self, children, add: bool = False) -> None:
        """Decode ``children`` (flat indices i); with ``add``, toggle them in the selection."""
        children = tuple(dict.fromkeys(int(i) for i in children))
        if add:
            current = dict.fromkeys(self.children)
            for i in children:
                if i in current:
                    del current[i]
                else:
                    current[i] = None
            children = tuple(current)
        self.children = children
        self.selection_changed.emit(self.children)
        self._request()

    @Slot()
    def select_strongest(self, count: int = 1) -> None:
        if self.capsules is None:
            return
        values = self.capsules.contributions(self.digit, self.iteration - 1).reshape(-1)
        self.select_children(np.argsort(values)[::-1][:count])

    @Slot()
    def select_all(self) -> None:
        if self.capsules is not None:
            self.select_children(range(self.capsules.primary_lengths.size))

    def selection(self) -> VoteSelection | None:
        """What the decoder should get now (None without a selection or an inspection)."""
        if self.capsules is None or self.capsules.votes is None or not self.children:
            return None
        return VoteSelection(self.digit, self.children, self.weighting.currentData(),
                             self.scale.currentData(), self.iteration - 1)

    @Slot(object)
    def show_decoded(self, decoded: DecodedVote) -> None:
        """Draw a decoded vote; a result for an older request is dropped."""
        if decoded.selection != self.selection():
            return
        self.decoded = decoded
        self.decoded_panel.set_image(decoded.image)
        name = self.capsules.class_names[self.digit]
        count = len(decoded.selection.children)
        self.decoded_panel.title.setText(
            f"Vote{'s' if count > 1 else ''} for {name} decoded ({count} part{'s' * (count > 1)})")

    # -- internals ---------------------------------------------------------------------------
    def _request(self) -> None:
        selection = self.selection()
        if selection is None:
            return
        self._describe(selection)
        last = self._requested
        if last is None or last[0] != selection or last[1] is not self.capsules:
            self._requested = (selection, self.capsules)
            self.decode_requested.emit(selection)

    def _describe(self, selection: VoteSelection) -> None:
        capsules, j, r = self.capsules, selection.digit, self.iteration
        snapshot = capsules.iterations[r - 1]
        v = snapshot.parent_poses[j].astype(np.float64)
        votes = capsules.votes.reshape(-1, *capsules.votes.shape[-2:])
        combined = combine_votes(capsules.votes, selection, snapshot.couplings)
        name = capsules.class_names[j]

        def cosine(a: np.ndarray) -> float:
            norms = np.linalg.norm(a) * np.linalg.norm(v)
            return float(a @ v / norms) if norms > 0 else 0.0

        if len(selection.children) == 1:
            i = selection.children[0]
            grid_map, row, col = grid_position(i)
            vote = votes[i, j].astype(np.float64)
            lines = [
                f"<b>Primary capsule map {grid_map}, row {row}, col {col}</b> → digit {name}, "
                f"iteration {r}:",
                f"‖u_i‖ = {capsules.primary_lengths.reshape(-1)[i]:.3f} · "
                f"‖û_{{j|i}}‖ = {np.linalg.norm(vote):.4f} · c_ij = "
                f"{snapshot.couplings.reshape(-1, votes.shape[1])[i, j]:.4f}",
                f"û·v_j = {snapshot.agreement.reshape(-1, votes.shape[1])[i, j]:.4g} · "
                f"cos(û_{{j|i}}, v_j) = {cosine(vote):.3f}",
            ]
        else:
            cells = {grid_position(i)[1:] for i in selection.children}
            maps = capsules.primary_lengths.shape[0]
            where = (f" (all {maps} maps at row {next(iter(cells))[0]}, col {next(iter(cells))[1]})"
                     if len(cells) == 1 and len(selection.children) == maps else "")
            lines = [f"<b>{len(selection.children)} primary capsules</b>{where} → digit {name}, "
                     f"iteration {r}:",
                     f"cos(Σ w û, v_j) = {cosine(combined):.3f}"]
        length, parent = float(np.linalg.norm(combined)), float(np.linalg.norm(v))
        lines.append(f"‖Σ w û‖ = {length:.4f} against ‖v_j‖ = {parent:.3f}")
        if selection.scale == "raw" and parent > 0:
            lines[-1] += f": as is, the decoder gets {100 * length / parent:.0f} % of v_j's length"
        self.info.setText("<br>".join(rich(line) for line in lines))  # c_ij → c<sub>ij</sub>

    # -- export ---------------------------------------------------------------------------
    def export_tables(self) -> dict[str, Table]:
        decoded = self.decoded
        if decoded is None:
            return {}
        s = decoded.selection
        rows = [[i, *grid_position(i)] for i in s.children]
        poses = [["combined", *map(float, decoded.combined)], ["decoder input", *map(float, decoded.pose)]]
        return {
            "selection": (["i", "map", "row", "col"], rows),
            "pose": (["vector"] + [f"d{k}" for k in range(len(decoded.pose))], poses),
            "image": ([f"x{k}" for k in range(decoded.image.shape[1])],
                      [list(map(float, line)) for line in decoded.image]),
        }

    def export_scenes(self) -> dict[str, pg.GraphicsItem]:
        return {}

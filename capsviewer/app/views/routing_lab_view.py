"""The routing lab: a 2-D playground where the theory of routing is interactive.

Children vote for a handful of parents on a canvas; dynamic routing and EM routing run on the
same votes, side by side, with one iteration scrubber; the tabs below plot the theory (fixed
point, objective, LP and attention readings, Jacobians, equivariance) for the votes on screen,
and the two attention routings (inverted dot-product, self-attention) on the same votes.
The scene (votes and settings) lives in the app state; a Controller computes it in the
background (:func:`capsviewer.analysis.routing_lab.compute`) and the view draws the result.
Drags are throttled (qthrottled) to at most 30 scenes a second.
"""

from __future__ import annotations

import html
from contextlib import ExitStack

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

import pyqtgraph as pg  # after PySide6
from superqt import QLabeledDoubleSlider
from superqt.utils import qthrottled, signals_blocked

from capsviewer.analysis.routing_lab import (
    DELTAS,
    MAX_CHILDREN,
    MAX_PARENTS,
    MIN_CHILDREN,
    MIN_PARENTS,
    PRESETS,
    SCALES,
    TEMPERATURES,
    LabResult,
    LabState,
    jacobian_curves,
)
from capsviewer.analysis.routing_theory import squash_eigenvalues
from capsviewer.app.state import AppState, LabScene
from capsviewer.app.views.common import FORMULAS, ExportableView, Table
from capsviewer.app.views.routing_lab_canvas import VoteCanvas
from capsviewer.app.views.routing_lab_panels import (
    AssignmentPanel,
    AttentionPanel,
    AttentionRoutingsPanel,
    CouplingsPanel,
    EquivariancePanel,
    FixedPointPanel,
    JacobianPanel,
    ObjectivePanel,
)

MAX_ITERATIONS = 15
DRAG_INTERVAL_MS = 33  # at most 30 new scenes a second while a vote is dragged
DEFAULT_BIAS, DEFAULT_PERTURBATION = 0.05, 0.05


class RoutingLabView(QWidget, ExportableView):
    """Draws the app state's lab scene as computed; every control edits the scene."""

    export_name = "routing-lab"
    state_changed = Signal()  # a computed scene was drawn
    iteration_changed = Signal(int)  # the iteration on screen, 1-based

    def __init__(self, state: AppState | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self._app = state if state is not None else AppState()  # computed by a Controller
        self.result: LabResult | None = None  # what is drawn, and the scene it is for
        self._drawn: LabState | None = None
        self._iteration = self.state.iterations
        self._fit_next = True
        self._stale: set[str] = set()  # theory panels not drawn for the result yet
        self._drag = qthrottled(self.set_vote, timeout=DRAG_INTERVAL_MS, parent=self)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(self._build_top_row())
        layout.addLayout(self._build_prior_row())
        self.explanation = QLabel()
        self.explanation.setWordWrap(True)
        layout.addWidget(self.explanation)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self._build_canvases())
        splitter.addWidget(self._build_panels())
        splitter.setStretchFactor(0, 5)
        splitter.setStretchFactor(1, 4)
        splitter.setSizes([430, 340])
        layout.addWidget(splitter, 1)
        self._app.events.lab.connect(self._scene_changed)
        self._app.events.lab_result.connect(self._render)
        self._shown_preset: str | None = None
        self._scene_changed()
        self._render()

    # -- construction ---------------------------------------------------------------------
    def _build_top_row(self) -> QHBoxLayout:
        self.preset_combo = QComboBox()
        for key, preset in PRESETS.items():
            self.preset_combo.addItem(preset.title, key)
        self.preset_combo.setToolTip("Start from one of the theory's set-ups (replaces the votes)")
        self.preset_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.preset_combo.setMinimumContentsLength(16)  # long titles elide: fits 1280 px
        self.preset_combo.currentIndexChanged.connect(
            lambda index: self.load_preset(self.preset_combo.itemData(index)))
        self.iterations_spin = QSpinBox()
        self.iterations_spin.setRange(1, MAX_ITERATIONS)
        self.iterations_spin.setToolTip("Routing iterations R of both routings")
        self.iterations_spin.valueChanged.connect(self.set_iterations)
        self.scrubber = QSlider(Qt.Orientation.Horizontal)
        self.scrubber.setPageStep(1)
        self.scrubber.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.scrubber.setTickInterval(1)
        self.scrubber.setToolTip("Iteration r shown by both panels and every plot\n"
                                 + FORMULAS["routing"])
        self.scrubber.valueChanged.connect(self.set_iteration)
        self.iteration_label = QLabel()
        self.iteration_label.setMinimumWidth(80)
        self.lambda_spin = QDoubleSpinBox()
        self.lambda_spin.setRange(0.01, 100.0)
        self.lambda_spin.setDecimals(2)
        self.lambda_spin.setValue(1.0)
        self.lambda_spin.setToolTip("EM routing's final inverse temperature λ (schedule "
                                    "λ(1 − 0.95^(t+1)))\n" + FORMULAS["em_routing"])
        self.lambda_spin.valueChanged.connect(self._on_lambda)
        row = QHBoxLayout()
        row.addWidget(QLabel("Preset"))
        row.addWidget(self.preset_combo)
        row.addSpacing(10)
        row.addWidget(QLabel("Iterations R"))
        row.addWidget(self.iterations_spin)
        row.addSpacing(10)
        row.addWidget(QLabel("Iteration r"))
        row.addWidget(self.scrubber, 1)
        row.addWidget(self.iteration_label)
        row.addWidget(QLabel("EM λ"))
        row.addWidget(self.lambda_spin)
        return row

    def _build_prior_row(self) -> QHBoxLayout:
        self.bias_check = QCheckBox("Logit bias b₀")
        self.bias_check.setToolTip("Initial logit b_i0 = strength for every child (a prior for "
                                   "parent 0; dynamic routing only)")
        self.bias_slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.bias_slider.setRange(0.0, 1.0)
        self.bias_slider.setSingleStep(0.01)
        self.bias_slider.setValue(DEFAULT_BIAS)
        self.perturb_check = QCheckBox("Vote perturbation ε")
        self.perturb_check.setToolTip("Add ε times a fixed standard-normal noise (seed 0) to every "
                                      "vote (both routings)")
        self.perturb_slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.perturb_slider.setRange(0.0, 0.3)
        self.perturb_slider.setSingleStep(0.005)
        self.perturb_slider.setValue(DEFAULT_PERTURBATION)
        for check, slider in ((self.bias_check, self.bias_slider),
                              (self.perturb_check, self.perturb_slider)):
            slider.setMinimumWidth(100)
            slider.setToolTip(check.toolTip())
            check.toggled.connect(self._on_priors)
            slider.valueChanged.connect(self._on_priors)
        self.add_child_button = QPushButton("+ child")
        self.remove_child_button = QPushButton("− child")
        self.add_parent_button = QPushButton("+ parent")
        self.remove_parent_button = QPushButton("− parent")
        self.reset_button = QPushButton("Reset")
        self.add_child_button.setToolTip("Add a child (right-click the canvas to add one at a "
                                         "spot)")
        self.remove_child_button.setToolTip("Remove the last child (right-click a vote to remove "
                                            "its child)")
        self.add_parent_button.setToolTip(f"Add a parent (up to {MAX_PARENTS})")
        self.remove_parent_button.setToolTip("Remove the last parent")
        self.reset_button.setToolTip("Reload the preset")
        self.add_child_button.clicked.connect(lambda: self.add_child())
        self.remove_child_button.clicked.connect(lambda: self.remove_child(self.state.children - 1))
        self.add_parent_button.clicked.connect(self.add_parent)
        self.remove_parent_button.clicked.connect(
            lambda: self.remove_parent(self.state.parents - 1))
        self.reset_button.clicked.connect(lambda: self.load_preset(self.preset))
        row = QHBoxLayout()
        row.addWidget(self.bias_check)
        row.addWidget(self.bias_slider, 1)
        row.addSpacing(6)
        row.addWidget(self.perturb_check)
        row.addWidget(self.perturb_slider, 1)
        row.addSpacing(6)
        buttons = QHBoxLayout()
        buttons.setSpacing(2)
        for button in (self.add_child_button, self.remove_child_button, self.add_parent_button,
                       self.remove_parent_button, self.reset_button):
            button.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
            button.setStyleSheet("padding: 3px 6px")  # compact: five of them share a row
            buttons.addWidget(button)
        row.addLayout(buttons)
        return row

    def _build_canvases(self) -> QWidget:
        self.dynamic_canvas = VoteCanvas("Dynamic routing: votes, couplings c_ij, outputs v_j",
                                         unit_circle=True)
        self.dynamic_canvas.setToolTip(FORMULAS["routing"] + "\n" + FORMULAS["squash"])
        self.em_canvas = VoteCanvas("EM routing: votes, responsibilities R_ij, means μ_j ± σ_j",
                                    unit_circle=False)
        self.em_canvas.setToolTip(FORMULAS["em_routing"])
        self.em_canvas.setXLink(self.dynamic_canvas)
        self.em_canvas.setYLink(self.dynamic_canvas)
        for canvas in (self.dynamic_canvas, self.em_canvas):
            canvas.vote_moved.connect(self._on_vote_dragged)
            canvas.add_child_requested.connect(self.add_child)
            canvas.remove_child_requested.connect(self.remove_child)
            canvas.activation_requested.connect(self.set_activation)
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.dynamic_canvas)
        row.addWidget(self.em_canvas)
        return box

    def _build_panels(self) -> QTabWidget:
        self.couplings_panel = CouplingsPanel()
        self.fixed_point_panel = FixedPointPanel()
        self.objective_panel = ObjectivePanel()
        self.lp_panel = AssignmentPanel()
        self.attention_panel = AttentionPanel()
        self.jacobian_panel = JacobianPanel()
        self.equivariance_panel = EquivariancePanel()
        self.attention_routings_panel = AttentionRoutingsPanel()
        self.panels = {
            "couplings": self.couplings_panel, "fixed_point": self.fixed_point_panel,
            "objective": self.objective_panel, "lp": self.lp_panel,
            "attention": self.attention_panel, "jacobians": self.jacobian_panel,
            "equivariance": self.equivariance_panel,
            "attention_routings": self.attention_routings_panel,
        }
        self.tabs = QTabWidget()
        for panel in self.panels.values():
            index = self.tabs.addTab(panel, panel.title)
            self.tabs.setTabToolTip(index, panel.formula)
        self.attention_panel.temperature_changed.connect(self.set_temperature)
        self.jacobian_panel.child_changed.connect(lambda _: self._redraw_panel("jacobians"))
        self.tabs.currentChanged.connect(lambda _: self._draw_panel())
        self.equivariance_panel.theta_changed.connect(self.set_theta)
        norms, squash_eigs, sigmoid_eigs = jacobian_curves()
        self.jacobian_panel.show_curves(norms, squash_eigs, sigmoid_eigs)
        return self.tabs

    # -- the scene, in the app state --------------------------------------------------------
    @property
    def state(self) -> LabState:
        """The lab's votes and settings now (the app state's scene; may be ahead of the drawing
        while it is computed)."""
        return self._app.lab.lab

    @property
    def preset(self) -> str:
        return self._app.lab.preset

    @property
    def iteration(self) -> int:
        return self._iteration

    @property
    def temperature(self) -> float:
        return self.state.temperature

    def is_current(self) -> bool:
        """The drawing shows the scene as it is now (no computation pending)."""
        return self._app.lab_result.ready

    def _edit(self, edit, *args) -> None:
        """One change of the scene: a new scene in the state, computed in the background."""
        self._app.lab = self._app.lab.edited(edit, *args)

    def load_preset(self, key: str) -> None:
        """Replace the lab with a preset: its votes, R, priors off, θ = 0, T = 1, and its tab."""
        self._fit_next = True
        self._iteration = PRESETS[key].iterations
        self._app.lab = LabScene.from_preset(key)
        self._show_preset(key)

    def _show_preset(self, key: str) -> None:
        """The preset's words and its tab."""
        preset = PRESETS[key]
        self._shown_preset = key
        self.explanation.setText(f"<b>{html.escape(preset.title)}.</b> "
                                 f"{html.escape(preset.explanation)}")
        self.tabs.setCurrentWidget(self.panels[preset.panel])

    def set_vote(self, child: int, parent: int, position) -> None:
        """Put vote û_{parent|child} at ``position`` as shown on the canvas."""
        self._edit(LabState.move_vote, child, parent, position)

    def set_iterations(self, iterations: int) -> None:
        iterations = int(np.clip(iterations, 1, MAX_ITERATIONS))
        at_end = self._iteration == self.state.iterations
        self._iteration = iterations if at_end else min(self._iteration, iterations)
        self._edit(setattr, "iterations", iterations)

    @Slot(int)
    def set_iteration(self, r: int) -> None:
        """Show iteration r (1..R) in both canvases and every plot."""
        r = int(np.clip(r, 1, self._drawn.iterations if self._drawn else self.state.iterations))
        if r == self._iteration:
            self._sync_scrubber()
            return
        self._iteration = r
        self._show_iteration()
        self.iteration_changed.emit(r)

    def set_logit_bias(self, on: bool, strength: float | None = None) -> None:
        if strength is not None:
            self.bias_slider.setValue(strength)
        self.bias_check.setChecked(on)
        self._on_priors()

    def set_perturbation(self, on: bool, strength: float | None = None) -> None:
        if strength is not None:
            self.perturb_slider.setValue(strength)
        self.perturb_check.setChecked(on)
        self._on_priors()

    @Slot(float)
    def set_temperature(self, temperature: float) -> None:
        self._edit(setattr, "temperature", float(temperature))

    @Slot(float)
    def set_theta(self, degrees: float) -> None:
        """Turn every vote by θ degrees (the equivariance experiment)."""
        self._edit(setattr, "theta", float(degrees))

    def add_child(self, position=None) -> None:
        if self.state.children < MAX_CHILDREN:
            self._edit(LabState.add_child, position)

    def remove_child(self, child: int) -> None:
        if self.state.children > MIN_CHILDREN:
            self._edit(LabState.remove_child, child)

    def add_parent(self) -> None:
        if self.state.parents < MAX_PARENTS:
            self._edit(LabState.add_parent)

    def remove_parent(self, parent: int) -> None:
        if self.state.parents > MIN_PARENTS:
            self._edit(LabState.remove_parent, parent)

    def set_activation(self, child: int, value: float) -> None:
        self._edit(LabState.set_activation, child, value)

    @Slot(int, int, object)
    def _on_vote_dragged(self, child: int, parent: int, position) -> None:
        self._drag(child, parent, position)  # throttled: at most one scene per DRAG_INTERVAL_MS

    @Slot()
    def _on_priors(self, *_) -> None:
        bias = self.bias_slider.value() if self.bias_check.isChecked() else 0.0
        perturbation = self.perturb_slider.value() if self.perturb_check.isChecked() else 0.0
        self._edit(_set_fields, {"logit_bias": bias, "perturbation": perturbation})

    @Slot(float)
    def _on_lambda(self, value: float) -> None:
        self._edit(setattr, "inverse_temperature", float(value))

    # -- drawing what the state holds ---------------------------------------------------------
    def _scene_changed(self, *_) -> None:
        """Controls follow the scene (a preset, an edit): without sending edits back."""
        lab, preset = self.state, self.preset
        if preset != self._shown_preset:  # another preset, set from elsewhere (the tour)
            self._fit_next = True
            self._iteration = PRESETS[preset].iterations
            self._show_preset(preset)
        widgets = (self.preset_combo, self.iterations_spin, self.bias_check, self.perturb_check,
                   self.attention_panel.temperature, self.equivariance_panel.theta,
                   self.lambda_spin)
        with ExitStack() as stack:
            for widget in widgets:
                stack.enter_context(signals_blocked(widget))
            self.preset_combo.setCurrentIndex(list(PRESETS).index(preset))
            self.iterations_spin.setValue(lab.iterations)
            self.bias_check.setChecked(bool(lab.logit_bias))
            self.perturb_check.setChecked(bool(lab.perturbation))
            self.attention_panel.temperature.setValue(lab.temperature)
            self.equivariance_panel.theta.setValue(int(round(lab.theta)))
            self.lambda_spin.setValue(lab.inverse_temperature)
        self.equivariance_panel.set_theta(lab.theta)
        self.add_child_button.setEnabled(lab.children < MAX_CHILDREN)
        self.remove_child_button.setEnabled(lab.children > MIN_CHILDREN)
        self.add_parent_button.setEnabled(lab.parents < MAX_PARENTS)
        self.remove_parent_button.setEnabled(lab.parents > MIN_PARENTS)
        self.jacobian_panel.child_spin.setRange(0, lab.children - 1)

    def _render(self, *_) -> None:
        """Draw the computed scene (while a newer one is computed: the last one computed):
        the canvases and the theory panel on screen; the others when they are shown."""
        value = self._app.lab_result.value
        if value is None or value[1] is self.result:  # nothing new (a newer scene pending)
            return
        lab, result = value
        self._drawn, self.result = lab, result
        self._iteration = min(max(self._iteration, 1), lab.iterations)
        self._stale = set(self.panels)
        self._show_iteration()
        if self._fit_next:
            self._fit_next = False
            self.dynamic_canvas.fit(np.concatenate([result.votes.reshape(-1, 2),
                                                    result.em.means.reshape(-1, 2)]))
        self.state_changed.emit()

    def _show_iteration(self) -> None:
        result, r = self.result, self._iteration
        if result is None:
            return
        self._sync_scrubber()
        dynamic, em = result.dynamic, result.em
        self.dynamic_canvas.set_votes(result.votes,
                                      vote_labels(result.votes, dynamic.couplings[r - 1]))
        self.dynamic_canvas.set_routing(
            dynamic.outputs[r - 1], dynamic.couplings[r - 1],
            [f"‖v{j}‖ = {np.linalg.norm(v):.2f}" for j, v in enumerate(dynamic.outputs[r - 1])])
        self.em_canvas.set_votes(result.votes, vote_labels(result.votes,
                                                           em.responsibilities[r - 1]))
        self.em_canvas.set_routing(
            em.means[r - 1], em.responsibilities[r - 1],
            [f"μ{j} a={a:.2f}" for j, a in enumerate(em.activations[r - 1])],
            spreads=np.sqrt(em.variances[r - 1]))
        self._stale = set(self.panels)
        self._draw_panel()

    def _draw_panel(self, names=None) -> None:
        """Draw the theory panels ``names`` (the one on screen by default) that are stale."""
        result, lab = self.result, self._drawn
        if result is None:
            return
        r = min(self._iteration, lab.iterations)  # a new preset's r may be ahead of its result
        current = next(k for k, panel in self.panels.items() if panel is self.tabs.currentWidget())
        for name in [current] if names is None else names:
            if name not in self._stale:
                continue
            self._stale.discard(name)
            if name == "couplings":
                self.couplings_panel.show(result.dynamic.couplings, result.em.responsibilities, r)
            elif name == "fixed_point":
                self.fixed_point_panel.show(DELTAS, result.squash_map, result.linear_map,
                                            result.squash_fixed, result.linear_fixed,
                                            result.run_deltas, r)
            elif name == "objective":
                self.objective_panel.show(result.linear_objective, result.squash_objective,
                                          result.squash_potential, r)
            elif name == "lp":
                self.lp_panel.show(result.gap, SCALES, result.scale_distance,
                                   result.scale_value_gap, r)
            elif name == "attention":
                self.attention_panel.show(result.attention(r, lab.temperature),
                                          result.dynamic.couplings[r - 1], lab.temperature,
                                          TEMPERATURES, result.sharpness(r), r)
            elif name == "jacobians":
                child = min(self.jacobian_panel.child_spin.value(), lab.children - 1)
                norms = result.parent_norms(r)
                self.jacobian_panel.show_iteration(norms, squash_eigenvalues(norms).max(axis=1),
                                                   result.softmax_jacobian(r, child), child, r)
            elif name == "equivariance":
                self.equivariance_panel.show(result.equivariance)
            elif name == "attention_routings":
                self.attention_routings_panel.show(result.inverted_attention,
                                                   result.self_attention, r)

    def _sync_scrubber(self) -> None:
        count = self._drawn.iterations
        with signals_blocked(self.scrubber):
            self.scrubber.setRange(1, count)
            self.scrubber.setValue(self._iteration)
        self.iteration_label.setText(f"r = {self._iteration} of {count}")

    def _redraw_panel(self, name: str) -> None:
        self._stale.add(name)
        self._draw_panel()

    # -- export -----------------------------------------------------------------------------
    def export_tables(self) -> dict[str, Table]:
        self._draw_panel(list(self.panels))  # the panels not on screen too
        result, r = self.result, self._iteration
        state = self._drawn  # the scene the drawn numbers are for
        if result is None:
            return {}
        tables: dict[str, Table] = {}
        votes = result.votes
        tables["votes"] = (
            ["child", "parent", "placed_x", "placed_y", "x", "y", "activation"],
            [[i, j, float(state.votes[i, j, 0]), float(state.votes[i, j, 1]),
              float(votes[i, j, 0]), float(votes[i, j, 1]), float(state.activations[i])]
             for i in range(state.children) for j in range(state.parents)])
        dynamic, em = result.dynamic, result.em
        tables["dynamic_couplings"] = (
            ["iteration", "child", "parent", "logit", "coupling", "agreement"],
            [[k + 1, i, j, float(dynamic.logits[k, i, j]), float(dynamic.couplings[k, i, j]),
              float(dynamic.agreement[k, i, j])]
             for k in range(state.iterations) for i in range(state.children)
             for j in range(state.parents)])
        tables["dynamic_outputs"] = (
            ["iteration", "parent", "s_x", "s_y", "v_x", "v_y", "v_length"],
            [[k + 1, j, *map(float, dynamic.preactivations[k, j]),
              *map(float, dynamic.outputs[k, j]),
              float(np.linalg.norm(dynamic.outputs[k, j]))]
             for k in range(state.iterations) for j in range(state.parents)])
        tables["em_responsibilities"] = (
            ["iteration", "child", "parent", "responsibility"],
            [[k + 1, i, j, float(em.responsibilities[k, i, j])]
             for k in range(state.iterations) for i in range(state.children)
             for j in range(state.parents)]
            + [["final", i, j, float(em.final_responsibilities[i, j])]
               for i in range(state.children) for j in range(state.parents)])
        tables["em_parents"] = (
            ["iteration", "parent", "mu_x", "mu_y", "var_x", "var_y", "activation", "lambda"],
            [[k + 1, j, *map(float, em.means[k, j]), *map(float, em.variances[k, j]),
              float(em.activations[k, j]), float(em.inverse_temperatures[k])]
             for k in range(state.iterations) for j in range(state.parents)])
        tables["settings"] = (
            ["preset", "iterations", "iteration_shown", "logit_bias", "perturbation",
             "temperature", "theta_deg", "em_lambda"],
            [[self.preset, state.iterations, r, state.logit_bias, state.perturbation,
              state.temperature, state.theta, state.inverse_temperature]])
        for panel in self.panels.values():
            tables.update(panel.tables())
        return tables

    def export_scenes(self) -> dict[str, pg.GraphicsItem]:
        self._draw_panel(list(self.panels))
        scenes = {"dynamic_canvas": self.dynamic_canvas.getPlotItem(),
                  "em_canvas": self.em_canvas.getPlotItem()}
        for panel in self.panels.values():
            scenes.update(panel.scenes())
        return scenes



def vote_labels(votes: np.ndarray, weights: np.ndarray) -> list[list[str]]:
    """'i: weight' beside each vote; votes at the same spot share one label ('0, 1: 0.50')."""
    children, parents = weights.shape
    labels = [["" for _ in range(parents)] for _ in range(children)]
    for j in range(parents):
        done: set[int] = set()
        for i in range(children):
            if i in done:
                continue
            same = [k for k in range(i, children)
                    if np.allclose(votes[k, j], votes[i, j], atol=1e-9)]
            done.update(same)
            values = {f"{weights[k, j]:.2f}" for k in same}
            names = ", ".join(str(k) for k in same)
            labels[i][j] = (f"{names}: {values.pop()}" if len(values) == 1 else
                            ", ".join(f"{k}: {weights[k, j]:.2f}" for k in same))
    return labels


def _set_fields(lab: LabState, values: dict) -> None:
    for name, value in values.items():
        setattr(lab, name, value)

"""RoutingLabView: what it draws is what the lab's core computes, and its controls act on it."""

import csv

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

from capsviewer.analysis.routing_lab import PRESETS, compute
from capsviewer.app.controller import Controller
from capsviewer.app.export import export_view
from capsviewer.app.state import AppState
from capsviewer.app.views.common import FORMULAS
from capsviewer.app.views.routing_lab_panels import fmt
from capsviewer.app.views.routing_lab_view import RoutingLabView, vote_labels


@pytest.fixture
def view(qtbot):
    """The lab bound to an app state whose controller computes it in the background;
    ``view.settle()`` waits until what is drawn is the scene as it is now."""
    state = AppState()
    controller = Controller(state, predict_test_set=False)
    widget = RoutingLabView(state)
    qtbot.addWidget(widget)
    widget.resize(1400, 900)
    widget.show()
    qtbot.waitExposed(widget)
    widget.settle = lambda: qtbot.waitUntil(widget.is_current, timeout=10000)
    widget.settle()
    yield widget
    controller.shutdown()


def drawn(view):
    view.settle()
    return view.dynamic_canvas.drawn_weights(), view.em_canvas.drawn_weights()


def canvas_point(canvas, xy) -> QPoint:
    """Widget pixel of a point in the canvas's data coordinates."""
    scene = canvas.plot_item.getViewBox().mapViewToScene(QPointF(*xy))
    return canvas.mapFromScene(scene)


def test_opens_on_the_symmetric_preset_drawing_the_core(view):
    assert view.preset == "symmetric" and view.iteration == 5
    expected = compute(PRESETS["symmetric"].state())
    dynamic, em = drawn(view)
    np.testing.assert_array_equal(dynamic, expected.dynamic.couplings[-1])
    np.testing.assert_array_equal(em, expected.em.responsibilities[-1])
    np.testing.assert_allclose(view.dynamic_canvas.drawn_outputs(), expected.dynamic.outputs[-1])
    np.testing.assert_allclose(view.em_canvas.drawn_outputs(), expected.em.means[-1])
    assert "c = (0.500 0.500)" in view.couplings_panel.readout.text()
    assert view.tabs.currentWidget() is view.couplings_panel


def test_setting_a_vote_changes_the_couplings_drawn(view):
    view.load_preset("free")
    view.settle()
    before = drawn(view)[0].copy()
    view.set_vote(0, 1, (1.5, 1.0))
    view.settle()
    dynamic, em = drawn(view)
    assert np.abs(dynamic - before).max() > 0.05
    expected = compute(view.state)
    np.testing.assert_allclose(dynamic, expected.dynamic.couplings[-1])
    np.testing.assert_allclose(em, expected.em.responsibilities[-1])
    np.testing.assert_allclose(view.dynamic_canvas.vote_position(0, 1), [1.5, 1.0])
    np.testing.assert_allclose(view.em_canvas.vote_position(0, 1), [1.5, 1.0])
    widths = view.dynamic_canvas.line_widths()
    np.testing.assert_allclose(widths, 0.5 + 5.5 * dynamic)


def test_dragging_a_vote_with_the_mouse(view, qtbot):
    view.load_preset("free")
    view.settle()
    canvas = view.dynamic_canvas
    start = view.state.effective_votes()[2, 0]
    target = start + np.array([0.6, -0.4])
    press, release = canvas_point(canvas, start), canvas_point(canvas, target)
    QTest.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton,
                     Qt.KeyboardModifier.NoModifier, press)
    for t in np.linspace(0.1, 1.0, 10):
        QTest.mouseMove(canvas.viewport(), press + (release - press) * float(t))
    QTest.mouseRelease(canvas.viewport(), Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier, release)
    qtbot.waitUntil(lambda: np.linalg.norm(view.result.votes[2, 0] - start) > 0.3, timeout=2000)
    np.testing.assert_allclose(view.state.votes[2, 0], target, atol=0.05)  # within a pixel or two
    expected = compute(view.state)
    np.testing.assert_allclose(drawn(view)[0], expected.dynamic.couplings[-1])
    np.testing.assert_allclose(view.em_canvas.vote_position(2, 0), view.state.votes[2, 0])


def test_scrubber_moves_both_panels(view, qtbot):
    view.load_preset("clusters")
    view.settle()
    result = view.result
    with qtbot.waitSignal(view.iteration_changed) as signal:
        view.scrubber.setValue(2)
    assert signal.args == [2] and view.iteration == 2
    dynamic, em = drawn(view)
    np.testing.assert_array_equal(dynamic, result.dynamic.couplings[1])
    np.testing.assert_array_equal(em, result.em.responsibilities[1])
    np.testing.assert_allclose(view.em_canvas.drawn_outputs(), result.em.means[1])
    assert all(line.value() == 2 for line in view.couplings_panel.markers)
    assert view.iteration_label.text() == "r = 2 of 3"
    view.set_iteration(1)
    view.settle()
    assert np.array_equal(drawn(view)[0], np.full((6, 2), 0.5))
    assert np.array_equal(drawn(view)[1], np.full((6, 2), 0.5))
    view.set_iterations(6)
    view.settle()
    assert view.scrubber.maximum() == 6 and view.iteration == 1
    assert view.result.dynamic.couplings.shape[0] == 6


def test_toggling_the_priors_breaks_the_symmetry(view):
    assert np.array_equal(drawn(view)[0], np.full((2, 2), 0.5))
    view.bias_slider.setValue(0.05)
    view.settle()
    view.bias_check.setChecked(True)
    view.settle()
    dynamic, em = drawn(view)
    np.testing.assert_allclose(dynamic[:, 0], 0.5629, atol=5e-5)
    assert np.array_equal(em, np.full((2, 2), 0.5))  # a logit prior of dynamic routing only
    view.set_logit_bias(False)
    view.settle()
    view.set_perturbation(True, 0.05)
    view.settle()
    dynamic, em = drawn(view)
    assert (np.abs(dynamic - 0.5) > 0.2).all() and (np.abs(em - 0.5) > 0.05).all()
    np.testing.assert_allclose(view.result.votes, view.state.effective_votes())
    view.set_perturbation(False)
    view.settle()
    assert np.array_equal(drawn(view)[0], np.full((2, 2), 0.5))


def test_fixed_point_panel_shows_the_measured_slope(view):
    view.load_preset("fixed_point")
    view.settle()
    assert view.tabs.currentWidget() is view.fixed_point_panel
    text = view.fixed_point_panel.readout.text()
    assert "g'(0) = 1.5000 with squash (unstable" in text and "2.0000 with v = s" in text
    x, y = view.fixed_point_panel.squash_curve.getData()
    np.testing.assert_allclose(y, view.result.squash_map)
    view.set_logit_bias(True, 0.01)
    view.settle()
    assert "Δ^(2) / Δ^(1) = 1.500" in view.fixed_point_panel.readout.text()


def test_objective_panel_draws_both_curves(view):
    view.load_preset("objective")
    view.settle()
    _, linear = view.objective_panel.linear_curve.getData()
    _, squash = view.objective_panel.squash_curve.getData()
    np.testing.assert_allclose(linear, view.result.linear_objective)
    np.testing.assert_allclose(squash, view.result.squash_objective)
    assert "falls at 2 steps" in view.objective_panel.readout.text()


def test_temperature_slider_changes_attention_couplings(view, qtbot):
    view.load_preset("attention")
    view.settle()
    panel = view.attention_panel
    np.testing.assert_allclose(panel.drawn_heights(), view.result.dynamic.couplings[-1],
                               atol=1e-12)
    panel.temperature.setValue(0.25)
    view.settle()
    assert view.temperature == pytest.approx(0.25)
    sharp = panel.drawn_heights()
    np.testing.assert_allclose(sharp, view.result.attention(3, 0.25))
    assert sharp.max(axis=1).mean() > view.result.dynamic.couplings[-1].max(axis=1).mean() + 0.05
    view.set_temperature(4.0)
    view.settle()
    assert panel.temperature.value() == pytest.approx(4.0)
    assert panel.drawn_heights().max(axis=1).mean() < 0.7
    view.set_iteration(1)
    view.settle()
    np.testing.assert_allclose(panel.drawn_heights(), 0.5)  # keys are zero at r = 1


def test_theta_rotates_every_vote(view):
    view.load_preset("equivariance")
    view.settle()
    before = view.dynamic_canvas.drawn_outputs()[0]
    view.equivariance_panel.theta.setValue(90)
    view.settle()
    after = view.dynamic_canvas.drawn_outputs()[0]
    np.testing.assert_allclose(after, [-before[1], before[0]], atol=1e-12)
    text = view.equivariance_panel.readout.text()
    assert view.result.equivariance.routing.max() < 1e-12
    routing = fmt(np.rad2deg(view.result.equivariance.routing.max()))
    assert f"dynamic routing {routing}°, EM routing 0.123°" in text and "180.0°" in text
    np.testing.assert_allclose(view.dynamic_canvas.vote_position(0, 0),
                               view.state.effective_votes()[0, 0], atol=1e-9)


def test_add_and_remove_children_and_parents(view):
    view.load_preset("free")
    view.settle()
    view.add_child_button.click()
    view.settle()
    assert view.state.children == 4 and len(view.dynamic_canvas.vote_items) == 4
    view.dynamic_canvas.add_child_requested.emit((0.5, 0.5))
    view.settle()
    np.testing.assert_allclose(view.state.effective_votes()[4, 0], [0.5, 0.5])
    view.em_canvas.remove_child_requested.emit(0)
    view.settle()
    assert view.state.children == 4
    view.add_parent_button.click()
    view.settle()
    assert view.state.parents == 4 and not view.add_parent_button.isEnabled()
    assert drawn(view)[0].shape == (4, 4) and view.couplings_panel.curves["em"].__len__() == 16
    view.remove_parent_button.click()
    view.settle()
    view.em_canvas.activation_requested.emit(1, 0.25)
    view.settle()
    assert view.state.activations[1] == 0.25
    np.testing.assert_allclose(drawn(view)[1], compute(view.state).em.responsibilities[-1])


def test_context_menu_offers_remove_on_a_vote(view):
    view.load_preset("free")
    view.settle()
    canvas = view.dynamic_canvas
    vote = view.state.effective_votes()[1, 2]
    scene = canvas.plot_item.getViewBox().mapViewToScene(QPointF(*vote))
    menu = canvas.context_menu(scene, tuple(vote))
    texts = [action.text() for action in menu.actions()]
    assert texts[:2] == ["Add a child voting here", "Remove child 1"]
    menu.actions()[1].trigger()
    view.settle()
    assert view.state.children == 2
    empty = canvas.context_menu(canvas.plot_item.getViewBox().mapViewToScene(QPointF(9, 9)),
                                (9.0, 9.0))
    assert [a.text() for a in empty.actions()] == ["Add a child voting here"]


def test_every_panel_has_an_explanation_and_a_formula_tooltip(view):
    for panel in view.panels.values():
        assert panel.explanation.text() and panel.formula
        assert panel.plots.toolTip() == panel.formula
    assert FORMULAS["logit_map"] in view.fixed_point_panel.formula


def test_export_writes_the_tables_shown(view, tmp_path):
    view.load_preset("lp")
    view.settle()
    written = export_view(view, tmp_path)
    names = {path.name for path in written}
    for name in ("routing-lab.png", "routing-lab-dynamic-couplings.csv",
                 "routing-lab-em-responsibilities.csv", "routing-lab-fixed-point-map.csv",
                 "routing-lab-objective.csv", "routing-lab-lp-iterations.csv",
                 "routing-lab-attention.csv", "routing-lab-jacobian-eigenvalues.csv",
                 "routing-lab-equivariance.csv", "routing-lab-dynamic-canvas.svg"):
        assert name in names, name
    with open(tmp_path / "routing-lab-dynamic-couplings.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 * 5 * 2
    last = [row for row in rows if row["iteration"] == "8" and row["parent"] == "0"]
    np.testing.assert_allclose([float(row["coupling"]) for row in last],
                               view.result.dynamic.couplings[-1, :, 0])
    with open(tmp_path / "routing-lab-lp-iterations.csv", encoding="utf-8") as handle:
        lp = list(csv.DictReader(handle))
    assert lp[-1]["hard"] == "0 0 1 1 1"


def test_vote_labels_merge_coincident_votes():
    votes = np.array([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.5, 1.0]]])
    labels = vote_labels(votes, np.array([[0.5, 0.5], [0.5, 0.5]]))
    assert labels == [["0, 1: 0.50", "0: 0.50"], ["", "1: 0.50"]]


def test_attention_routings_panel_draws_the_cores_numbers(view, tmp_path):
    view.load_preset("clusters")
    view.settle()
    view.tabs.setCurrentWidget(view.attention_routings_panel)
    expected = compute(PRESETS["clusters"].state())
    panel = view.attention_routings_panel
    heights = np.stack([np.asarray(b.opts["height"]) for b in panel.bars], axis=1)
    np.testing.assert_allclose(heights, expected.self_attention.couplings[0])
    x, y = panel.curves[0].getData()  # child 0, parent 0 across the iterations
    np.testing.assert_allclose(y, expected.inverted_attention.couplings[:, 0, 0])
    assert "child 5: r = (" in panel.readout.text()
    view.set_iteration(1)  # the first iteration routes uniformly (poses start at 0)
    view.settle()
    assert "child 0: r = (0.500 0.500)" in panel.readout.text()
    written = export_view(view, tmp_path)
    assert "routing-lab-attention-routings.csv" in {p.name for p in written}

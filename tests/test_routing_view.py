"""RoutingView draws exactly the core's routing trace, iteration by iteration, and by default
in a way that shows it: the deviation from uniform couplings, on a scale that gives contrast."""

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPoint, QPointF, Qt

import pyqtgraph as pg  # after PySide6

from capsviewer.analysis.inspection import inspect_capsnet
from capsviewer.analysis.routing_diagnostics import inspection_diagnostics
from capsviewer.analysis.routing_maps import ROBUST_PERCENTILE, rendered_spread
from capsviewer.data.transforms import as_batch
from capsviewer.app.views.common import FORMULAS
from capsviewer.app.views.grid_mosaic import mosaic, tile_origin
from capsviewer.app.views.routing_view import RoutingView
from capsviewer.training import load_checkpoint


@pytest.fixture(scope="module")
def capsnet(model_files):
    return load_checkpoint(model_files["capsnet"]).model


@pytest.fixture(scope="module")
def image(mnist_test):
    return mnist_test.images[0, 0]


@pytest.fixture(scope="module")
def inspections(capsnet, image):
    return {count: inspect_capsnet(capsnet, image, iterations=count) for count in (2, 3, 5)}


def core_couplings(model, image, iterations: int) -> list[np.ndarray]:
    """c_ij of every iteration from the core's own trace, on the grid (32, 6, 6, 10)."""
    with torch.no_grad():
        out = model(as_batch(image, torch.device("cpu")), iterations=iterations, trace=True)
    return [model.config.as_primary_grid(step.couplings, 1)[0].numpy() for step in out.routing.trace]


@pytest.fixture
def view(qtbot):
    widget = RoutingView()
    qtbot.addWidget(widget)
    widget.resize(1000, 700)
    widget.show()
    return widget


def assert_mosaic_of(item_image: np.ndarray, grid: np.ndarray) -> None:
    np.testing.assert_array_equal(item_image, mosaic(grid))
    for grid_map in range(grid.shape[0]):
        y, x = tile_origin(grid_map, grid.shape)
        np.testing.assert_array_equal(item_image[y:y + 6, x:x + 6], grid[grid_map])


@pytest.mark.parametrize("count", [3, 5])
def test_each_iteration_shows_the_core_trace(view, capsnet, image, inspections, count):
    capsules = inspections[count]
    expected = core_couplings(capsnet, image, count)
    view.show_inspection(capsules)
    assert view.quantity == "deviation"  # the default: couplings compared with uniform
    view.set_quantity("couplings")
    assert view.iteration == count and view.digit == capsules.prediction
    assert view.slider.maximum() == count and view.iterations_spin.value() == count
    for j in (capsules.prediction, (capsules.prediction + 3) % 10):
        view.select_capsule(j)
        for r in range(1, count + 1):
            view.set_iteration(r)
            assert view.iteration == r
            np.testing.assert_array_equal(view.displayed_couplings(), expected[r - 1][..., j])
            assert_mosaic_of(view.mosaic_item.image, expected[r - 1][..., j])
            top = max(c[..., j].max() for c in expected)  # one scale for every iteration
            assert tuple(np.asarray(view.mosaic.levels)) == pytest.approx((0.0, top))
            # drawn on those levels (pyqtgraph once kept an item's first levels instead)
            assert tuple(view.mosaic_item.levels) == pytest.approx((0.0, top))
            assert view.iteration_label.text() == f"iteration {r} of {count}"
    # iteration 1 routes uniformly: c_ij = 1/J
    view.set_iteration(1)
    np.testing.assert_allclose(view.displayed_couplings(), 0.1, rtol=1e-6)


def test_buttons_and_slider_move_the_iteration(view, qtbot, inspections):
    view.show_inspection(inspections[5])
    view.set_iteration(1)
    assert not view.previous_button.isEnabled() and view.next_button.isEnabled()
    with qtbot.waitSignal(view.iteration_changed) as changed:
        qtbot.mouseClick(view.next_button, Qt.MouseButton.LeftButton)
    assert changed.args == [2] and view.iteration == 2
    view.next_iteration()
    assert view.iteration == 3 and view.slider.value() == 3
    view.previous_iteration()
    assert view.iteration == 2
    qtbot.mouseClick(view.last_button, Qt.MouseButton.LeftButton)
    assert view.iteration == 5 and not view.next_button.isEnabled()
    view.next_iteration()  # clamped at R
    assert view.iteration == 5
    qtbot.mouseClick(view.first_button, Qt.MouseButton.LeftButton)
    assert view.iteration == 1
    view.previous_iteration()
    assert view.iteration == 1
    view.slider.setValue(4)  # scrubbing
    assert view.iteration == 4
    np.testing.assert_array_equal(view.displayed_couplings(),
                                  inspections[5].iterations[3].couplings[..., view.digit])
    view.set_iteration(99)
    assert view.iteration == 5


def test_play_animates_to_the_last_iteration_and_stops(view, qtbot, inspections):
    view.show_inspection(inspections[5])
    view.play_timer.setInterval(10)
    view.set_iteration(1)
    seen = []
    view.iteration_changed.connect(seen.append)
    qtbot.mouseClick(view.play_button, Qt.MouseButton.LeftButton)
    assert view.playing and view.play_button.text() == "Pause"
    qtbot.waitUntil(lambda: view.iteration == 5, timeout=15000)
    qtbot.waitUntil(lambda: not view.playing, timeout=5000)
    assert seen == [2, 3, 4, 5] and view.play_button.text() == "Play"
    # playing again from the last iteration starts over at 1
    view.toggle_play()
    assert view.iteration == 1 and view.playing
    view.toggle_play()
    assert not view.playing and view.iteration == 1


def test_iterations_spin_asks_for_a_recomputation(view, qtbot, inspections):
    view.show_inspection(inspections[3])
    with qtbot.waitSignal(view.iterations_changed) as asked:
        view.iterations_spin.setValue(5)
    assert asked.args == [5]
    with qtbot.assertNotEmitted(view.iterations_changed):
        view.set_iteration(2)
        view.show_inspection(inspections[5])  # same image, R = 5: the iteration and capsule stay
        assert view.iteration == 2 and view.slider.maximum() == 5
        view.set_iteration(5)
        view.show_inspection(inspections[2])  # r clamps to the new R
    assert view.iteration == 2 and view.iterations_spin.value() == 2
    assert view.iteration_label.text() == "iteration 2 of 2"


def test_selecting_a_capsule_changes_couplings_and_part_map(view, qtbot, inspections):
    capsules = inspections[3]
    view.show_inspection(capsules)
    first = capsules.prediction
    other = (first + 1) % 10
    before = view.displayed_couplings().copy()
    heat_before = view.part_map_item.image.copy()
    np.testing.assert_array_equal(heat_before, capsules.part_map(first, 2))
    with qtbot.waitSignal(view.capsule_selected) as selected:
        qtbot.mouseClick(view.digit_buttons[other], Qt.MouseButton.LeftButton)
    assert selected.args == [other] and view.digit == other
    assert view.digit_buttons[other].isChecked() and not view.digit_buttons[first].isChecked()
    assert not np.array_equal(view.displayed_couplings(), before)
    np.testing.assert_array_equal(view.displayed_couplings(), capsules.iterations[2].couplings[..., other])
    assert not np.array_equal(view.part_map_item.image, heat_before)
    np.testing.assert_array_equal(view.part_map_item.image, capsules.part_map(other, 2))
    # the boxes frame the receptive fields of the three strongest parts
    for box, (_, row, col, _) in zip(view.part_boxes, capsules.strongest_parts(other, 3, 2)):
        top, left, bottom, right = capsules.receptive_fields[row, col]
        rect = box.rect()
        assert box.isVisible()
        assert left <= rect.left() < left + 1 and top <= rect.top() < top + 1
        assert right - 1 < rect.right() <= right and bottom - 1 < rect.bottom() <= bottom
    # the highlighted bar follows the selection
    assert view.length_bars.highlight == other and view.share_bars.highlight == other


def test_clicking_a_parent_length_bar_selects_the_capsule(view, qtbot, inspections):
    view.show_inspection(inspections[3])
    target = (view.digit + 4) % 10
    plot = view.length_bars
    scene_point = plot.getPlotItem().getViewBox().mapViewToScene(QPointF(target, 0.5))
    point = plot.mapFromScene(scene_point)
    with qtbot.waitSignal(view.capsule_selected) as selected:
        qtbot.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(point.x(), point.y()))
    assert selected.args == [target] and view.digit == target


def test_quantities_logits_and_agreement(view, inspections):
    capsules = inspections[3]
    view.show_inspection(capsules)
    j = view.digit
    view.set_quantity("logits")
    view.set_iteration(2)
    snapshot = capsules.iterations[1]
    np.testing.assert_array_equal(view.displayed_values(), snapshot.logits[..., j])
    assert_mosaic_of(view.mosaic_item.image, snapshot.logits[..., j])
    every = np.abs([s.logits[..., j] for s in capsules.iterations])  # one scale for all r
    bound = np.percentile(every, ROBUST_PERCENTILE)
    assert view.mosaic.levels == pytest.approx((-bound, bound))
    assert FORMULAS["routing"] in view.mosaic.toolTip()
    # b at r = 2 is the agreement of r = 1 (b starts at 0)
    np.testing.assert_allclose(view.displayed_values(), capsules.iterations[0].agreement[..., j])
    view.set_quantity("agreement")
    np.testing.assert_array_equal(view.displayed_values(), snapshot.agreement[..., j])
    assert FORMULAS["agreement"] in view.mosaic.toolTip()
    # the couplings accessor is unaffected by what the mosaic shows
    np.testing.assert_array_equal(view.displayed_couplings(), snapshot.couplings[..., j])
    view.map_combo.setCurrentIndex(view.map_combo.findData("couplings"))  # as a user picks it
    assert view.quantity == "couplings"
    assert_mosaic_of(view.mosaic_item.image, snapshot.couplings[..., j])
    every = np.stack([s.couplings[..., j] for s in capsules.iterations])
    assert view.mosaic.levels == pytest.approx((0.0, every.max()))  # 0…max: no saturation
    with pytest.raises(ValueError):
        view.set_quantity("votes")


def test_the_default_map_is_the_deviation_from_uniform_faded_by_activity(view, inspections):
    capsules = inspections[3]
    view.show_inspection(capsules)
    j, J = view.digit, 10
    for r in (1, 3):
        view.set_iteration(r)
        deviation = capsules.iterations[r - 1].couplings[..., j] - 1 / J
        np.testing.assert_allclose(view.displayed_values(), deviation, atol=1e-7)
        assert_mosaic_of(view.mosaic_item.image, view.displayed_values())
    every = np.abs([s.couplings[..., j] - 1 / J for s in capsules.iterations])
    bound = np.percentile(every, ROBUST_PERCENTILE)
    assert view.mosaic.levels == pytest.approx((-bound, bound))  # symmetric about uniform
    assert "c" in view.mosaic.colour_bar.getAxis("right").labelText  # labelled in its units
    # faded by ‖u_i‖: the veil is opaque where a primary capsule is weak, clear where strong
    weights = view.mosaic.weights
    np.testing.assert_allclose(weights, capsules.primary_lengths / capsules.primary_lengths.max())
    alpha = view.mosaic.veil.image[..., 3]
    y, x = tile_origin(0, (32, 6, 6))
    weakest = np.unravel_index(np.argmin(weights[0]), (6, 6))
    strongest = np.unravel_index(np.argmax(weights[0]), (6, 6))
    assert alpha[y + weakest[0], x + weakest[1]] > alpha[y + strongest[0], x + strongest[1]]
    assert "compared with uniform" in view.mosaic.plot.titleLabel.text  # the mode is named


def test_change_since_the_previous_iteration(view, inspections):
    capsules = inspections[5]
    view.show_inspection(capsules)
    view.set_quantity("change")
    j = view.digit
    view.set_iteration(1)
    assert not view.displayed_values().any()  # nothing has changed at r = 1
    assert "nothing has changed" in view.mosaic.readout.text()
    for r in (2, 4):
        view.set_iteration(r)
        expected = (capsules.iterations[r - 1].couplings[..., j]
                    - capsules.iterations[r - 2].couplings[..., j])
        np.testing.assert_allclose(view.displayed_values(), expected, atol=1e-7)
    view.set_quantity("support")
    np.testing.assert_allclose(view.displayed_values(), capsules.contributions(j, 3))
    assert view.mosaic.weights is None and view.mosaic.levels[0] == 0.0


def cell_colours(panel) -> np.ndarray:
    """The colour drawn at the centre of every primary-capsule cell of a MosaicPanel (N, 3)."""
    image = panel.graphics.grab().toImage()
    grid = panel.values.shape
    colours = []
    for index in np.ndindex(grid):
        y, x = tile_origin(index[0], grid)
        centre = panel.image.mapToScene(QPointF(x + index[2] + 0.5, y + index[1] + 0.5))
        pixel = panel.graphics.mapFromScene(centre)
        colour = image.pixelColor(pixel.x(), pixel.y())
        colours.append((colour.red(), colour.green(), colour.blue()))
    return np.array(colours)


def test_the_shipped_capsnet_s_default_map_has_contrast(view, mnist_test):
    """Test image 0 on the shipped CapsNet: the cells' colours spread over more than 60 of 255
    levels between their 5th and 95th percentiles. The map before this view (c_ij on 0…max,
    viridis) spread over 8: one flat colour."""
    from capsviewer.training.model_files import SHIPPED_MODELS, find_models

    shipped = find_models("mnist", [SHIPPED_MODELS]).get("capsnet")
    if shipped is None:
        pytest.skip("the shipped CapsNet is not in this checkout")
    capsules = inspect_capsnet(load_checkpoint(shipped).model, mnist_test.images[0, 0])
    view.show_inspection(capsules)
    assert view.quantity == "deviation"
    assert rendered_spread(cell_colours(view.mosaic)) > 60
    view.set_quantity("couplings")  # the old picture, for comparison: flat
    assert rendered_spread(cell_colours(view.mosaic)) < 30


def test_the_finding_names_a_planted_dominant_part(view, capsnet, image):
    """A CapsNet whose votes from one primary capsule are made 300× longer: the sentence names
    that capsule, its share and where it looks."""
    import copy

    planted = copy.deepcopy(capsnet)
    grid_map, row, col = 9, 2, 4
    i = (grid_map * 6 + row) * 6 + col
    with torch.no_grad():
        planted.digit_weights[i] *= 300
    capsules = inspect_capsnet(planted, image)
    view.show_inspection(capsules)
    finding = view.finding
    assert (finding.grid_map, finding.row, finding.col) == (grid_map, row, col)
    assert finding.dominant and finding.vote_ratio > 20
    text = view.finding_text.text()
    assert "map 9, row 2, col 4" in text and f"{finding.share:.0%}" in text
    top, left, bottom, right = capsules.receptive_fields[row, col]
    assert f"rows {top}–{bottom - 1}, columns {left}–{right - 1}" in text
    view.show_inspection(inspections_of(capsnet, image))  # the untrained model: spread out
    assert "map 9, row 2, col 4" not in view.finding_text.text()


def inspections_of(model, image):
    return inspect_capsnet(model, image)


def test_hovering_a_cell_frames_its_receptive_field(view, inspections):
    capsules = inspections[3]
    view.show_inspection(capsules)
    view.mosaic.cell_hovered.emit((4, 1, 5))
    top, left, bottom, right = capsules.receptive_fields[1, 5]
    rect = view.hover_box.rect()
    assert view.hover_box.isVisible()
    assert (rect.left(), rect.top(), rect.right(), rect.bottom()) == (left, top, right, bottom)
    view.mosaic.cell_hovered.emit(None)
    assert not view.hover_box.isVisible()


def test_a_strongest_part_link_decodes_its_vote(view, qtbot, inspections):
    capsules = inspections[3]
    view.show_inspection(capsules)
    grid_map, row, col, _ = capsules.strongest_parts(view.digit, 1)[0]
    index = (grid_map * 6 + row) * 6 + col
    assert f"part:{index}" in view.parts_text.text()
    view.parts_text.linkActivated.emit(f"part:{index}")
    assert view.selected_parts() == (index,)


def test_readout_names_the_cell(view, inspections):
    capsules = inspections[3]
    view.show_inspection(capsules)
    y, x = tile_origin(13, (32, 6, 6))
    text = view.mosaic.readout_at(x + 4 + 0.5, y + 2 + 0.5)
    value = capsules.iterations[-1].couplings[13, 2, 4, view.digit] - 0.1
    assert text == f"map 13 · row 2 · col 4 · c_ij − 1/J = {value:.4g}"
    assert view.mosaic.readout_at(x + 6.5, y + 0.5) is None  # the gap between tiles


def test_plots_and_summaries(view, inspections):
    capsules = inspections[5]
    view.show_inspection(capsules)
    view.set_iteration(2)
    snapshot = capsules.iterations[1]
    np.testing.assert_allclose(view.length_bars.heights(), snapshot.parent_lengths)
    weights = capsules.primary_lengths[..., None]
    share = (snapshot.couplings * weights).sum(axis=(0, 1, 2)) / weights.sum()
    np.testing.assert_allclose(view.share_bars.heights(), share, rtol=1e-6)
    assert share.sum() == pytest.approx(1.0, rel=1e-5)
    assert view.iteration_line.value() == 2
    for k, curve in enumerate(view.history_curves):
        xs, ys = curve.getData()
        np.testing.assert_array_equal(xs, np.arange(1, 6))
        np.testing.assert_allclose(ys, [s.parent_lengths[k] for s in capsules.iterations])
    tips = " ".join(w.toolTip() for w in (view.mosaic, view.length_bars, view.history,
                                            view.share_bars, view.overlay, view.parts_text))
    for formula in ("coupling", "routing", "votes"):
        assert FORMULAS[formula] in tips
    agreement = view.map_combo.findData("agreement")
    assert FORMULAS["agreement"] in view.map_combo.itemData(agreement, Qt.ItemDataRole.ToolTipRole)


def test_export(view, inspections):
    capsules = inspections[3]
    view.show_inspection(capsules)
    view.set_iteration(2)
    tables = view.export_tables()
    header, rows = tables["iteration-2"]
    assert len(header) == 3 + 30 and len(rows) == 32 * 6 * 6
    grid_map, row, col = 5, 1, 3
    line = rows[grid_map * 36 + row * 6 + col]
    assert line[:3] == [grid_map, row, col]
    np.testing.assert_allclose(line[3:13], capsules.iterations[1].couplings[grid_map, row, col])
    np.testing.assert_allclose(line[13:23], capsules.iterations[1].logits[grid_map, row, col])
    np.testing.assert_allclose(line[23:], capsules.iterations[1].agreement[grid_map, row, col])
    header, rows = tables["parent-lengths"]
    assert len(rows) == 3 and rows[2][0] == 3
    np.testing.assert_allclose(rows[2][1:], capsules.iterations[2].parent_lengths)
    scenes = view.export_scenes()
    assert set(scenes) == {"mosaic", "parent-lengths", "length-history", "mean-couplings"}
    assert all(isinstance(item, pg.PlotItem) for item in scenes.values())
    assert not view.export_widget().grab().isNull()


def test_without_an_inspection_everything_is_disabled(view, inspections):
    view.show_inspection(inspections[3])
    view.show_inspection(None)
    assert view.displayed_couplings() is None and view.export_tables() == {}
    assert not view.play_button.isEnabled() and not view.next_button.isEnabled()
    assert view.mosaic_item.image is None
    assert view.mosaic.placeholder.toPlainText()
    view.next_iteration()
    view.toggle_play()
    assert view.iteration == 1 and not view.playing


ROUTING_TITLES = {"uniform": "Couplings c<sub>ij</sub> = 1/J (no routing)",
                  "self-attention": "Self-attention weights c<sub>ij</sub>",
                  "inverted-attention": "Routing weights r<sub>ij</sub>"}


@pytest.fixture(scope="module")
def routed_models():
    """Seeded, untrained CapsNets of the other vector routings (the core's, as saved)."""
    from capsviewer.models import build_model

    models = {}
    for routing in ROUTING_TITLES:
        torch.manual_seed(0)
        models[routing] = build_model("capsnet", {"routing": routing}).eval()
    if models["self-attention"].log_priors is not None:  # trained priors are not zero
        with torch.no_grad():
            models["self-attention"].log_priors.normal_(0, 0.01)
    return models


@pytest.mark.parametrize("routing", sorted(ROUTING_TITLES))
def test_every_vector_routing_shows_its_own_weights_named_as_its_paper_does(
        view, routed_models, image, routing):
    """Uniform: c_ij = 1/J and no routing; self-attention: its one pass's weights; inverted
    attention: r_ij per iteration. Drawn are the core trace's assignments, never called
    dynamic routing's couplings."""
    model = routed_models[routing]
    capsules = inspect_capsnet(model, image)
    expected = core_couplings(model, image, model.config.routing_iterations)
    view.show_inspection(capsules)
    assert view.routing == routing and capsules.routing == routing
    view.set_quantity("couplings")
    title = view.mosaic.plot.titleLabel.text
    assert title.startswith(ROUTING_TITLES[routing])
    assert len(capsules.iterations) == len(expected) == (3 if routing == "inverted-attention"
                                                          else 1)
    for r in range(1, len(expected) + 1):
        view.set_iteration(r)
        np.testing.assert_array_equal(view.displayed_couplings(),
                                      expected[r - 1][..., view.digit])
        assert_mosaic_of(view.mosaic_item.image, expected[r - 1][..., view.digit])
    label = view.routing_label.text()
    if routing == "uniform":
        np.testing.assert_allclose(view.displayed_couplings(), 0.1, rtol=1e-6)
        assert "no routing" in label and "c<sub>ij</sub> = 1/J" in label
        assert set(view.mode_keys()) == {"deviation", "support", "couplings"}
    if routing == "self-attention":
        assert "one pass" in label and "Efficient-CapsNet" in label
        assert not np.allclose(view.displayed_couplings(), 0.1)  # attention, not uniform
        assert "β_ij" in view.mosaic.toolTip()  # the priors s_j adds are named
        assert "change" not in view.mode_keys() and "agreement" not in view.mode_keys()
        view.diagnostics_view.show_diagnostics(inspection_diagnostics(capsules))
        assert view.diagnostics_view.summary.text().startswith("One pass of self-attention")
    if routing == "inverted-attention":
        assert "r<sub>ij</sub>" in view.share_bars.getPlotItem().titleLabel.text
        assert "class score" in view.length_bars.getPlotItem().titleLabel.text
        assert not any(line.isVisible() for line in view.length_bars.margin_lines)
        view.set_quantity("logits")
        assert "a<sub>ij</sub>" in view.mosaic.plot.titleLabel.text
    one_pass = routing != "inverted-attention"
    assert view.iterations_spin.isEnabled() != one_pass
    view.show_ablation(None)
    if one_pass:
        assert "runs in one pass" in view.ablation_view.summary.text()
    for quantity in view.mode_keys():  # every map the routing offers draws
        view.set_quantity(quantity)
        assert view.quantity == quantity
        if routing != "uniform":  # attention weights are never called couplings
            assert "oupling" not in view.mosaic.plot.titleLabel.text

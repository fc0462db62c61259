"""PredictionView draws the numbers it is given; the primary-grid mosaic lays tiles out exactly."""

import numpy as np
import pytest
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QPointF
from PySide6.QtWidgets import QApplication

from capsviewer.analysis.inspection import inspect_capsnet, inspect_cnn
from capsviewer.app.views.common import FORMULAS
from capsviewer.app.views.grid_mosaic import cell_at, mosaic, mosaic_shape, tile_origin
from capsviewer.app.views.prediction_view import PredictionView, headline
from capsviewer.training import load_checkpoint


@pytest.fixture(scope="module")
def inspections(model_files, mnist_test):
    image = mnist_test.images[0, 0]
    capsnet = load_checkpoint(model_files["capsnet"]).model
    cnn = load_checkpoint(model_files["cnn"]).model
    return inspect_capsnet(capsnet, image), inspect_cnn(cnn, image), int(mnist_test.labels[0])


@pytest.fixture
def view(qtbot):
    widget = PredictionView()
    qtbot.addWidget(widget)
    widget.resize(1000, 700)
    widget.show()
    assert widget.isVisible()
    return widget


def test_mosaic_layout_and_inverse():
    values = np.arange(32 * 6 * 6, dtype=np.float32).reshape(32, 6, 6)
    image = mosaic(values)
    assert image.shape == mosaic_shape(values.shape) == (4 * 6 + 3, 8 * 6 + 7)
    assert np.isnan(image).sum() == image.size - values.size  # only the gaps are empty
    for grid_map in range(32):
        y, x = tile_origin(grid_map, values.shape)
        assert (y, x) == ((grid_map // 8) * 7, (grid_map % 8) * 7)
        np.testing.assert_array_equal(image[y:y + 6, x:x + 6], values[grid_map])
        for row in range(6):
            for col in range(6):
                assert cell_at(x + col + 0.5, y + row + 0.5, values.shape) == (grid_map, row, col)
    assert cell_at(6.5, 0.5, values.shape) is None and cell_at(0.5, 6.5, values.shape) is None
    assert cell_at(-1, 0, values.shape) is None and cell_at(200, 0, values.shape) is None


def test_bars_equal_the_lengths_and_probabilities(view, inspections):
    capsules, cnn, label = inspections
    view.show_inspection(capsules, cnn, label)
    np.testing.assert_array_equal(view.capsule_bars.heights(), capsules.lengths)
    np.testing.assert_array_equal(view.cnn_bars.heights(), cnn.probabilities)
    assert view.capsule_bars.highlight == capsules.prediction
    assert view.cnn_bars.highlight == cnn.prediction
    brushes = view.capsule_bars.bars.opts["brushes"]
    assert brushes[capsules.prediction].color() != brushes[(capsules.prediction + 1) % 10].color()
    for bars in (view.capsule_bars, view.cnn_bars):
        assert bars.truth.isVisible() and list(bars.truth.opts["x"]) == [label]
        assert bars.bars.isVisible() and bars.placeholder.toPlainText() == ""
        assert bars.getPlotItem().getViewBox().viewRange()[1][0] <= 0
        assert bars.getPlotItem().getViewBox().viewRange()[1][1] >= 1
    margins = sorted(item.value() for item in view.capsule_bars.getPlotItem().items
                     if isinstance(item, pg.InfiniteLine))
    assert margins == [0.1, 0.9]
    named = view.capsule_bars.getPlotItem().getAxis("right")._tickLevels[0]  # off the bars
    assert sorted(named) == [(0.1, "m⁻ 0.1"), (0.9, "m⁺ 0.9")]
    assert view.headline.text() == (
        f"CapsNet: {capsules.prediction} (‖v‖ = {capsules.lengths[capsules.prediction]:.2f}, "
        f"R = {len(capsules.iterations)}) · "
        f"CNN: {cnn.prediction} (p = {cnn.probabilities[cnn.prediction]:.2f}) · label {label}"
    )


def test_images_and_primary_mosaic(view, inspections):
    capsules, cnn, label = inspections
    view.show_inspection(capsules, cnn, label)
    np.testing.assert_array_equal(view.input_panel.item.image, capsules.image)
    np.testing.assert_array_equal(view.reconstruction_panel.item.image, capsules.reconstruction)
    np.testing.assert_array_equal(view.primary.image.image, mosaic(capsules.primary_lengths))
    assert view.primary.levels == (0.0, 1.0)
    y, x = tile_origin(20, (32, 6, 6))
    assert view.primary.readout_at(x + 1.5, y + 5.5) == (
        f"map 20 · row 5 · col 1 · ‖u_i‖ = {capsules.primary_lengths[20, 5, 1]:.4g}")


def test_hovering_the_mosaic_reads_out_the_cell(view, qtbot, inspections):
    capsules, cnn, label = inspections
    view.show_inspection(capsules, cnn, label)
    qtbot.waitExposed(view)
    QApplication.processEvents()  # the new image laid out before mapping into it
    y, x = tile_origin(9, (32, 6, 6))
    scene_point = view.primary.image.mapToScene(QPointF(x + 3.5, y + 2.5))
    point = view.primary.graphics.mapFromScene(scene_point)
    qtbot.mouseMove(view.primary.graphics.viewport(), QPoint(point.x(), point.y()))
    value = capsules.primary_lengths[9, 2, 3]
    assert view.primary.readout_at(x + 3.5, y + 2.5) == f"map 9 · row 2 · col 3 · ‖u_i‖ = {value:.4g}"
    expected = f"map 9 · row 2 · col 3 · ‖u<sub>i</sub>‖ = {value:.4g}"  # rendered
    qtbot.waitUntil(lambda: view.primary.readout.text() == expected, timeout=1000)
    assert view.primary.image.toolTip() == expected


def test_missing_cnn_shows_a_placeholder(view, inspections):
    capsules, _, label = inspections
    view.show_inspection(capsules, None, label)
    assert view.cnn_bars.placeholder.toPlainText() == "No CNN loaded"
    assert not view.cnn_bars.bars.isVisible() and not view.cnn_bars.truth.isVisible()
    assert view.capsule_bars.bars.isVisible()
    np.testing.assert_array_equal(view.capsule_bars.heights(), capsules.lengths)
    assert "CNN: not loaded" in view.headline.text()
    header, rows = view.export_tables()["classes"]
    assert rows[0][3] == "" and rows[0][2] == pytest.approx(float(capsules.lengths[0]))


def test_missing_capsnet_shows_placeholders(view, inspections, mnist_test):
    _, cnn, label = inspections
    pixels = mnist_test.images[0, 0].numpy() / 255.0
    view.show_inspection(None, cnn, label, image=pixels)
    assert view.capsule_bars.placeholder.toPlainText() == "No CapsNet loaded"
    assert view.primary.placeholder.toPlainText() == "No CapsNet loaded"
    assert view.primary.image.image is None
    assert view.reconstruction_panel.item.image is None
    assert view.reconstruction_panel.placeholder.toPlainText()
    np.testing.assert_allclose(view.input_panel.item.image, pixels, rtol=1e-6)
    np.testing.assert_array_equal(view.cnn_bars.heights(), cnn.probabilities)
    assert view.headline.text().startswith("CapsNet: not loaded · CNN: ")
    assert "primary_lengths" not in view.export_tables()
    view.show_inspection(None, None, None)
    assert view.headline.text() == "No image analysed yet"
    assert view.export_tables() == {}


def test_headline_uses_class_names(inspections):
    capsules, cnn, _ = inspections
    assert headline(None, None, 3) == "CapsNet: not loaded · CNN: not loaded · label 3"
    assert headline(capsules, None, None).startswith(f"CapsNet: {capsules.prediction} (‖v‖ = ")


def test_tooltips_and_export(view, inspections):
    capsules, cnn, label = inspections
    view.show_inspection(capsules, cnn, label)
    assert FORMULAS["squash"] in view.capsule_bars.toolTip()
    assert FORMULAS["margin"] in view.capsule_bars.toolTip()
    assert FORMULAS["cnn"] in view.cnn_bars.toolTip()
    tables = view.export_tables()
    header, rows = tables["classes"]
    assert header[:4] == ["class", "name", "capsule_length", "cnn_probability"]
    np.testing.assert_allclose([r[2] for r in rows], capsules.lengths)
    np.testing.assert_allclose([r[3] for r in rows], cnn.probabilities)
    assert [r[4] for r in rows] == [int(k == label) for k in range(10)]
    header, rows = tables["primary_lengths"]
    assert header == ["map", "row", "col", "length"] and len(rows) == 32 * 6 * 6
    assert rows[7 * 36 + 2 * 6 + 4][:3] == [7, 2, 4]
    assert rows[7 * 36 + 2 * 6 + 4][3] == pytest.approx(float(capsules.primary_lengths[7, 2, 4]))
    assert set(view.export_scenes()) >= {"capsule_lengths", "cnn_probabilities"}
    assert not view.export_widget().grab().isNull()


def test_fashion_class_names_fit_the_bar_axis_and_stay_whole_in_the_headline(view, inspections):
    from dataclasses import replace

    from capsviewer.data import DATASETS

    names = DATASETS["fashion-mnist"].classes
    capsules, cnn = (replace(x, class_names=names) for x in inspections[:2])
    view.show_inspection(capsules, cnn, 9)
    ticks = view.capsule_bars.getPlotItem().getAxis("bottom")._tickLevels[0]
    assert [k for k, _ in ticks] == list(range(10))
    assert max(len(text) for _, text in ticks) <= 5 and ticks[9][1] == "Boot"
    assert f"label {names[9]}" in view.headline.text()


def test_short_vertical_axis_numbers_fewer_ticks(qtbot):
    """A 0–1 axis 60 px tall numbers 0, 0.5, 1 (pyqtgraph alone packs 0.2 … 0.8 edge to edge);
    the finer ticks stay as unnumbered grid lines, and a tall axis is left as pyqtgraph has it."""
    from capsviewer.app.views.common import RoomyAxis
    from capsviewer.app.views.prediction_view import ClassBars

    bars = ClassBars("‖v_j‖", "‖v_j‖")
    qtbot.addWidget(bars)
    axis = bars.getPlotItem().getAxis("left")
    assert isinstance(axis, RoomyAxis)
    plain = pg.AxisItem("left")
    assert plain.tickSpacing(0.0, 1.0, 60)[0][0] == pytest.approx(0.2)
    assert axis.tickSpacing(0.0, 1.0, 60) == [(0.5, 0), (pytest.approx(0.2), 0)]
    assert axis.tickStrings([0.2, 0.4], 1.0, 0.2) == ["", ""]
    assert axis.tickStrings([0.0, 0.5, 1.0], 1.0, 0.5) == plain.tickStrings([0.0, 0.5, 1.0], 1.0, 0.5)
    assert axis.tickSpacing(0.0, 1.0, 600) == plain.tickSpacing(0.0, 1.0, 600)
    assert axis.tickStrings([0.2, 0.4], 1.0, 0.2) == ["0.2", "0.4"]


def test_alternate_class_ticks_name_odd_classes_as_minor():
    from capsviewer.app.views.common import class_ticks

    names = [str(k) for k in range(10)]
    major, minor = class_ticks(names, alternate=True)
    assert [k for k, _ in major] == [0, 2, 4, 6, 8] and [k for k, _ in minor] == [1, 3, 5, 7, 9]
    assert class_ticks(names) == [[(k, str(k)) for k in range(10)]]

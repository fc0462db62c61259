"""The routing tab's panels, through the main window: diagnostics, vote cloud, decoded votes
and the ablation show exactly what the core computes."""

import math

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPoint, QPointF, QSettings, Qt

from capsviewer.analysis.inspection import inspect_capsnet
from capsviewer.analysis.routing_diagnostics import (
    UPDATES,
    VoteSelection,
    accuracy_by_updates,
    decode_vote,
    inspection_diagnostics,
    inspection_vote_cloud,
    routing_ablation,
)
from capsviewer.app.main_window import MainWindow
from capsviewer.app.views.common import rich
from capsviewer.app.views.grid_mosaic import tile_origin
from capsviewer.app.views.vote_cloud_view import dot_sizes
from capsviewer.training import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def strong_capsnet(model_files, tmp_path_factory):
    """The seeded CapsNet with its vote weights W_ij scaled by 100: untrained votes are so
    short that routing leaves the couplings at 1/J ± 1e-7; these move them about as much as
    training does (c_ij from 0.05 to 0.18 after two updates)."""
    model = load_checkpoint(model_files["capsnet"]).model
    with torch.no_grad():
        model.digit_weights.mul_(100)
    path = tmp_path_factory.mktemp("strong") / "capsnet-strong.safetensors"
    return save_checkpoint(path, model, {"dataset": {"name": "mnist"}, "epoch": 0})


@pytest.fixture(scope="module")
def core_model(strong_capsnet):
    return load_checkpoint(strong_capsnet).model.eval()


@pytest.fixture
def window(qtbot, strong_capsnet, model_files, data_root, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    models = {"capsnet": strong_capsnet, "cnn": model_files["cnn"]}
    window = MainWindow(models, data_root=str(data_root), settings=settings, download=False,
                        show_errors=False, predict_test_set=False)
    qtbot.addWidget(window)
    window.resize(1360, 860)
    window.show()
    routing = window.routing_view
    qtbot.waitUntil(lambda: set(window.session.models) == set(models) and window.inspection is not None
                    and routing.ablation_view.ablation is not None and window.is_idle(), timeout=30000)
    window.tabs.setCurrentWidget(routing)
    yield window
    window.shutdown()


def click_scene(qtbot, graphics_view, view_box, x: float, y: float, modifier=Qt.KeyboardModifier.NoModifier):
    """Left-click the point (x, y) of ``view_box``'s coordinates in ``graphics_view``."""
    point = graphics_view.mapFromScene(view_box.mapViewToScene(QPointF(x, y)))
    qtbot.mouseClick(graphics_view.viewport(), Qt.MouseButton.LeftButton, modifier,
                     QPoint(point.x(), point.y()))


def test_diagnostics_plot_shows_the_core_numbers(qtbot, window, core_model, mnist_test):
    routing, panel = window.routing_view, window.routing_view.diagnostics_view
    expected = inspection_diagnostics(inspect_capsnet(core_model, mnist_test.images[0, 0]))
    for name in ("entropy", "weighted_entropy", "max_coupling", "weighted_max_coupling", "objective"):
        steps, values = panel.curve_data(name)
        np.testing.assert_array_equal(steps, [1, 2, 3])
        np.testing.assert_allclose(values, getattr(expected, name), rtol=1e-6)
    assert panel.baselines["entropy"].value() == pytest.approx(math.log(10))
    assert panel.baselines["max_coupling"].value() == pytest.approx(0.1)
    assert "log 10 = 2.3026" in panel.baselines["entropy"].label.toPlainText()
    assert panel.summary.text() == rich(expected.summary())
    assert expected.max_coupling[-1] > 0.105  # these strong votes do move the couplings
    routing.set_iteration(2)
    assert all(marker.value() == 2 for marker in panel.markers)
    # the honest scale: 0 … log J unless zoomed
    assert panel.plots["entropy"].viewRange()[1][0] == pytest.approx(0.0)
    panel.zoom.setChecked(True)
    low, high = panel.plots["entropy"].viewRange()[1]
    assert low > 2.0 and high < 2.4
    table = panel.export_tables()["per-iteration"][1]
    assert table[2][5] == pytest.approx(expected.objective[2])
    with qtbot.waitSignal(window.analysis_shown, timeout=10000):
        routing.iterations_spin.setValue(5)
    qtbot.waitUntil(window.is_idle, timeout=10000)
    steps, values = panel.curve_data("entropy")
    expected = inspection_diagnostics(inspect_capsnet(core_model, mnist_test.images[0, 0], 5))
    np.testing.assert_array_equal(steps, np.arange(1, 6))
    np.testing.assert_allclose(values, expected.entropy, rtol=1e-6)


def test_scrubbing_moves_the_vote_cloud_dot_sizes(qtbot, window):
    routing, cloud = window.routing_view, window.routing_view.cloud_view
    routing.panels.setCurrentWidget(cloud)
    capsules, j = window.inspection, routing.digit
    expected = inspection_vote_cloud(capsules, j)
    np.testing.assert_allclose(cloud.cloud.coordinates, expected.coordinates)
    xs, ys = cloud.dots.getData()
    np.testing.assert_allclose(np.c_[xs, ys], expected.coordinates)
    at_last = cloud.sizes().copy()
    np.testing.assert_allclose(at_last, dot_sizes(capsules.iterations[-1].couplings[..., j].reshape(-1)))
    routing.set_iteration(1)
    np.testing.assert_allclose(cloud.sizes(), 8.0, rtol=1e-6)  # uniform: c = 1/J → 8 px
    routing.set_iteration(2)
    at_two = cloud.sizes().copy()
    assert np.abs(at_two - 8.0).max() > 1.0 and np.abs(at_last - at_two).max() > 0.5
    np.testing.assert_allclose(cloud.centre.getData()[0], [expected.centres[1][0]])
    # another digit capsule: another cloud
    other = (j + 1) % 10
    routing.select_capsule(other)  # computed in the background
    qtbot.waitUntil(lambda: cloud.cloud is not None and cloud.cloud.digit == other, timeout=5000)
    np.testing.assert_allclose(cloud.cloud.coordinates, inspection_vote_cloud(capsules, other).coordinates)
    # clicking a dot selects that primary capsule for decoding
    i = int(np.argmax(np.linalg.norm(cloud.cloud.coordinates, axis=1)))  # an outlier: no overlap
    x, y = cloud.cloud.coordinates[i]
    click_scene(qtbot, cloud.plot_widget, cloud.plot.getViewBox(), x, y)
    assert i in routing.selected_parts()
    assert len(cloud.selected.getData()[0]) == len(routing.selected_parts())


def test_clicking_primary_capsules_decodes_their_votes(qtbot, window, core_model):
    routing, decoder = window.routing_view, window.routing_view.decoder_view
    qtbot.waitUntil(lambda: decoder.decoded is not None, timeout=5000)  # the strongest part
    capsules, j = window.inspection, routing.digit
    strongest = int(np.argmax(capsules.contributions(j).reshape(-1)))
    assert decoder.decoded.selection.children == (strongest,)
    view_box = routing.mosaic.plot.getViewBox()

    def click_cell(grid_map, row, col, modifier=Qt.KeyboardModifier.NoModifier):
        y, x = tile_origin(grid_map, (32, 6, 6))
        with qtbot.waitSignal(window.routing_view.vote_decode_requested, timeout=5000):
            click_scene(qtbot, routing.mosaic.graphics, view_box, x + col + 0.5, y + row + 0.5,
                        modifier)
        qtbot.waitUntil(lambda: window.is_idle() and decoder.decoded is not None
                        and decoder.decoded.selection == decoder.selection(), timeout=5000)
        return decoder.decoded

    first = click_cell(5, 2, 3)
    assert first.selection.children == (5 * 36 + 2 * 6 + 3,)
    assert routing.panels.currentWidget() is decoder
    expected = decode_vote(core_model, capsules, first.selection)
    np.testing.assert_allclose(decoder.decoded_panel.item.image, expected.image, atol=1e-6)
    xs, ys = routing.selection_marks.getData()
    assert list(xs) == [tile_origin(5, (32, 6, 6))[1] + 3.5] and list(ys) == [2.5]
    second = click_cell(20, 4, 1)
    assert second.selection.children == (20 * 36 + 4 * 6 + 1,)
    assert np.abs(second.image - first.image).max() > 1e-3  # another part, another prediction
    both = click_cell(5, 2, 3, Qt.KeyboardModifier.ControlModifier)  # Ctrl adds
    assert set(both.selection.children) == {20 * 36 + 4 * 6 + 1, 5 * 36 + 2 * 6 + 3}
    np.testing.assert_allclose(both.image, decode_vote(core_model, capsules, both.selection).image,
                               atol=1e-6)
    assert len(routing.selection_marks.getData()[0]) == 2
    # the options change what the decoder gets
    decoder.scale.setCurrentIndex(decoder.scale.findData("raw"))
    qtbot.waitUntil(lambda: window.is_idle() and decoder.decoded.selection.scale == "raw", timeout=5000)
    np.testing.assert_allclose(decoder.decoded.pose, decoder.decoded.combined, rtol=1e-6)
    # a point of the part map: the 32 capsules at the grid cell centred nearest it
    with qtbot.waitSignal(routing.vote_decode_requested, timeout=5000) as asked:
        click_scene(qtbot, routing.overlay, routing.overlay.view, 8.6 + 2 * 3, 8.4 + 2 * 1)
    assert asked.args[0].children == tuple(m * 36 + 1 * 6 + 3 for m in range(32))
    # all parts, weighted by the couplings and squashed: the ordinary reconstruction
    decoder.scale.setCurrentIndex(decoder.scale.findData("squash"))
    decoder.all_button.click()
    qtbot.waitUntil(lambda: window.is_idle() and len(decoder.decoded.selection.children) == 1152
                    and decoder.decoded.selection.scale == "squash", timeout=5000)
    assert j == capsules.prediction  # a new image selects the predicted capsule
    np.testing.assert_allclose(decoder.decoded.image, capsules.reconstruction, atol=1e-5)
    np.testing.assert_allclose(decoder.decoded.pose, capsules.poses[j], atol=1e-6)


def test_ablation_panel_shows_one_column_per_k(qtbot, window, core_model, mnist_test):
    panel = window.routing_view.ablation_view
    window.routing_view.panels.setCurrentWidget(panel)
    expected = routing_ablation(core_model, mnist_test.images[0, 0])
    assert panel.column_count() == len(UPDATES) == 5
    assert "k = 0" in panel.headers[0].text() and "uniform, r = 1" in panel.headers[0].text()
    assert "as trained" in panel.headers[2].text()
    for n in range(5):
        np.testing.assert_allclose(panel.images[n].item.image, expected.reconstructions[n], atol=1e-6)
    np.testing.assert_allclose(panel.bar_heights(), expected.lengths, rtol=1e-6)
    assert panel.scores[0].text() == "test accuracy: —"
    panel.count.setValue(100)
    with qtbot.waitSignal(window.routing_view.accuracy_requested) as asked:
        panel.measure_button.click()
    assert asked.args == [100] and panel.measure_button.text() == "Cancel"  # while it runs
    qtbot.waitUntil(lambda: panel.accuracy is not None and window.is_idle(), timeout=60000)
    assert panel.measure_button.text() == "Measure test accuracy" and not panel.progress.isVisible()
    subset = mnist_test.subset(100, seed=0)
    measured = accuracy_by_updates(core_model, subset.images, subset.labels)
    for n in range(5):
        assert f"{100 * measured.accuracy[n]:.2f} %" in panel.scores[n].text()
    rows = panel.export_tables()["accuracy"][1]
    assert [row[2] for row in rows] == [int(c) for c in measured.correct]


def test_export_writes_the_panels(window, tmp_path):
    written = window.export_views([window.routing_view], tmp_path)
    names = {p.name for p in written}
    for name in ("routing.png", "routing-diagnostics.png", "routing-diagnostics-per-iteration.csv",
                 "routing-vote-cloud.png", "routing-vote-cloud-votes.csv", "routing-vote-cloud-plot.svg",
                 "routing-vote-decoder.png", "routing-ablation.png", "routing-ablation-lengths.csv",
                 "routing-ablation-lengths.svg"):
        assert name in names, name
        assert (tmp_path / name).stat().st_size > 100
    votes = (tmp_path / "routing-vote-cloud-votes.csv").read_text().splitlines()
    assert len(votes) == 1 + 1152


def test_decode_results_for_an_old_selection_are_dropped(window, core_model):
    decoder = window.routing_view.decoder_view
    old = VoteSelection(window.routing_view.digit, (1,), "sum", "raw")
    stale = decode_vote(core_model, window.inspection, old)
    before = decoder.decoded
    decoder.show_decoded(stale)
    assert decoder.decoded is before

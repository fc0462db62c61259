"""PoseView: sliders offset a capsule's pose, the decoder's image is what is drawn."""

import numpy as np
import pytest
import torch

from capsviewer.analysis.pose import PAPER_OFFSETS, perturbation_grid, reconstruct
from capsviewer.app.views.pose_view import PoseView, image_mosaic
from capsviewer.training import load_checkpoint

NAMES = [str(d) for d in range(10)]


@pytest.fixture
def pose():
    return np.random.default_rng(0).normal(0, 0.2, 16).astype(np.float32)


@pytest.fixture
def view(qtbot, pose):
    widget = PoseView()
    qtbot.addWidget(widget)
    widget.set_capsule(3, pose, NAMES)
    return widget


@pytest.fixture(scope="module")
def capsnet(model_files):
    return load_checkpoint(model_files["capsnet"]).model


def test_set_capsule_selects_and_resets(view, pose, qtbot):
    assert view.digit() == 3 and view.capsule_combo.currentIndex() == 3
    np.testing.assert_array_equal(view.offsets(), np.zeros(16))
    np.testing.assert_allclose(view.current_pose(), pose)
    view.set_offset(2, 0.1)
    received = []
    view.pose_changed.connect(received.append)
    view.set_capsule(5, pose * 2, NAMES)  # one request to decode the new capsule's own pose
    assert view.digit() == 5 and len(received) == 1
    assert received[0][0] == 5
    np.testing.assert_allclose(received[0][1], pose * 2)
    np.testing.assert_array_equal(view.offsets(), np.zeros(16))
    with qtbot.assertNotEmitted(view.capsule_selected):
        view.set_capsule(6, pose, NAMES)  # the controller's choice is not a user request


@pytest.mark.parametrize("dimension, offset", [(0, 0.1), (7, -0.25), (15, 0.037)])
def test_slider_emits_pose_with_one_dimension_offset(view, pose, qtbot, dimension, offset):
    with qtbot.waitSignal(view.pose_changed) as signal:
        view.sliders[dimension].setValue(offset)
    digit, emitted = signal.args[0]
    assert digit == 3
    expected = pose.copy()
    expected[dimension] += np.float32(offset)
    np.testing.assert_allclose(emitted, expected, rtol=0, atol=1e-7)
    others = np.arange(16) != dimension
    np.testing.assert_array_equal(emitted[others], pose[others])
    assert view.offsets()[dimension] == pytest.approx(offset)


def test_every_move_emits(view, qtbot):
    received = []
    view.pose_changed.connect(received.append)
    for value in np.linspace(-0.2, 0.2, 9):
        view.set_offset(4, value)
    assert len(received) == 9
    assert received[-1][1][4] == pytest.approx(view.current_pose()[4])


def test_reset_zeroes_and_emits_once(view, pose, qtbot):
    view.set_offset(1, 0.2)
    view.set_offset(9, -0.1)
    received = []
    view.pose_changed.connect(received.append)
    view.reset_button.click()
    assert len(received) == 1
    np.testing.assert_array_equal(view.offsets(), np.zeros(16))
    np.testing.assert_allclose(received[0][1], pose)


def test_range_change_rescales_sliders(view, qtbot):
    assert view.sliders[0].minimum() == pytest.approx(-0.25)
    assert view.sliders[0].maximum() == pytest.approx(0.25)
    view.set_offset(6, 0.2)
    with qtbot.assertNotEmitted(view.pose_changed):
        view.set_slider_range(1.0)  # nothing clamped: the pose is unchanged
    assert all(s.maximum() == pytest.approx(1.0) and s.minimum() == pytest.approx(-1.0)
               for s in view.sliders)
    view.set_offset(6, 0.8)
    assert view.offsets()[6] == pytest.approx(0.8)
    with qtbot.waitSignal(view.pose_changed) as signal:
        view.set_slider_range(0.5)  # 0.8 is clamped to 0.5
    assert view.offsets()[6] == pytest.approx(0.5)
    assert signal.args[0][1][6] == pytest.approx(view.current_pose()[6])
    view.set_offset(6, 3.0)
    assert view.offsets()[6] == pytest.approx(0.5)


def test_capsule_selector_emits(view, qtbot):
    with qtbot.waitSignal(view.capsule_selected) as signal:
        view.capsule_combo.setCurrentIndex(8)
    assert signal.args == [8]


def test_show_reconstruction_changes_pixels(view):
    image = np.zeros((28, 28), np.float32)
    image[5:10, 5:20] = 0.8
    view.show_reconstruction(image)
    np.testing.assert_array_equal(view.reconstruction_item.image, image)
    view.show_reconstruction(1 - image)
    np.testing.assert_array_equal(view.reconstruction_item.image, 1 - image)
    view.set_input_image((image * 255).astype(np.uint8))
    np.testing.assert_allclose(view.input_item.image, image, atol=1 / 255)


def test_end_to_end_with_the_decoder(view, capsnet, qtbot, pose):
    """Emitted pose → core decoder → shown: the drawn pixels are the decoder's."""
    received = []
    view.pose_changed.connect(lambda payload: received.append(payload))
    view.set_offset(11, -0.15)
    digit, emitted = received[-1]
    image = reconstruct(capsnet, emitted, digit)
    view.show_reconstruction(image)
    np.testing.assert_array_equal(view.reconstruction_item.image, image)
    with torch.no_grad():
        direct = capsnet.decode_pose(torch.from_numpy(emitted)[None], 3)[0, 0].numpy()
    np.testing.assert_array_equal(view.reconstruction_item.image, direct)
    assert not np.array_equal(image, reconstruct(capsnet, pose, 3))


def test_grid_request_and_mosaic(view, capsnet, qtbot, pose):
    with qtbot.waitSignal(view.grid_requested) as signal:
        view.grid_button.click()
    digit, grid_pose, offsets = signal.args[0]
    assert digit == 3
    np.testing.assert_allclose(grid_pose, pose)
    np.testing.assert_allclose(offsets, PAPER_OFFSETS)
    grid = perturbation_grid(capsnet, grid_pose, digit, offsets)
    view.show_grid(grid, offsets)
    drawn = view.grid_item.image
    assert drawn.shape == (16 * 29 - 1, 11 * 29 - 1)
    np.testing.assert_array_equal(drawn, image_mosaic(grid))
    np.testing.assert_array_equal(drawn[2 * 29:2 * 29 + 28, 4 * 29:4 * 29 + 28], grid[2, 4])
    major, minor = view.grid_plot.getAxis("bottom")._tickLevels
    assert sorted(major + minor) == [(k, f"{o:+.2f}") for k, o in enumerate(PAPER_OFFSETS)]
    assert "perturbation_grid_offsets" in view.export_tables()


def test_export_tables(view, pose):
    view.set_offset(0, 0.05)
    (header, rows), = [v for k, v in view.export_tables().items() if k.startswith("pose_")]
    assert header == ["dimension", "capsule_pose", "offset", "decoded_pose"]
    assert len(rows) == 16
    assert rows[0][2] == pytest.approx(0.05) and rows[0][3] == pytest.approx(pose[0] + 0.05)
    assert set(view.export_scenes()) == {"perturbation_grid", "reconstruction"}


def test_disabled_until_a_capsule_is_set(qtbot):
    view = PoseView()
    qtbot.addWidget(view)
    assert not view.sliders[0].isEnabled() and view.current_pose() is None
    with qtbot.assertNotEmitted(view.pose_changed):
        view.set_offset(0, 0.1)
    assert view.export_tables() == {}
    assert view.sliders[0].toolTip().startswith("Pose dimension 0")
    assert "decoder" in view.reconstruction_box.toolTip()

"""RotationView: the bars and sweep curves drawn are the numbers the core computed."""

import numpy as np
import pytest

from capsviewer.analysis.rotation import DEFAULT_ANGLES, rotation_sweep
from capsviewer.app.views.rotation_view import RotationView, describe_sweep, sweep_angles
from capsviewer.data.transforms import rotate_images, to_float
from capsviewer.training import load_checkpoint

NAMES = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def models(model_files):
    return (load_checkpoint(model_files["capsnet"]).model,
            load_checkpoint(model_files["cnn"]).model)


@pytest.fixture(scope="module")
def digit(mnist_test):
    return to_float(mnist_test.images[0, 0]).numpy(), int(mnist_test.labels[0])


@pytest.fixture(scope="module")
def sweep(models, digit):
    capsnet, cnn = models
    image, label = digit
    return rotation_sweep(capsnet, cnn, image, DEFAULT_ANGLES, label=label)


@pytest.fixture
def view(qtbot):
    widget = RotationView()
    qtbot.addWidget(widget)
    return widget


def test_angle_slider_emits(view, qtbot):
    with qtbot.waitSignal(view.angle_changed) as signal:
        view.angle_slider.setValue(-35)
    assert signal.args == [-35.0] and isinstance(signal.args[0], float)
    assert view.angle() == -35.0
    assert all(line.value() == -35 for line in view.angle_lines)
    view.set_angle(400)
    assert view.angle() == 180.0


def test_sweep_button_emits_the_angles(view, qtbot):
    with qtbot.waitSignal(view.sweep_requested) as signal:
        view.sweep_button.click()
    angles = signal.args[0]
    assert len(angles) == 72
    np.testing.assert_array_equal(angles, DEFAULT_ANGLES)
    view.step_spin.setValue(30)
    with qtbot.waitSignal(view.sweep_requested) as signal:
        view.sweep_button.click()
    np.testing.assert_array_equal(signal.args[0], np.arange(-180, 180, 30))
    assert len(sweep_angles(1)) == 360


def test_show_angle_draws_the_inputs(view, models, digit):
    capsnet, cnn = models
    image, _ = digit
    single = rotation_sweep(capsnet, cnn, image, np.array([40.0]))
    view.show_angle(single.images[0], single.cnn_probabilities[0], single.capsule_lengths[0],
                    NAMES)
    np.testing.assert_array_equal(view.image_item.image, single.images[0])
    np.testing.assert_allclose(view.cnn_bars.opts["height"], single.cnn_probabilities[0])
    np.testing.assert_allclose(view.capsule_bars.opts["height"], single.capsule_lengths[0])
    assert view.cnn_bars.isVisible() and view.capsule_bars.isVisible()
    table = view.export_tables()["rotation_at_angle"]
    assert [row[2] for row in table[1]] == pytest.approx(single.capsule_lengths[0].tolist())
    view.show_angle(single.images[0], None, single.capsule_lengths[0], NAMES)
    assert not view.cnn_bars.isVisible()
    assert view.export_tables()["rotation_at_angle"][1][0][1] == ""


def test_margins_on_the_capsule_chart(view):
    lines = [item.value() for item in view.capsule_plot.items
             if type(item).__name__ == "InfiniteLine"]
    assert sorted(lines) == [0.1, 0.9]


def test_show_sweep_curves_equal_the_sweep(view, sweep, qtbot):
    view.show_sweep(sweep)
    ref = sweep.reference_class
    for item, expected in (
        (view.cnn_curve, sweep.cnn_probabilities[:, ref]),
        (view.capsule_curve, sweep.capsule_lengths[:, ref]),
        (view.cnn_prediction_points, sweep.cnn_predictions),
        (view.capsule_prediction_points, sweep.capsule_predictions),
    ):
        x, y = item.getData()
        assert len(x) == 72
        np.testing.assert_array_equal(x, DEFAULT_ANGLES)
        np.testing.assert_allclose(y, expected, rtol=0, atol=1e-7)
    # the untrained capsule is never present: no pose to follow, and the plot says so
    assert sweep.plane is None
    assert "off at 0°" in view.sweep_placeholders[1].toPlainText()
    assert view.reference_line.value() == ref
    assert f"Following class {ref} (the true label) over 72 angles" in view.summary.text()
    header, rows = view.export_tables()["rotation_sweep"]
    assert header[0] == "angle_deg" and len(rows) == 72
    assert rows[10][0] == DEFAULT_ANGLES[10]
    assert rows[10][2] == pytest.approx(sweep.capsule_lengths[10, ref])
    assert rows[10][4] == sweep.capsule_predictions[10]
    assert set(view.export_scenes()) == {"rotation_scores", "rotation_sweep"}


def test_sweep_at_the_angle_matches_show_angle_inputs(sweep, models):
    """The sweep's rotated image at θ is the same image the single-angle path rotates."""
    index = int(np.flatnonzero(sweep.angles == 45)[0])
    direct = rotate_images(sweep.images[np.flatnonzero(sweep.angles == 0)[0]], [45.0])[0]
    np.testing.assert_allclose(sweep.images[index], direct, atol=1e-6)


def test_sweep_without_capsnet(view, models, digit):
    _, cnn = models
    image, _ = digit
    cnn_only = rotation_sweep(None, cnn, image, sweep_angles(30))
    view.show_sweep(cnn_only)
    assert len(view.cnn_curve.getData()[0]) == 12
    x, _ = view.capsule_curve.getData()
    assert x is None or len(x) == 0
    assert "CapsNet" not in view.summary.text() and "CNN prediction at 0°" in view.summary.text()
    assert view.export_tables()["rotation_sweep"][1][0][2] == ""


@pytest.fixture(scope="module")
def shipped_sweep(mnist_test):
    from capsviewer.training.model_files import SHIPPED_MODELS

    capsnet = load_checkpoint(SHIPPED_MODELS / "capsnet-mnist.safetensors").model.eval()
    cnn = load_checkpoint(SHIPPED_MODELS / "cnn-mnist.safetensors").model.eval()
    return rotation_sweep(capsnet, cnn, mnist_test.images[0, 0], DEFAULT_ANGLES,
                          int(mnist_test.labels[0]))


def test_the_pose_angle_is_drawn_where_the_capsule_is_present(view, shipped_sweep):
    sweep = shipped_sweep
    view.show_sweep(sweep)
    x, y = view.plane_points.getData()
    np.testing.assert_array_equal(x, sweep.angles[sweep.pose_run])
    np.testing.assert_allclose(y, sweep.plane.plane_angles)
    x, y = view.plane_line.getData()
    np.testing.assert_allclose(y, sweep.plane.slope * x + sweep.plane.intercept)
    assert not any(placeholder.toPlainText() for placeholder in view.sweep_placeholders)
    view.clear_sweep()
    assert view.sweep_placeholders[0].toPlainText() == "no sweep yet"
    assert view.plane_points.getData()[0] is None or not len(view.plane_points.getData()[0])


def test_describe_sweep_says_it_plainly_first(shipped_sweep):
    sweep = shipped_sweep
    first, *details = describe_sweep(sweep, NAMES).split("\n")
    low, high = sweep.capsule_correct_range
    assert first.startswith("Turning this 7, the CNN from") and "still see a 7" in first
    assert f"the CapsNet from {low:+.0f}° to {high:+.0f}°" in first
    assert f"its pose turns {sweep.plane.slope:.1f}° for each degree the digit turns" in first
    text = "\n".join(details)
    assert "CNN:" in text and "CapsNet:" in text and f"φ ≈ {sweep.plane.slope:.2f}·θ" in text

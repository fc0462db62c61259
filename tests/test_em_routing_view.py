"""The Routing tab steps through a matrix-capsule network's EM routing on the current input:
R_ij per part, a_j, σ_j and λ per iteration, with the CapsNet's scrubber, computed in the
background and equal to the core's trace."""

import numpy as np
import pytest
import torch

from capsviewer.analysis.em_inspection import inspect_em
from capsviewer.analysis.preprocess import InputImage
from capsviewer.app.controller import Controller
from capsviewer.app.session import load_model_entry
from capsviewer.app.state import EM, AppState
from capsviewer.app.views.em_routing_panel import em_values
from capsviewer.app.views.grid_mosaic import mosaic
from capsviewer.app.views.routing_view import RoutingView
from capsviewer.data.transforms import as_batch
from capsviewer.models import build_model
from capsviewer.training import save_checkpoint
from capsviewer.training.model_files import SHIPPED_MODELS, find_models

SMALL = {"conv_channels": 16, "conv2_channels": 32, "routing_iterations": 3}
MATRIX_SMALL = {"conv_channels": 8, "primary_types": 4, "conv_caps1_types": 4,
                "conv_caps2_types": 4, "routing_iterations": 2}


@pytest.fixture(scope="module")
def em_file(tmp_path_factory):
    """The shipped matrix-capsule model when there is one, else a seeded untrained one."""
    shipped = find_models("mnist", [SHIPPED_MODELS]).get("em-capsnet")
    if shipped is not None:
        return shipped
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("em") / "em-capsnet-mnist.safetensors"
    return save_checkpoint(path, build_model("em-capsnet", SMALL),
                           {"dataset": {"name": "mnist"}, "epoch": 0})


def image_of(mnist_test, index: int) -> InputImage:
    pixels = (mnist_test.images[index, 0].numpy() * 255).round().astype(np.uint8) \
        if mnist_test.images.dtype.is_floating_point else mnist_test.images[index, 0].numpy()
    return InputImage(pixels, int(mnist_test.labels[index]), f"test #{index}", index)


@pytest.fixture
def routing(qtbot, model_files, em_file, mnist_test):
    """A RoutingView bound to a state with a CapsNet, the EM model and test image 0."""
    state = AppState()
    controller = Controller(state, predict_test_set=False)
    view = RoutingView()
    qtbot.addWidget(view)
    view.resize(1100, 720)
    view.bind(state)
    view.show()
    cpu = torch.device("cpu")
    with state.events.paused():
        em = load_model_entry(em_file, cpu)
        state.set_models({"capsnet": load_model_entry(model_files["capsnet"], cpu),
                          em.architecture: em})
        state.choose_image(image_of(mnist_test, 0))
    qtbot.waitUntil(lambda: controller.is_idle() and state.analysis.ready, timeout=30000)
    yield state, controller, view
    controller.shutdown()


def show_em(qtbot, state, controller, view):
    state.routing_model = EM
    qtbot.waitUntil(lambda: controller.is_idle() and state.em_analysis.ready
                    and view.em is state.em_analysis.value, timeout=30000)


def core_trace(model, pixels, iterations=None):
    with torch.no_grad():
        out = model.eval()(as_batch(pixels, torch.device("cpu")), iterations=iterations,
                           trace=True)
    return out


def test_the_em_model_is_offered_and_computed_only_when_asked(qtbot, routing):
    state, controller, view = routing
    assert view.model_combo.isVisible() and not view.em_mode
    assert state.em_analysis.value is None and not state.em_analysis.pending  # not asked
    view.model_combo.setCurrentIndex(view.model_combo.findData(EM))
    assert state.routing_model == EM and view.em_mode
    qtbot.waitUntil(lambda: controller.is_idle() and view.em is not None, timeout=30000)
    assert view.body_stack.currentWidget() is view.em_panel
    assert not view.panels.isVisible()  # the CapsNet's diagnostics and ablation
    assert "EM routing" in view.routing_label.text()
    assert view.digit_label.text() == "Class capsule j:"
    assert [view.map_combo.itemData(k) for k in range(view.map_combo.count())] == [
        "support", "responsibilities", "deviation"]


def test_every_iteration_shows_the_core_trace(qtbot, routing, mnist_test):
    state, controller, view = routing
    show_em(qtbot, state, controller, view)
    model = state.em_model
    out = core_trace(model, state.image.pixels)
    trace = out.routing.trace
    assert view.iteration_count == len(trace) == model.config.routing_iterations
    assert view.iteration == len(trace)  # a new input starts at the last iteration
    j = view.digit
    assert j == int(out.scores[0].argmax())  # the EM model's own prediction
    child_a = out.class_inputs[0].permute(2, 0, 1).numpy()  # (types, rows, cols)
    previous = None
    for t in range(1, len(trace) + 1):
        view.slider.setValue(t)
        assert view.iteration == t and state.routing_step == t
        step = trace[t - 1]
        r = model.config.as_class_input_grid(step.responsibilities[0], 0).permute(3, 2, 0, 1)
        expected = (r[j].numpy() * child_a)
        np.testing.assert_allclose(view.em_panel.shown, expected, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(view.em_panel.mosaic.image.image, mosaic(expected, 4),
                                   rtol=1e-5, atol=1e-7)  # 4 × 4 tiles of 5 × 5
        np.testing.assert_allclose(view.em_panel.activation_bars.heights(),
                                   step.activations[0].numpy(), rtol=1e-5)
        sigma = np.exp(0.5 * np.log(step.variance[0].numpy()).mean(axis=1))
        np.testing.assert_allclose(view.em_panel.sigma_bars.heights(), sigma, rtol=1e-5)
        text = view.em_panel.numbers.text()
        assert f"<b>λ<sub>{t}</sub> = {step.inverse_temperature:.3g}</b>" in text
        if t == 1:  # EM starts from uniform responsibilities
            np.testing.assert_allclose(r.numpy(), 0.1, rtol=1e-6)
            assert "R starts uniform" in text
        if previous is not None:
            assert not np.allclose(view.em_panel.shown, previous)  # the E-step moved R
        previous = view.em_panel.shown.copy()
    view.set_quantity("responsibilities")
    every_class = np.stack([em_values(view.em, "responsibilities", k, view.iteration - 1)
                            for k in range(10)])
    np.testing.assert_allclose(every_class.sum(axis=0), 1.0, rtol=1e-5)  # Σ_j R_ij = 1


def test_iterations_capsule_and_image_recompute_and_never_show_an_old_result(
        qtbot, routing, mnist_test):
    state, controller, view = routing
    show_em(qtbot, state, controller, view)
    view.iterations_spin.setValue(5)
    assert state.iterations == 5
    qtbot.waitUntil(lambda: controller.is_idle() and view.em is state.em_analysis.value
                    and len(view.em.steps) == 5, timeout=30000)
    assert view.iteration_count == 5 and view.slider.maximum() == 5
    view.em_panel.activation_bars.class_clicked.emit(3)
    assert view.digit == 3 and state.capsule == 3
    assert "class capsule 3" in view.em_panel.mosaic.plot.titleLabel.text

    state.choose_image(image_of(mnist_test, 1))
    assert view.em is None and "computing" in view.em_panel.mosaic.placeholder.textItem.toPlainText()
    qtbot.waitUntil(lambda: controller.is_idle() and view.em is not None, timeout=30000)
    expected = inspect_em(state.em_model, state.image.pixels, 5)
    np.testing.assert_allclose(view.em.activations, expected.activations, rtol=1e-5)
    assert np.array_equal(view.em_panel.overlay.item.image, expected.image)
    assert view.digit == expected.prediction  # a new input: the EM model's own prediction


def test_unloading_the_em_model_goes_back_to_the_capsnet(qtbot, routing):
    state, controller, view = routing
    show_em(qtbot, state, controller, view)
    state.set_models({"capsnet": state.models["capsnet"]})
    assert state.routing_model == "capsnet" and not view.em_mode
    assert not view.model_combo.isVisible()
    qtbot.waitUntil(lambda: controller.is_idle() and view.capsules is not None, timeout=30000)
    assert view.body_stack.currentIndex() == 0 and view.panels.isVisible()
    assert view.digit_label.text() == "Digit capsule j:"
    assert view.iteration_count == len(view.capsules.iterations)


def test_back_from_em_the_panels_show_the_current_analysis_again(qtbot, routing):
    """EM mode's messages clear the CapsNet's panels; switching back draws what the state
    holds for the current image (the diagnostics are not computed again, so no event comes)."""
    state, controller, view = routing
    qtbot.waitUntil(lambda: controller.is_idle() and state.diagnostics.ready, timeout=30000)
    assert view.diagnostics_view.diagnostics is state.diagnostics.value is not None
    show_em(qtbot, state, controller, view)
    assert view.diagnostics_view.diagnostics is None
    state.routing_model = "capsnet"
    qtbot.waitUntil(lambda: controller.is_idle() and view.capsules is not None, timeout=30000)
    assert view.diagnostics_view.diagnostics is state.diagnostics.value
    assert view.diagnostics_view.summary.text() != "No CapsNet analysis yet"
    assert view.decoder_view.capsules is view.capsules


def test_export_writes_the_em_tables(qtbot, routing):
    state, controller, view = routing
    show_em(qtbot, state, controller, view)
    tables = view.export_tables()
    t = view.iteration
    header, rows = tables[f"em-iteration-{t}"]
    assert header[:4] == ["type", "row", "col", "a_i"] and len(rows) == view.em.child_activations.size
    header, rows = tables["em-parents"]
    assert len(rows) == len(view.em.steps) and header[:2] == ["iteration", "lambda"]
    assert set(view.export_scenes()) == {"em-mosaic", "em-activations", "em-sigma"}
    assert view.export_panels() == []


def test_the_window_steps_the_em_model_on_the_current_test_image(qtbot, model_files, em_file,
                                                                  data_root, tmp_path, mnist_test):
    """In the window: the EM model loads beside the CapsNet and CNN, the Routing tab offers
    it, and the EM panel follows the input dock's image."""
    from test_main_window import open_window, settle

    models = {**model_files, "em-capsnet": em_file}
    window = open_window(qtbot, models, data_root, tmp_path)
    try:
        names = [part.split(":")[0] for part in window.model_label.text().split("  |  ")]
        assert "EM" in names  # the shipped one by name, another by name and file
        view = window.on_routing_tab()
        assert view.model_combo.isVisible()
        view.model_combo.setCurrentIndex(view.model_combo.findData(EM))
        settle(qtbot, window, lambda: view.em is not None)
        expected = inspect_em(window.state.em_model, mnist_test.images[0, 0])
        np.testing.assert_allclose(view.em.activations, expected.activations, rtol=1e-5)
        window.state.choose_image(image_of(mnist_test, 4))
        settle(qtbot, window, lambda: view.em is not None)
        expected = inspect_em(window.state.em_model, mnist_test.images[4, 0])
        np.testing.assert_allclose(view.em.activations, expected.activations, rtol=1e-5)
        assert f"iteration {view.iteration} of {len(expected.steps)}" in \
            view.em_panel.mosaic.plot.titleLabel.text
        # A matrix-capsule model the user loads (or trains and uses) is the one stepped; the
        # shipped one comes back with Model ▸ Shipped models.
        torch.manual_seed(1)
        theirs = save_checkpoint(tmp_path / "matrix-capsnet-mnist.safetensors",
                                 build_model("matrix-capsnet", MATRIX_SMALL),
                                 {"dataset": {"name": "mnist"}, "epoch": 0})
        window.session.load_checkpoint(theirs)
        settle(qtbot, window, lambda: "matrix-capsnet" in window.state.models
               and view.em is not None)
        assert "em-capsnet" not in window.state.models
        expected = inspect_em(window.state.em_model, mnist_test.images[4, 0])
        assert window.state.models["matrix-capsnet"].path == theirs
        np.testing.assert_allclose(view.em.activations, expected.activations, rtol=1e-5)
        window.use_shipped_models()
        if em_file.parent.resolve() == SHIPPED_MODELS.resolve():
            settle(qtbot, window, lambda: "em-capsnet" in window.state.models)
            assert "matrix-capsnet" not in window.state.models
    finally:
        window.shutdown()


def test_hovering_a_cell_frames_its_receptive_field(qtbot, routing):
    state, controller, view = routing
    show_em(qtbot, state, controller, view)
    panel = view.em_panel
    panel.mosaic.cell_hovered.emit((3, 4, 2))
    box = panel.hover_box.rect()
    top, left, bottom, right = view.em.receptive_fields[4, 2]
    assert panel.hover_box.isVisible()
    assert (box.top(), box.left(), box.bottom(), box.right()) == (top, left, bottom, right)
    panel.mosaic.cell_hovered.emit(None)
    assert not panel.hover_box.isVisible()


def test_the_numbers_name_how_decided_r_is_and_where_the_mass_comes_from(qtbot, routing):
    state, controller, view = routing
    show_em(qtbot, state, controller, view)
    em, j = view.em, view.digit
    r = em.steps[0].responsibilities
    assert em.entropy(0) == pytest.approx(1.0)  # uniform R: log J
    view.set_iteration(1)
    assert "entropy 1.00 log J" in view.em_panel.numbers.text()
    # the share of j's mass from blank receptive fields, by hand
    support = (r[..., j] * em.child_activations).sum(axis=0)
    blank = np.array([[em.image[t:b, l:rr].mean() < 0.05 for t, l, b, rr in row]
                      for row in em.receptive_fields])
    assert em.blank_share(j, 0) == pytest.approx(support[blank].sum() / support.sum())
    assert f"{em.blank_share(j, 0):.0%} of it from capsules that see no ink" in \
        view.em_panel.numbers.text()
    last = len(em.steps) - 1
    weights = em.child_activations
    h = -(em.steps[last].responsibilities * np.log(em.steps[last].responsibilities)).sum(-1)
    assert em.entropy(last) == pytest.approx((h * weights).sum() / weights.sum() / np.log(10),
                                             rel=1e-4)

"""The Overlap tab: a pair of test digits overlaid, the two longest capsules, each one's
reconstruction, the routing map per iteration and the pose sliders, all computed in the
background and agreeing with the core."""

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings

from capsviewer.analysis.overlap import PairChoice, inspect_pair
from capsviewer.analysis.pose import reconstruct
from capsviewer.app.controller import Controller
from capsviewer.app.main_window import MainWindow
from capsviewer.app.session import load_model_entry
from capsviewer.app.state import AppState
from capsviewer.app.views.overlap_view import (
    COLOURS,
    OverlapView,
    assignment_ink,
    assignment_levels,
    tint,
)
from capsviewer.data.tasks import MULTIMNIST
from capsviewer.models import MULTIMNIST_MODELS, build_model
from capsviewer.training import save_checkpoint
from capsviewer.training.model_files import SHIPPED_MODELS, find_models


@pytest.fixture(scope="module")
def pair_model_file(tmp_path_factory):
    """The shipped MultiMNIST CapsNet, else a seeded untrained one of the paper's size (its
    votes drawn 50× larger than for training, so that the capsules are long and differ)."""
    shipped = find_models(MULTIMNIST, [SHIPPED_MODELS]).get("capsnet")
    if shipped is not None:
        return shipped
    torch.manual_seed(0)
    architecture, config = MULTIMNIST_MODELS["capsnet"]
    model = build_model(architecture, {**config, "vote_init_std": 0.5})
    path = tmp_path_factory.mktemp("pair-model") / "capsnet-multimnist.safetensors"
    return save_checkpoint(path, model, {"dataset": {"name": MULTIMNIST}, "epoch": 0})


@pytest.fixture
def overlap(qtbot, pair_model_file, mnist_test):
    """The Overlap view bound to a state with the model, the test digits and test pair 2."""
    state = AppState()
    controller = Controller(state, predict_test_set=False)
    view = OverlapView()
    qtbot.addWidget(view)
    view.bind(state)
    view.show()
    with state.events.paused():
        state.pair_model = load_model_entry(pair_model_file, torch.device("cpu"))
        state.pair_digits = mnist_test
        state.choose_pair(PairChoice.from_test_set(mnist_test, 2))
    qtbot.waitUntil(lambda: controller.is_idle() and state.overlap.ready, timeout=30000)
    yield state, controller, view
    controller.shutdown()


def test_the_view_shows_the_pair_and_each_winners_own_reconstruction(overlap, mnist_test):
    state, _, view = overlap
    expected = inspect_pair(state.pair_model.model, state.pair, mnist_test)
    shown = view.inspection
    assert shown.pair == PairChoice.from_test_set(mnist_test, 2)
    assert shown.winners == expected.winners and shown.labels == expected.labels
    assert np.array_equal(view.input_panel.item.image, expected.image)
    a, b = expected.reconstructions
    assert np.abs(a - b).max() > 1e-3  # two capsules, two different drawings
    assert np.allclose(view.a_panel.item.image, tint(a, COLOURS["A"]), atol=1e-6)
    assert np.allclose(view.b_panel.item.image, tint(b, COLOURS["B"]), atol=1e-6)
    assert not np.allclose(view.a_panel.item.image, view.b_panel.item.image)
    labels = f"labels {expected.labels[0]} + {expected.labels[1]}"
    assert "test pair 2" in view.headline.text() and labels in view.headline.text()
    lengths = view.length_bars.heights()
    assert np.allclose(lengths, expected.capsules.lengths)
    assert set(np.argsort(-lengths)[:2]) == set(expected.winners)


def test_the_routing_map_starts_uniform_and_changes_with_the_iterations(overlap):
    state, _, view = overlap
    view.set_iteration(1)
    first, ink_first = view.mosaic.values.copy(), view.routing_panel.item.image.copy()
    assert np.allclose(first, 0.5)  # c_ij uniform at the first iteration: no side taken
    view.set_iteration(len(view.inspection.capsules.iterations))
    last = view.mosaic.values
    assert np.abs(last - 0.5).max() > 1e-3
    assert np.allclose(last, view.inspection.assignment(-1))
    assert not np.allclose(view.routing_panel.item.image, ink_first)
    inspection = view.inspection
    # Colours stretched to ½ ± the pair's largest |a_i − ½|; unstretched, 0 to 1.
    spread = np.abs(last - 0.5).max()  # the last iteration moved the furthest
    assert inspection.assignment_spread() == pytest.approx(spread)
    assert view.mosaic.levels == pytest.approx((0.5 - spread, 0.5 + spread))
    ink_levels = assignment_levels(inspection.assignment_spread(by_location=True))
    assert np.allclose(view.routing_panel.item.image,
                       assignment_ink(inspection.image, inspection.location_assignment(-1),
                                      ink_levels))
    view.stretch_box.setChecked(False)
    assert view.mosaic.levels == (0.0, 1.0)
    assert np.allclose(view.routing_panel.item.image,
                       assignment_ink(inspection.image, inspection.location_assignment(-1)))


def test_a_pose_slider_moves_the_chosen_winner_only(qtbot, overlap):
    state, controller, view = overlap
    before_a = view.a_panel.item.image.copy()
    view.capsule_combo.setCurrentIndex(1)  # B
    view.sliders[3].setValue(0.2)
    qtbot.waitUntil(lambda: controller.is_idle() and state.overlap_reconstruction.ready)
    inspection = view.inspection
    b = inspection.winners[1]
    pose = inspection.capsules.poses[b].copy()
    pose[3] += 0.2
    expected = reconstruct(state.pair_model.model, pose, b)
    assert state.pair_pose_offsets[3] == pytest.approx(0.2)
    assert np.allclose(view.b_panel.item.image, tint(expected, COLOURS["B"]), atol=1e-5)
    assert not np.allclose(expected, inspection.reconstructions[1], atol=1e-4)
    assert np.array_equal(view.a_panel.item.image, before_a)
    view.reset_button.click()
    qtbot.waitUntil(controller.is_idle)
    assert state.overlap_reconstruction.value is None  # nothing moved: the pair's own drawing
    assert np.allclose(view.b_panel.item.image,
                       tint(inspection.reconstructions[1], COLOURS["B"]), atol=1e-5)


def test_new_pairs_come_from_the_spin_boxes_and_the_random_button(qtbot, overlap, mnist_test):
    state, controller, view = overlap
    view.first_spin.setValue(17)
    assert (state.pair.first, state.pair.second, state.pair.test_pair) == (17, state.pair.second,
                                                                           None)
    qtbot.waitUntil(lambda: controller.is_idle() and state.overlap.ready)
    assert view.inspection.pair.first == 17 and "test digits 17 +" in view.headline.text()
    torch.manual_seed(5)
    view.random_button.click()
    pair = state.pair
    assert mnist_test.labels[pair.first] != mnist_test.labels[pair.second]
    assert max(abs(v) for shift in pair.shifts for v in shift) <= 4
    assert view.pair_spin.text() == "other pair"  # not the test pair shown before
    view.pair_spin.setValue(9)
    assert state.pair == PairChoice.from_test_set(mnist_test, 9)
    assert view.pair_spin.text() == "test pair 9"


def test_the_window_has_the_tab_and_routes_a_multimnist_checkpoint_to_it(
        qtbot, model_files, pair_model_file, data_root, tmp_path, monkeypatch):
    import capsviewer.app.overlap_session as overlap_session

    monkeypatch.setattr(overlap_session, "find_models", lambda dataset: {})  # none found
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(dict(model_files), data_root=str(data_root), settings=settings,
                        download=False, show_errors=False, predict_test_set=False)
    qtbot.addWidget(window)
    window.show()
    try:
        view = window.overlap_view
        titles = [window.tabs.tabText(i) for i in range(window.tabs.count())]
        assert "Overlap" in titles
        qtbot.waitUntil(lambda: window.is_idle() and window.state.pair_digits is not None)
        assert not view.message.isHidden() and view.body.isHidden()
        assert "capsviewer train --dataset multimnist --model capsnet" in view.message.text()
        window.session.load_checkpoint(pair_model_file)  # File ▸ Open model…
        qtbot.waitUntil(lambda: window.is_idle() and window.state.overlap.ready, timeout=30000)
        assert window.state.pair_model.path == pair_model_file
        assert set(window.state.models) == {"capsnet", "cnn"}  # the MNIST models stay
        assert view.message.isHidden() and not view.body.isHidden()
        assert view.inspection is not None
        assert window.state.pair_digits is window.state.test_set  # MNIST's, shared
    finally:
        window.shutdown()


def test_a_multimnist_run_in_the_training_tab_is_offered_to_the_overlap_tab(qtbot, data_root,
                                                                            tmp_path):
    """The runner loads MNIST's digits for MultiMNIST itself; the finished CapsNet is offered."""
    from capsviewer.app.training_runner import TrainingRunner
    from capsviewer.app.views.training_view import TrainingView
    from capsviewer.training import TrainConfig, read_metadata

    view = TrainingView()
    qtbot.addWidget(view)
    runner = TrainingRunner(download=False)
    view.connect_runner(runner)
    config = TrainConfig(dataset="multimnist", model="capsnet", epochs=1, batch_size=32,
                         subset=32, test_subset=20, device="cpu", data_root=str(data_root),
                         model_config={"conv_channels": 8, "primary_maps": 2,
                                       "decoder_hidden": [16, 16]},
                         output=str(tmp_path / "pairs.safetensors"))
    with qtbot.waitSignal(runner.finished, timeout=60_000) as done:
        runner.start(config)
    assert done.args[0].completed and runner.wait(5000)
    assert read_metadata(tmp_path / "pairs.safetensors")["dataset"]["name"] == MULTIMNIST
    assert view.use_button.isEnabled()
    log = [view._log.item(i).text() for i in range(view._log.count())]
    assert any("Overlap tab" in line for line in log)
    with qtbot.waitSignal(view.use_model) as chosen:
        view.use_button.click()
    assert chosen.args == [str(tmp_path / "pairs.safetensors")]


def test_assignment_statistics_agree_with_the_single_pair_inspection(mnist_test):
    """The batched measurement and the view's inspection see the same a_i: per-pair departure
    from the uniform split, and which capsules side with the digit under them."""
    from capsviewer.analysis.overlap import assignment_statistics
    from capsviewer.data.multimnist import fixed_test_pairs
    from capsviewer.training.metrics import correct

    torch.manual_seed(1)
    architecture, config = MULTIMNIST_MODELS["capsnet"]
    model = build_model(architecture, {**config, "conv_channels": 16, "primary_maps": 4,
                                       "decoder_hidden": (32, 64), "vote_init_std": 0.5}).eval()
    pairs = fixed_test_pairs(mnist_test)[:6]
    stats = assignment_statistics(model, pairs, batch_size=4)
    single = [inspect_pair(model, PairChoice.from_test_set(mnist_test, n), mnist_test)
              for n in range(6)]
    for r in range(3):
        expected = np.mean([(np.abs(p.assignment(r) - 0.5) * p.capsules.primary_lengths).sum()
                            / p.capsules.primary_lengths.sum() for p in single])
        assert stats.departure[r] == pytest.approx(expected, rel=1e-4)
    assert stats.departure[0] == 0.0 and stats.departure[-1] > 0
    with torch.no_grad():
        scores = model(pairs.images.float() / 255).scores
    assert stats.both_found == int(correct(scores, pairs.labels).sum())
    assert stats.pairs == 6 and (np.isnan(stats.agreement) or 0 <= stats.agreement <= 1)


def test_an_unreadable_overlap_model_gets_a_sentence(qtbot, overlap, tmp_path):
    """A MultiMNIST model file that cannot be read: one sentence naming the file, no Python
    error text, and the details empty (an expected failure)."""
    state, controller, view = overlap
    from capsviewer.app.overlap_session import OverlapSession

    bad = tmp_path / "capsnet-multimnist.safetensors"
    bad.write_bytes(b"not a checkpoint")
    session = OverlapSession(state, controller.lanes["loading"])
    with qtbot.waitSignal(session.error, timeout=30_000) as failed:
        session.load_model(bad)
    title, sentence, details = failed.args
    assert title == "Could not load model" and bad.name in sentence
    assert "Error" not in sentence and "Traceback" not in sentence and details == ""

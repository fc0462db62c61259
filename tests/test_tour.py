"""The guided tour sets the state each step promises and frames the widgets it talks about; it
is offered once, on the first launch only; and the window fits a 1280×800 screen."""

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRect, QSettings

from capsviewer.app.main_window import MainWindow
from capsviewer.app.state import POSE_DIMENSIONS
from capsviewer.app.tour import OFFERED_KEY, STEPS, Tour
from capsviewer.app.views.common import rich
from capsviewer.training.model_files import SHIPPED_MODELS, find_models


@pytest.fixture
def window(qtbot, data_root, tmp_path, model_files):
    shipped = find_models("mnist", [SHIPPED_MODELS])
    models = shipped if {"capsnet", "cnn"} <= set(shipped) else dict(model_files)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(models, data_root=str(data_root), settings=settings, download=False,
                        show_errors=False, predict_test_set=False)
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    qtbot.waitUntil(lambda: window.is_idle() and window.inspection is not None, timeout=60000)
    yield window
    window.shutdown()


def frame_of(window, widgets) -> QRect:
    rect = QRect()
    for widget in widgets:
        rect = rect.united(QRect(widget.mapTo(window, QPoint(0, 0)), widget.size()))
    return rect


def test_a_window_built_by_code_offers_no_tour(window):
    """Tests and `capsviewer export` build windows: nothing of the tour appears."""
    assert getattr(window, "tour", None) is None and getattr(window, "tour_offer", None) is None
    assert window.settings.value(OFFERED_KEY) is None


def test_the_tour_visits_each_step_and_sets_the_state_it_promises(qtbot, window):
    assert 6 <= len(STEPS) <= 10
    tour = window.start_tour()
    assert isinstance(tour, Tour) and tour.active
    state = window.state
    for index, step in enumerate(STEPS):
        tour.go(index)
        qtbot.waitUntil(lambda: window.is_idle() and state.inspection is not None, timeout=30000)
        qtbot.waitUntil(lambda: tour.framed().contains(frame_of(window, step.targets(window))),
                        timeout=5000)
        assert window.tabs.currentWidget() is getattr(window, step.tab), step.title
        assert state.image.index == step.image
        inspection = state.inspection
        expected_capsule = step.capsule if step.capsule is not None else inspection.prediction
        assert state.selected_capsule == expected_capsule
        expected_r = step.step if step.step is not None else len(inspection.iterations)
        assert state.routing_step == expected_r
        assert window.routing_view.iteration == expected_r
        assert window.routing_view.digit == expected_capsule
        if step.angle is not None:
            assert state.angle == step.angle
            assert window.rotation_view.angle() == step.angle
        offsets = np.zeros(POSE_DIMENSIONS)
        for dimension, value in step.pose.items():
            offsets[dimension] = value
        np.testing.assert_allclose(state.pose_offsets, offsets)
        if step.routing_map is not None:
            assert window.routing_view.quantity == step.routing_map
        if step.lab_preset is not None:
            assert state.lab.preset == step.lab_preset
        card = tour.card
        assert card.isVisible() and card.title.text() == step.title
        assert card.counter.text() == f"{index + 1} of {len(STEPS)}"
        assert window.rect().contains(card.geometry())  # on screen, whole
        assert not {"=", "←", "_"} & set(step.text)  # the words hold no formula; one at most:
        if step.formula is not None:
            assert rich(step.formula) in card.text.text()  # typeset, on its own line
    assert tour.card.next_button.text() == "Done"
    tour.card.next_button.click()
    assert not tour.active and not tour.highlight.isVisible()


def test_back_and_close(qtbot, window):
    tour = window.start_tour()
    tour.go(3)
    tour.card.back_button.click()
    assert tour.index == 2 and window.tabs.currentWidget() is window.pose_view
    tour.card.close_button.click()
    assert not tour.active and tour.index == -1


def test_the_tour_is_offered_once_and_remembered(window, tmp_path):
    assert window.offer_tour()
    offer = window.tour_offer
    assert offer.isVisible() and "tour" in offer.text.text()
    assert window.settings.value(OFFERED_KEY, type=bool)
    offer.close_button.click()  # Not now
    assert not offer.isVisible() and getattr(window, "tour", None) is None
    assert not window.offer_tour()  # remembered: never again
    again = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    assert again.value(OFFERED_KEY, type=bool)  # on disk, for the next launch


def test_starting_from_the_offer_runs_the_tour(window):
    window.offer_tour()
    window.tour_offer.next_button.click()
    assert window.tour.active and window.tour.index == 0


def test_the_window_fits_1280_by_800(window):
    hint = window.minimumSizeHint()
    assert hint.width() <= 1280 and hint.height() <= 760, hint


def test_the_longest_routing_finding_fits_its_label_at_1280(window):
    """Every clause of the sentence at once (a dominant, raised, aligned part whose field is
    blank) with Fashion-MNIST's longest class name: no line is cut off."""
    import dataclasses

    from capsviewer.analysis.routing_findings import describe_strongest, strongest_part
    from capsviewer.data.datasets import DATASETS

    window.tabs.setCurrentWidget(window.routing_view)
    label = window.routing_view.finding_text
    inspection = window.state.inspection
    part = dataclasses.replace(strongest_part(inspection, inspection.prediction), share=0.21,
                               coupling=0.85, uniform=0.1, vote_ratio=48.0, alignment=0.99,
                               ink=0.0, digit=9)
    names = DATASETS["fashion-mnist"].classes
    text = describe_strongest(part, names)
    assert all(clause in text for clause in ("raised", "points where", "like a bias"))
    label.setText(rich(text))
    assert label.isVisible() and label.width() >= 300
    assert label.heightForWidth(label.width()) <= label.height()

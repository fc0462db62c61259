"""Light and dark: class colours that read on both plot backgrounds, a selected digit-capsule
button that looks selected, and stepper icons that stay visible when disabled."""

import numpy as np
import pytest
from PySide6.QtGui import QColor, QIcon
from PySide6.QtWidgets import QApplication

from capsviewer.app import theme
from capsviewer.app.views.common import CLASS_COLOURS
from capsviewer.app.views.routing_view import RoutingView, step_icon


def luminance(colour: QColor) -> float:
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    return (0.2126 * linear(colour.redF()) + 0.7152 * linear(colour.greenF())
            + 0.0722 * linear(colour.blueF()))


def contrast(a: QColor, b: QColor) -> float:
    """WCAG contrast ratio (1 … 21)."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("dark", [False, True])
def test_every_class_colour_reads_on_the_plot_background(dark):
    background = QColor(theme.plot_colours(dark)[0])
    ratios = [contrast(QColor(colour), background) for colour in CLASS_COLOURS]
    assert min(ratios) >= 3.0, ratios  # class 7 included (pyqtgraph's intColor gave it 2.2 on dark)


@pytest.fixture
def dark_app(qapp):
    theme.apply_theme(qapp, "dark")
    yield qapp
    theme.apply_theme(qapp, "light")


def mean_colour(widget) -> np.ndarray:
    image = widget.grab().toImage()
    pixels = [image.pixelColor(x, y) for x in range(2, image.width() - 2, 3)
              for y in range(2, image.height() - 2, 3)]
    return np.array([[c.red(), c.green(), c.blue()] for c in pixels]).mean(axis=0)


def test_the_selected_digit_button_looks_selected_on_dark(qtbot, dark_app):
    view = RoutingView()
    qtbot.addWidget(view)
    view.show()
    for button in view.digit_buttons:
        button.setEnabled(True)
    view.digit_buttons[7].setChecked(True)
    selected, other = mean_colour(view.digit_buttons[7]), mean_colour(view.digit_buttons[3])
    assert np.abs(selected - other).max() > 40, (selected, other)


@pytest.mark.parametrize("name", ["light", "dark"])
def test_disabled_step_icons_stay_visible(qapp, name):
    theme.apply_theme(qapp, name)
    try:
        palette = QApplication.palette()
        button = palette.color(palette.ColorRole.Button)
        for kind in ("first", "previous", "next", "last", "play"):
            pixmap = step_icon(kind, palette).pixmap(16, 16, QIcon.Mode.Disabled)
            image = pixmap.toImage()
            ink = [image.pixelColor(x, y) for x in range(image.width())
                   for y in range(image.height()) if image.pixelColor(x, y).alpha() > 200]
            assert ink, kind
            assert max(contrast(colour, button) for colour in ink) >= 1.8, (kind, name)
    finally:
        theme.apply_theme(qapp, "light")


@pytest.mark.parametrize("name", ["light", "dark"])
def test_check_boxes_are_framed_and_checked_ones_marked(qtbot, qapp, name):
    """Fusion frames a check box in the window colour darkened, invisible on the dark palette:
    the style sheet frames it halfway between window and text and fills a checked one with the
    selection colour and a white tick (a shipped SVG, found from any working directory)."""
    from PySide6.QtWidgets import QCheckBox

    theme.apply_theme(qapp, name)
    try:
        assert "@icons" not in qapp.styleSheet() and "@frame" not in qapp.styleSheet()
        assert theme.resource_path("icons", "check.svg").is_file()
        window = qapp.palette().window().color()
        boxes = {}
        for checked in (False, True):
            box = QCheckBox("zoom to the data")
            box.setChecked(checked)
            qtbot.addWidget(box)
            box.show()
            image = box.grab().toImage()
            side = min(image.height(), 18)
            boxes[checked] = [image.pixelColor(x, y) for x in range(side) for y in range(side)]
        assert max(contrast(c, window) for c in boxes[False]) > 3  # the frame reads
        highlight = qapp.palette().highlight().color()
        assert sum(contrast(c, highlight) < 1.1 for c in boxes[True]) > 40  # filled
        assert max(luminance(c) for c in boxes[True]) > 0.9  # the white tick
    finally:
        theme.apply_theme(qapp, "light")

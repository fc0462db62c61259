"""The input view: test-set browser, drawing canvas, image files and drops."""

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from capsviewer.analysis.preprocess import InputImage, to_mnist
from capsviewer.app.views.input_view import InputView

N = 300


@pytest.fixture
def browser_data(mnist_test):
    return mnist_test.images[:N], mnist_test.labels[:N], mnist_test.classes


@pytest.fixture
def view(qtbot, browser_data):
    widget = InputView()
    qtbot.addWidget(widget)
    widget.chosen = []
    widget.image_chosen.connect(widget.chosen.append)
    widget.set_test_set(*browser_data)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def assert_test_image(image: InputImage, index: int, browser_data) -> None:
    images, labels, _ = browser_data
    assert image.index == index and image.source == f"test #{index}"
    assert image.label == int(labels[index])
    assert np.array_equal(image.pixels, images[index, 0].numpy())


def test_browser_steps_through_the_test_set(view, browser_data):
    assert_test_image(view.chosen[-1], 0, browser_data)  # a new test set shows its first image
    view.next_image()
    assert_test_image(view.chosen[-1], 1, browser_data)
    view.previous_image()
    view.previous_image()  # wraps around
    assert_test_image(view.chosen[-1], N - 1, browser_data)
    view.show_index(57)
    assert_test_image(view.chosen[-1], 57, browser_data)
    assert view._index_spin.value() == 57
    assert "index 57 of 300" in view._position.text()
    view._index_spin.setValue(12)  # typing an index
    assert_test_image(view.chosen[-1], 12, browser_data)
    assert view.current_image() is view.chosen[-1]


def test_class_filter_visits_only_that_class(view, browser_data):
    labels = browser_data[1].numpy()
    view._class_filter.setCurrentIndex(1 + 3)  # "3"
    threes = np.flatnonzero(labels == 3)
    assert_test_image(view.chosen[-1], threes[0], browser_data)  # moved into the filter
    for expected in [*threes[1:], threes[0]]:  # and round again
        view.next_image()
        assert_test_image(view.chosen[-1], expected, browser_data)
    for _ in range(10):
        view.random_image()
        assert view.chosen[-1].label == 3


def test_misclassified_only_needs_predictions(view, browser_data):
    labels = browser_data[1].numpy()
    box = view._misclassified
    assert not box.isEnabled() and "classified" in box.toolTip()
    wrong = np.array([4, 40, 41, 250])
    predicted = labels.copy()
    predicted[wrong] = (labels[wrong] + 1) % 10
    view.set_predictions(predicted)
    assert box.isEnabled() and "4 of 300" in box.toolTip()
    box.setChecked(True)
    visited = [view.chosen[-1].index]
    for _ in range(len(wrong)):
        view.next_image()
        visited.append(view.chosen[-1].index)
    assert visited == [*wrong, wrong[0]]
    view.previous_image()
    assert view.chosen[-1].index == wrong[-1]
    assert "predicted" in view._position.text()
    view.set_predictions(None)  # a model swap: back to the whole test set
    assert not box.isEnabled() and not box.isChecked()
    view.next_image()
    assert view.chosen[-1].index == 251  # the next image of the whole test set

def draw_stroke(canvas, points) -> None:
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[0])
    for point in points[1:]:
        QTest.mouseMove(canvas, point)
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[-1])


def test_a_stroke_becomes_a_centred_mnist_digit(view):
    view._tabs.setCurrentWidget(view._drawing)
    canvas = view._canvas
    view._brush.setValue(24)
    assert canvas.brush == 24
    draw_stroke(canvas, [QPoint(200, 40 + 20 * k) for k in range(11)])  # a "1", off-centre
    image = view.chosen[-1]
    assert image.source == "drawing" and image.label is None and image.index is None
    pixels = image.pixels.astype(float)
    assert pixels.max() == 255 and pixels[0].max() == pixels[:, 0].max() == 0
    rows = np.flatnonzero(pixels.any(axis=1))
    assert rows[-1] - rows[0] + 1 == 20  # the stroke is the longer side of the box
    ys, xs = np.indices(pixels.shape)
    centre = np.array([(ys * pixels).sum(), (xs * pixels).sum()]) / pixels.sum()
    assert np.abs(centre - 14).max() <= 1
    assert np.array_equal(image.pixels, to_mnist(canvas.pixels(), invert=False))
    view.clear_drawing()
    assert canvas.is_blank()


def test_the_prediction_follows_the_pen_while_drawing(view, qtbot):
    """Before the button is let go, the drawing becomes the input (throttled), growing as the
    pen moves; the release classifies the final drawing."""
    view._tabs.setCurrentWidget(view._drawing)
    canvas = view._canvas
    left, none = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    QTest.mousePress(canvas, left, none, QPoint(140, 40))
    qtbot.waitUntil(lambda: view.chosen and view.chosen[-1].source == "drawing", timeout=2000)
    first = view.chosen[-1]
    for y in range(50, 250, 10):  # the pen moves down: the input changes while drawing
        QTest.mouseMove(canvas, QPoint(140, y))
    qtbot.waitUntil(lambda: not np.array_equal(view.chosen[-1].pixels, first.pixels),
                    timeout=2000)
    during = len([image for image in view.chosen if image.source == "drawing"])
    assert during >= 2 and during < 21  # live, and fewer updates than pen steps (throttled)
    QTest.mouseRelease(canvas, left, none, QPoint(140, 250))
    assert np.array_equal(view.chosen[-1].pixels, to_mnist(canvas.pixels(), invert=False))


def test_the_empty_canvas_says_what_to_do_and_clear_resets(view, qtbot):
    view._tabs.setCurrentWidget(view._drawing)
    canvas = view._canvas
    assert canvas.empty and shows_hint(canvas)
    cleared = []
    view.image_cleared.connect(lambda: cleared.append(True))
    draw_stroke(canvas, [QPoint(100, 100), QPoint(150, 180)])
    assert not canvas.empty and view.chosen[-1].source == "drawing"
    view.clear_drawing()
    assert canvas.empty and canvas.is_blank() and cleared == [True] and shows_hint(canvas)
    assert view.current_image() is None


def shows_hint(canvas) -> bool:
    """Grey hint text on the black canvas, though the drawing itself is blank."""
    picture = canvas.grab().toImage()
    middle = canvas.height() // 2
    return canvas.is_blank() and any(picture.pixelColor(x, y).red() > 60
                                     for x in range(0, canvas.width(), 2)
                                     for y in range(middle - 20, middle + 20))


def test_switching_tabs_brings_back_that_tabs_image(view):
    view._tabs.setCurrentWidget(view._drawing)
    draw_stroke(view._canvas, [QPoint(100, 100), QPoint(150, 180)])
    drawing = view.chosen[-1]
    view._tabs.setCurrentWidget(view._browser)
    assert view.chosen[-1].source == "test #0"
    view._tabs.setCurrentWidget(view._drawing)
    assert view.chosen[-1] is drawing


@pytest.fixture
def digit_png(tmp_path, browser_data):
    path = tmp_path / "digit.png"
    Image.fromarray(255 - browser_data[0][7, 0].numpy()).save(path)  # dark ink on white
    return path


def test_opening_a_file_emits_its_digit(view, digit_png, browser_data):
    assert view.open_file(digit_png)
    image = view.chosen[-1]
    assert image.source == "file digit.png" and image.label is None
    assert np.array_equal(image.pixels, to_mnist(browser_data[0][7, 0].numpy()))
    assert view._tabs.currentWidget() is view._file
    assert view.export_tables()["input_pixels"][1][3][1:] == image.pixels[3].tolist()


def test_a_bad_file_warns_without_blocking_and_keeps_the_image(view, tmp_path, qtbot):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    before = view.current_image()
    with qtbot.waitSignal(view.error) as blocker:
        assert not view.open_file(bad)
    assert "broken.png" in blocker.args[0]
    assert view.current_image() is before and len(view.chosen) == 1
    boxes = [box for box in view.findChildren(QMessageBox) if box.isVisible()]
    assert len(boxes) == 1 and "broken.png" in boxes[0].text()
    boxes[0].close()

    view.show_errors = False  # the window shows errors itself
    with qtbot.waitSignal(view.error):
        view.open_file(tmp_path / "missing.png")
    assert not [box for box in view.findChildren(QMessageBox) if box.isVisible()]


def test_dropping_a_file_opens_it(view, digit_png):
    assert view.acceptDrops() and not any(child.acceptDrops() for child in view.findChildren(QWidget))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(digit_png))])
    enter = QDragEnterEvent(QPoint(20, 20), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(view, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(view, drop)
    assert drop.isAccepted() and view.chosen[-1].source == "file digit.png"

    text = QMimeData()
    text.setText("not a file")
    enter = QDragEnterEvent(QPoint(20, 20), Qt.DropAction.CopyAction, text,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(view, enter)
    assert not enter.isAccepted()

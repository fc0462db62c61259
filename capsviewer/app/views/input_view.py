"""Where the image to classify comes from: the test set, a drawing, or an image file.

Every choice is emitted as an :class:`InputImage` (28×28 uint8, MNIST-style); drawings and
files go through :func:`to_mnist`, MNIST's own preprocessing. Image files can also be dropped
anywhere on the view.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QSignalBlocker, Qt, Signal, Slot
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from PIL import Image

import pyqtgraph as pg  # after PySide6, so that pyqtgraph binds it
from capsviewer.analysis.preprocess import (
    DESCRIPTION,
    ImageError,
    InputImage,
    is_blank,
    load_image_file,
    to_mnist,
)
from capsviewer.app.views.common import ExportableView, Table, image_box, image_item, set_image
from capsviewer.app.views.draw_canvas import DrawCanvas

LEVELS = (0.0, 255.0)
LIVE_MS = 150  # while drawing, the drawing is classified at most this often
NO_PREDICTIONS_TIP = "Available once a model has classified the whole test set."


def predictions_note(state, result) -> tuple[str | None, str]:
    """Why the misclassified filter is not available: a few words for the check box and a
    sentence for its tooltip, from the state's test-set predictions ``result``."""
    test_set = state.test_set
    if test_set is None:
        return None, "Available once a test set is loaded."
    entry = state.models.get("capsnet") or state.models.get("cnn")
    if result.error:
        return "failed", f"Classifying the test set failed: {result.error}"
    if result.pending:
        from capsviewer.models import display_name

        done, total = result.progress or (0, len(test_set))
        model = "model" if entry is None else display_name(entry.architecture)
        return (f"computing… {done / max(total, 1):.0%}",
                f"The {model} is classifying the {len(test_set):,} test images ({done:,} "
                "done); the filter is available when it has finished, and at once on later "
                "launches (the result is cached).")
    if entry is None:
        return "needs a model", ("Open or train a model: its predictions for the whole test set "
                                 "pick the misclassified images.")
    return None, "The test set is not classified in this window."


def _thumbnail(tooltip: str) -> tuple[pg.ImageItem, pg.GraphicsLayoutWidget]:
    item = image_item(LEVELS)
    set_image(item, np.zeros((28, 28)), LEVELS)
    box = image_box(item, tooltip)
    item.getViewBox().setDefaultPadding(0.0)  # the 28×28 pixels fill the box
    box.setFixedSize(140, 140)
    return item, box


class InputView(QWidget, ExportableView):
    """Test-set browser, drawing canvas and image files; emits the chosen image."""

    export_name = "input"
    image_chosen = Signal(object)  # InputImage
    image_cleared = Signal()  # the drawing that was the input was cleared
    error = Signal(str)  # a file could not be used (also shown in a warning box)

    def __init__(self, parent: QWidget | None = None, show_errors: bool = True):
        super().__init__(parent)
        self.show_errors = show_errors  # False: only emit `error` (the window shows it)
        self._images = np.zeros((0, 28, 28), np.uint8)
        self._labels = np.zeros(0, np.int64)
        self._class_names: list[str] = []
        self._predicted: np.ndarray | None = None
        self._filtered = np.zeros(0, np.int64)  # test-set indices passing the filter, sorted
        self._index: int | None = None
        self._current: InputImage | None = None
        self._last_of: dict[QWidget, InputImage] = {}  # each tab's latest image
        self._rng = np.random.default_rng()

        self._tabs = QTabWidget()
        self._browser = self._build_browser()
        self._drawing = self._build_drawing()
        self._file = self._build_file()
        self._tabs.addTab(self._browser, "Test set")
        self._tabs.addTab(self._drawing, "Draw")
        self._tabs.addTab(self._file, "File")
        self._tabs.currentChanged.connect(self._tab_changed)
        self._caption = QLabel("No image chosen yet")
        self._caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.addWidget(self._tabs)
        layout.addWidget(self._caption)

        # Drops anywhere land here: children do not take them.
        for child in self.findChildren(QWidget):
            child.setAcceptDrops(False)
        self.setAcceptDrops(True)
        self.setToolTip(DESCRIPTION)
        self._update_browser_controls()

    # -- construction ---------------------------------------------------------------------------
    def _build_browser(self) -> QWidget:
        page = QWidget()
        self._index_spin = QSpinBox()
        self._index_spin.setKeyboardTracking(False)
        self._index_spin.valueChanged.connect(self.show_index)
        self._previous = QPushButton("◀ Previous")
        self._next = QPushButton("Next ▶")
        self._random = QPushButton("Random")
        self._previous.clicked.connect(self.previous_image)
        self._next.clicked.connect(self.next_image)
        self._random.clicked.connect(self.random_image)
        self._class_filter = QComboBox()
        self._class_filter.addItem("All classes")
        self._class_filter.currentIndexChanged.connect(self._filter_changed)
        self._misclassified = QCheckBox("Misclassified only (loading the models…)")
        self._misclassified.setEnabled(False)
        self._misclassified.setToolTip(NO_PREDICTIONS_TIP)
        self._misclassified.toggled.connect(self._filter_changed)
        self._browser_item, thumbnail = _thumbnail("The test image, as the models see it")
        self._position = QLabel("No test set loaded")
        self._position.setWordWrap(True)

        grid = QGridLayout()
        grid.addWidget(QLabel("Index"), 0, 0)
        grid.addWidget(self._index_spin, 0, 1, 1, 2)
        grid.addWidget(self._previous, 1, 0)
        grid.addWidget(self._next, 1, 1)
        grid.addWidget(self._random, 1, 2)
        grid.addWidget(QLabel("Class"), 2, 0)
        grid.addWidget(self._class_filter, 2, 1, 1, 2)
        grid.addWidget(self._misclassified, 3, 0, 1, 3)
        column = QVBoxLayout(page)  # stacked, so the input column stays narrow
        column.addWidget(thumbnail, 0, Qt.AlignmentFlag.AlignHCenter)
        column.addLayout(grid)
        column.addWidget(self._position)
        column.addStretch(1)
        return page

    def _build_drawing(self) -> QWidget:
        page = QWidget()
        self._canvas = DrawCanvas()
        self._canvas.stroke_finished.connect(self._stroke_finished)
        # Live: the prediction follows the pen, at most every LIVE_MS (the analysis runs in
        # the background, latest drawing wins); the release classifies the final drawing.
        self._live = None  # superqt's qthrottled, made at the first stroke (off the start-up path)
        self._canvas.drawn.connect(self._drawn)
        self._brush = QSpinBox()
        self._brush.setRange(4, 48)
        self._brush.setValue(self._canvas.brush)
        self._brush.setSuffix(" px")
        self._brush.setToolTip("Brush diameter on the canvas (MNIST strokes are about 2–3 of 28 px)")
        self._brush.valueChanged.connect(self._canvas.set_brush)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.clear_drawing)
        self._drawing_item, preview = _thumbnail(DESCRIPTION)

        controls = QVBoxLayout()
        brush_row = QHBoxLayout()
        brush_row.addWidget(QLabel("Brush"))
        brush_row.addWidget(self._brush)
        controls.addLayout(brush_row)
        controls.addWidget(clear)
        controls.addStretch(1)
        below = QHBoxLayout()
        below.addLayout(controls)
        seen = QVBoxLayout()
        seen.addWidget(QLabel("As the models see it:"))
        seen.addWidget(preview)
        below.addLayout(seen)
        column = QVBoxLayout(page)  # canvas above its controls: the input column stays narrow
        column.addWidget(self._canvas, 0, Qt.AlignmentFlag.AlignHCenter)
        column.addLayout(below)
        column.addStretch(1)
        return page

    def _build_file(self) -> QWidget:
        page = QWidget()
        open_button = QPushButton("Open image…")
        open_button.clicked.connect(self.choose_file)
        hint = QLabel("…or drop an image file anywhere here (PNG, JPEG, BMP, GIF, TIFF, WebP). "
                      "Dark ink on a light background is inverted.")
        hint.setWordWrap(True)
        self._file_label = QLabel("No file opened")
        self._file_label.setWordWrap(True)
        self._file_item, preview = _thumbnail(DESCRIPTION)
        column = QVBoxLayout()
        column.addWidget(open_button)
        column.addWidget(hint)
        column.addWidget(self._file_label)
        column.addStretch(1)
        row = QHBoxLayout(page)
        row.addWidget(preview, 0, Qt.AlignmentFlag.AlignTop)
        row.addLayout(column, 1)
        return page

    # -- bound to the app state ------------------------------------------------------------------
    def bind(self, state) -> None:
        """Write the chosen input into ``state``; show its test set and test-set predictions.
        An input chosen before (the window shows this view before it has a state) becomes
        the state's."""
        self._state = state
        self.image_chosen.connect(state.choose_image)
        self.image_cleared.connect(lambda: state.choose_image(None))
        state.events.test_set.connect(self._render_test_set)
        state.events.predictions.connect(self._render_predictions)
        state.events.models.connect(self._render_predictions)
        state.events.image.connect(self._render_image)
        self._render_test_set()
        if self._current is not None and state.image is None:
            state.choose_image(self._current)

    def _render_test_set(self, *_) -> None:
        images = self._state.test_set
        if images is None:
            self.set_test_set(np.zeros((0, 28, 28), np.uint8), np.zeros(0), [])
        else:
            self.set_test_set(images.images, images.labels, images.classes)
        self._render_predictions()  # the filter's state for this test set

    def _render_predictions(self, *_) -> None:
        result = self._state.predictions
        if result.ready and len(result.value.predicted) == len(self._labels):
            self.set_predictions(result.value.predicted, result.value.describe())
        else:
            self.set_predictions(None, *predictions_note(self._state, result))

    def _render_image(self, image) -> None:
        if image is None and self._current is not None:
            self._current = None
            self._caption.setText("No image chosen yet")

    # -- test set -------------------------------------------------------------------------------
    def set_test_set(self, images, labels, class_names) -> None:
        """Images uint8 (N, 1, 28, 28) or (N, 28, 28), numpy or torch; labels (N,). The same
        images and labels again keep the place, the filter and the input."""
        images = np.asarray(images, dtype=np.uint8)
        images = images.reshape(len(images), 28, 28)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if (len(images) and [str(name) for name in class_names] == self._class_names
                and np.array_equal(labels, self._labels) and np.array_equal(images, self._images)):
            return
        self._images, self._labels = images, labels
        if len(self._labels) != len(self._images):
            raise ValueError(f"{len(self._images)} images but {len(self._labels)} labels")
        self._class_names = [str(name) for name in class_names]
        self._predicted = None
        with QSignalBlocker(self._class_filter), QSignalBlocker(self._misclassified):
            self._class_filter.clear()
            self._class_filter.addItem("All classes")
            self._class_filter.addItems(self._class_names)
            self._misclassified.setChecked(False)
            self._misclassified.setEnabled(False)
            self._misclassified.setToolTip(NO_PREDICTIONS_TIP)
        with QSignalBlocker(self._index_spin):
            self._index_spin.setRange(0, max(len(self._images) - 1, 0))
        self._index = None
        self._last_of.pop(self._browser, None)
        self._filtered = np.arange(len(self._images))
        self._update_browser_controls()
        if len(self._images):
            self.show_index(0)

    def set_predictions(self, predicted: np.ndarray | None, source: str | None = None,
                        why: str = NO_PREDICTIONS_TIP) -> None:
        """The model's predicted class of every test image; ``source`` says which model and R
        predicted them ("CapsNet, R = 3"). Without them (None), ``source`` says briefly why
        ("computing… 40 %"), and ``why`` in full (the tooltip)."""
        if predicted is not None:
            predicted = np.asarray(predicted, dtype=np.int64).reshape(-1)
            if len(predicted) != len(self._labels):
                raise ValueError(f"{len(predicted)} predictions for {len(self._labels)} test images")
        self._predicted = predicted
        self._misclassified.setText("Misclassified only" + (f" ({source})" if source else ""))
        self._misclassified.setEnabled(predicted is not None)
        if predicted is None:
            self._misclassified.setToolTip(why)
            self._misclassified.setChecked(False)  # refilters if it was on
        else:
            wrong = int((predicted != self._labels).sum())
            self._misclassified.setToolTip(f"{wrong} of {len(predicted)} test images misclassified")
            if self._misclassified.isChecked():
                self._filter_changed()
        self._update_position()

    @Slot()
    def next_image(self) -> None:
        self._step(+1)

    @Slot()
    def previous_image(self) -> None:
        self._step(-1)

    @Slot()
    def random_image(self) -> None:
        if len(self._filtered):
            self.show_index(int(self._rng.choice(self._filtered)))

    @Slot(int)
    def show_index(self, index: int) -> None:
        """Show and emit test image ``index`` (whether or not it passes the filter)."""
        if not 0 <= index < len(self._images):
            return
        with QSignalBlocker(self._tabs):
            self._tabs.setCurrentWidget(self._browser)
        with QSignalBlocker(self._index_spin):
            self._index_spin.setValue(index)
        self._index = index
        pixels = self._images[index].copy()
        set_image(self._browser_item, pixels, LEVELS)
        self._update_position()
        self._choose(self._browser, InputImage(pixels, int(self._labels[index]), f"test #{index}", index))

    def _step(self, direction: int) -> None:
        """Move to the next/previous filtered index after the current one, wrapping around."""
        if not len(self._filtered):
            return
        current = -1 if self._index is None else self._index
        if direction > 0:
            at = np.searchsorted(self._filtered, current, side="right")
            self.show_index(int(self._filtered[at % len(self._filtered)]))
        else:
            at = np.searchsorted(self._filtered, current, side="left") - 1
            self.show_index(int(self._filtered[at]))  # −1 wraps to the last

    def _filter_changed(self, *_) -> None:
        keep = np.ones(len(self._images), bool)
        if self._class_filter.currentIndex() > 0:
            keep &= self._labels == self._class_filter.currentIndex() - 1
        if self._misclassified.isChecked() and self._predicted is not None:
            keep &= self._predicted != self._labels
        self._filtered = np.flatnonzero(keep)
        self._update_browser_controls()
        if len(self._filtered) and (self._index is None or self._index not in self._filtered):
            self._step(+1)
        else:
            self._update_position()

    def _update_browser_controls(self) -> None:
        loaded = len(self._images) > 0
        self._index_spin.setEnabled(loaded)
        self._class_filter.setEnabled(loaded)
        for button in (self._previous, self._next, self._random):
            button.setEnabled(len(self._filtered) > 0)
        self._update_position()

    def _update_position(self) -> None:
        if not len(self._images):
            self._position.setText("No test set loaded")
            return
        text = f"index {self._index} of {len(self._images)}" if self._index is not None else ""
        if self._index is not None:
            text += f", label {self._class_names[self._labels[self._index]]}"
            if self._predicted is not None:
                text += f", predicted {self._class_names[self._predicted[self._index]]}"
        filtering = self._class_filter.currentIndex() > 0 or self._misclassified.isChecked()
        if filtering:
            text += f"\n{len(self._filtered)} images match the filter" if len(self._filtered) \
                else "\nNo image matches the filter"
        self._position.setText(text)

    # -- drawing --------------------------------------------------------------------------------
    @Slot()
    def clear_drawing(self) -> None:
        """An empty canvas; when the drawing was the input, there is no input any more."""
        if self._live is not None:
            self._live.cancel()  # no pending update brings the old drawing back
        self._canvas.clear()
        set_image(self._drawing_item, np.zeros((28, 28)), LEVELS)
        drawn = self._last_of.pop(self._drawing, None)
        if drawn is not None and drawn is self._current:
            self._current = None
            self._caption.setText("No image chosen yet")
            self.image_cleared.emit()

    def _stroke_finished(self, drawing: np.ndarray) -> None:
        if self._live is not None:
            self._live.cancel()
        self._classify(drawing)

    def _drawn(self, *_) -> None:
        if self._live is None:
            from superqt.utils import qthrottled

            self._live = qthrottled(self._classify_drawing, timeout=LIVE_MS, parent=self)
        self._live()

    def _classify_drawing(self) -> None:
        self._classify(self._canvas.pixels())

    def _classify(self, drawing: np.ndarray) -> None:
        if is_blank(drawing, invert=False):
            return
        pixels = to_mnist(drawing, invert=False)  # the canvas is white ink on black
        previous = self._last_of.get(self._drawing)
        if previous is not None and np.array_equal(previous.pixels, pixels):
            return  # the pen moved without changing what the models see
        set_image(self._drawing_item, pixels, LEVELS)
        self._choose(self._drawing, InputImage(pixels, None, "drawing"))

    # -- files ----------------------------------------------------------------------------------
    @Slot()
    def choose_file(self) -> None:
        patterns = " ".join(sorted(f"*{ext}" for ext, fmt in Image.registered_extensions().items()
                                   if fmt in Image.OPEN))
        path, _ = QFileDialog.getOpenFileName(self, "Open an image of a digit", "",
                                              f"Images ({patterns});;All files (*)")
        if path:
            self.open_file(path)

    def open_file(self, path: str | Path) -> bool:
        """Load an image file as the input; on failure emit `error`, warn, keep the image."""
        path = Path(path)
        try:
            pixels = load_image_file(path)
        except ImageError as failure:
            self._report(str(failure))
            return False
        set_image(self._file_item, pixels, LEVELS)
        self._file_label.setText(str(path))
        with QSignalBlocker(self._tabs):
            self._tabs.setCurrentWidget(self._file)
        self._choose(self._file, InputImage(pixels, None, f"file {path.name}"))
        return True

    def _report(self, message: str) -> None:
        self.error.emit(message)
        if self.show_errors:  # window-modal but not blocking: open(), not exec()
            box = QMessageBox(QMessageBox.Icon.Warning, "Cannot use this image", message,
                              QMessageBox.StandardButton.Ok, self)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()

    @staticmethod
    def _local_files(event: QDragEnterEvent | QDropEvent) -> list[str]:
        mime = event.mimeData()
        return [url.toLocalFile() for url in mime.urls() if url.isLocalFile()] if mime.hasUrls() else []

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._local_files(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        files = self._local_files(event)
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        self.open_file(files[0])

    # -- current image --------------------------------------------------------------------------
    def _choose(self, page: QWidget, image: InputImage) -> None:
        self._last_of[page] = image
        self._current = image
        label = "" if image.label is None else f", label {self._class_names[image.label]}"
        self._caption.setText(f"Input: {image.source}{label}")
        self.image_chosen.emit(image)

    def _tab_changed(self, _: int) -> None:
        """Switching tabs makes that tab's latest image the input again."""
        image = self._last_of.get(self._tabs.currentWidget())
        if image is not None and image is not self._current:
            self._choose(self._tabs.currentWidget(), image)

    def current_image(self) -> InputImage | None:
        return self._current

    # -- export ---------------------------------------------------------------------------------
    def export_tables(self) -> dict[str, Table]:
        if self._current is None:
            return {}
        header = ["y"] + [f"x{x}" for x in range(28)]
        rows = [[y, *map(int, row)] for y, row in enumerate(self._current.pixels)]
        return {"input_pixels": (header, rows)}

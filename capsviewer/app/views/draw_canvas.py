"""A square canvas to draw a digit on with the mouse: white ink on black, round brush; while
it is empty it says what to do."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QWidget


class DrawCanvas(QWidget):
    """Holds its drawing as a grayscale image (ten MNIST pixels to a side pixel by default)."""

    stroke_finished = Signal(object)  # uint8 (side, side) drawing, after each mouse release
    drawn = Signal()  # ink was added (every mouse step while drawing)
    HINT = "Draw a digit here\nwith the mouse"

    def __init__(self, side: int = 280, brush: int = 20, parent: QWidget | None = None):
        super().__init__(parent)
        self._image = QImage(side, side, QImage.Format.Format_Grayscale8)
        self._image.fill(Qt.GlobalColor.black)
        self._brush = brush
        self._last: QPointF | None = None  # pen position while the left button is down
        self._empty = True  # nothing drawn since the last clear: the hint shows
        self.setFixedSize(side, side)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setToolTip("Draw a digit with the mouse; it is classified as you draw.")

    @property
    def brush(self) -> int:
        return self._brush

    def set_brush(self, diameter: int) -> None:
        self._brush = max(1, int(diameter))

    def clear(self) -> None:
        self._image.fill(Qt.GlobalColor.black)
        self._empty = True
        self.update()

    @property
    def empty(self) -> bool:
        """Nothing drawn since the last clear (the hint is on show)."""
        return self._empty

    def pixels(self) -> np.ndarray:
        """The drawing as uint8 (side, side), ink 255."""
        h, w, stride = self._image.height(), self._image.width(), self._image.bytesPerLine()
        bits = np.frombuffer(self._image.constBits(), np.uint8, count=h * stride)
        return bits.reshape(h, stride)[:, :w].copy()

    def is_blank(self) -> bool:
        return not self.pixels().any()

    def _paint_to(self, position: QPointF) -> None:
        painter = QPainter(self._image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pen = QPen(QColor(Qt.GlobalColor.white), self._brush)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        painter.setPen(pen)
        if self._last is None or self._last == position:
            painter.drawPoint(position)  # a round dot of the brush's diameter
        else:
            painter.drawLine(self._last, position)
        painter.end()
        self._last = position
        self._empty = False
        self.update()
        self.drawn.emit()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._last = None
            self._paint_to(event.position())
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._last is not None:
            self._paint_to(event.position())
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._last is not None:
            self._paint_to(event.position())
            self._last = None
            self.stroke_finished.emit(self.pixels())
        event.accept()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.drawImage(self.rect(), self._image)
        if self._empty:
            painter.setPen(QColor(150, 150, 150))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.HINT)
        painter.end()

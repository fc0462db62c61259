"""Help ▸ Tour: a few steps over the real views for a newcomer, in plain words.

Each :class:`TourStep` sets the app state it talks about (the test image, the tab, the digit
capsule, the routing iteration, and what else it needs), frames the widget it is about, and
says one thing with at most one formula. The window offers the tour once, on the first
launch of the app (:func:`offer_tour`, called by ``run_app`` only: tests and ``capsviewer
export`` build windows without it), and remembers in its settings that it did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import QEvent, QObject, QPoint, QRect, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import (
    QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget,
)

from capsviewer.app.state import LabScene, POSE_DIMENSIONS
from capsviewer.app.views.common import rich

OFFERED_KEY = "tour/offered"  # settings: the tour was offered on a first launch
HIGHLIGHT = QColor(240, 140, 30)


@dataclass(frozen=True)
class TourStep:
    title: str
    text: str  # plain words, no formula
    tab: str  # the window attribute of the view shown: "routing_view"
    targets: Callable  # window → widgets framed together
    formula: str | None = None  # at most one, on its own line (rendered with rich())
    image: int = 0  # the test image shown
    capsule: int | None = None  # digit capsule j; None: the predicted one
    step: int | None = None  # routing iteration r; None: the last
    angle: float | None = None  # rotation of the input, degrees
    pose: dict[int, float] = field(default_factory=dict)  # pose offsets by dimension
    routing_map: str | None = None  # what the routing grid shows
    lab_preset: str | None = None


STEPS = (
    TourStep("A capsule is a vector",
             "Each digit has a capsule: a list of 16 numbers, a vector. Its length says how sure "
             "the network is that this digit is in the image. Here the capsule of the digit "
             "drawn is long and the other nine are short.",
             "prediction_view", lambda w: [w.prediction_view.capsule_bars],
             formula="0 ≤ ‖v_j‖ < 1"),
    TourStep("Small capsules look at parts",
             "Below the digit capsules sit 1,152 primary capsules: 32 kinds at each of 6 × 6 "
             "places. Each looks at a patch of the image; a bright cell is an active one.",
             "prediction_view", lambda w: [w.prediction_view.primary]),
    TourStep("Direction is pose",
             "The direction of the winning capsule's vector describes how the digit is drawn: "
             "its slant, its thickness, its width. Move a slider and the decoder redraws the "
             "digit from the changed vector; one slider is moved for you.",
             "pose_view", lambda w: [*w.pose_view.sliders[:8], w.pose_view.reconstruction_box],
             pose={5: -0.2}),
    TourStep("Every part votes",
             "Each primary capsule predicts what every digit capsule should look like: a vote. "
             "At the first routing iteration every vote counts the same, so the map of "
             "couplings compared with uniform is blank.",
             "routing_view", lambda w: [w.routing_view.mosaic], formula="c_ij = 1/J",
             step=1, routing_map="deviation"),
    TourStep("Agreeing votes get more say",
             "After each iteration, votes that point where the result points get a larger share "
             "of the next one. Red parts now send more of their vote to this capsule than the "
             "uniform share, blue parts less.",
             "routing_view", lambda w: [w.routing_view.mosaic],
             formula="b_ij ← b_ij + û_{j|i}·v_j", routing_map="deviation"),
    TourStep("Step through it",
             "Shown now: what the second iteration changed. Step with the buttons or scrub the "
             "slider and watch which parts gain and which lose.",
             "routing_view", lambda w: [w.routing_view.slider, w.routing_view.mosaic],
             step=2, routing_map="change"),
    TourStep("What the numbers say",
             "The sentence under the map is measured on this image: which part adds the most "
             "to the capsule, and where on the image it looks. The boxes on the small picture "
             "frame the strongest parts.",
             "routing_view", lambda w: [w.routing_view.finding_text, w.routing_view.overlay],
             formula="support of part i: c_ij ‖û_{j|i}‖", routing_map="deviation"),
    TourStep("Turn the digit",
             "Rotate the digit and compare the CNN's probability with the capsule's length for "
             "the same class. The sweep tries every angle and says how far each model keeps "
             "the digit.",
             "rotation_view", lambda w: [w.rotation_view.angle_slider, w.rotation_view.bars_widget],
             angle=30.0),
    TourStep("A playground for routing",
             "Drag the dots, the votes, and watch dynamic routing and EM routing share them "
             "between parents side by side. Each preset shows one property of routing.",
             "lab_view", lambda w: [w.lab_view.dynamic_canvas, w.lab_view.em_canvas],
             lab_preset="clusters"),
)


def apply_step(window, step: TourStep) -> None:
    """Set the app state (and the view's own choices) the step talks about."""
    state = window.state
    window.tabs.setCurrentWidget(getattr(window, step.tab))
    image = state.image
    if image is None or image.index != step.image:
        window.input_view.show_index(step.image)  # the state's input, as a user would pick it
    state.select_capsule(step.capsule)
    if step.pose:
        state.pose_offsets = tuple(step.pose.get(k, 0.0) for k in range(POSE_DIMENSIONS))
    state.routing_step = step.step if step.step is not None else state.routing_iterations
    if step.angle is not None:
        state.angle = step.angle
    if step.routing_map is not None:
        window.routing_view.set_quantity(step.routing_map)
    if step.lab_preset is not None and state.lab.preset != step.lab_preset:
        state.lab = LabScene.from_preset(step.lab_preset)


class Highlight(QWidget):
    """Dims the window except the framed widgets; lets every click through."""

    def __init__(self, window: QWidget):
        super().__init__(window)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.frame = QRect()

    def frame_widgets(self, widgets) -> None:
        rect = QRect()
        for widget in widgets:
            if widget.isVisible():
                top_left = widget.mapTo(self.parentWidget(), QPoint(0, 0))
                rect = rect.united(QRect(top_left, widget.size()))
        self.frame = rect.adjusted(-4, -4, 4, 4)
        self.setGeometry(self.parentWidget().rect())
        self.raise_()
        self.update()

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        shade = QPainterPath()
        shade.addRect(self.rect().toRectF())
        hole = QPainterPath()
        hole.addRoundedRect(self.frame.toRectF(), 6, 6)
        painter.fillPath(shade.subtracted(hole), QColor(0, 0, 0, 90))
        painter.setPen(QPen(HIGHLIGHT, 3))
        painter.drawPath(hole)
        painter.end()


class TourCard(QFrame):
    """The step's title and words, where it is in the tour, and Back / Next / Close."""

    def __init__(self, window: QWidget):
        super().__init__(window)
        self.setObjectName("tour-card")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        palette = self.palette()
        palette.setColor(QPalette.ColorRole.Window, palette.color(QPalette.ColorRole.Base))
        self.setPalette(palette)
        self.setFixedWidth(340)
        self.title = QLabel()
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.2)
        font.setBold(True)
        self.title.setFont(font)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self.counter = QLabel()
        self.back_button = QPushButton("Back")
        self.next_button = QPushButton("Next")
        self.close_button = QPushButton("Close the tour")
        self.next_button.setDefault(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.counter)
        buttons.addStretch(1)
        for button in (self.close_button, self.back_button, self.next_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.text)
        layout.addLayout(buttons)


class Tour(QObject):
    """Walks ``window`` through STEPS; ``finished`` when closed or done."""

    finished = Signal()
    step_shown = Signal(int)

    def __init__(self, window, steps=STEPS):
        super().__init__(window)
        self.window, self.steps = window, steps
        self.index = -1
        self.highlight = Highlight(window)
        self.card = TourCard(window)
        self.card.back_button.clicked.connect(lambda: self.go(self.index - 1))
        self.card.next_button.clicked.connect(self._next)
        self.card.close_button.clicked.connect(self.close)
        self.highlight.hide()
        self.card.hide()
        window.installEventFilter(self)
        window.tabs.currentChanged.connect(self._reframe_soon)

    def start(self) -> None:
        self.go(0)

    def go(self, index: int) -> None:
        """Show step ``index``: its state first, then the frame and the words."""
        if not 0 <= index < len(self.steps):
            return
        self.index = index
        step = self.steps[index]
        apply_step(self.window, step)
        card = self.card
        card.title.setText(step.title)
        text = step.text + (f"<br><br><b>{rich(step.formula)}</b>" if step.formula else "")
        card.text.setText(text)
        card.counter.setText(f"{index + 1} of {len(self.steps)}")
        card.back_button.setEnabled(index > 0)
        card.next_button.setText("Done" if index == len(self.steps) - 1 else "Next")
        self.highlight.show()
        card.show()
        self._reframe()
        self._reframe_soon()  # again once the tab has laid out its widgets
        self.step_shown.emit(index)

    def _next(self) -> None:
        if self.index >= len(self.steps) - 1:
            self.close()
        else:
            self.go(self.index + 1)

    def close(self) -> None:
        self.highlight.hide()
        self.card.hide()
        self.index = -1
        self.finished.emit()

    @property
    def active(self) -> bool:
        return self.card.isVisible()

    def framed(self) -> QRect:
        return self.highlight.frame

    def _reframe_soon(self, *_) -> None:
        QTimer.singleShot(0, self._reframe)

    def _reframe(self) -> None:
        if self.index < 0:
            return
        self.highlight.frame_widgets(self.steps[self.index].targets(self.window))
        self._place_card()

    def _place_card(self) -> None:
        """Beside the frame where there is room (right, left, below, above), inside the window."""
        card, frame, bounds = self.card, self.highlight.frame, self.window.rect()
        card.adjustSize()
        width, height = card.width(), card.sizeHint().height()
        gap = 12
        for x, y in ((frame.right() + gap, frame.top()), (frame.left() - gap - width, frame.top()),
                     (frame.left(), frame.bottom() + gap), (frame.left(), frame.top() - gap - height)):
            if bounds.contains(QRect(x, y, width, height)):
                break
        else:  # no room outside the frame: the bottom-right corner of the window
            x, y = bounds.right() - width - 16, bounds.bottom() - height - 40
        x = min(max(x, 8), bounds.right() - width - 8)
        y = min(max(y, 8), bounds.bottom() - height - 8)
        card.setGeometry(x, y, width, height)
        card.raise_()

    def eventFilter(self, watched, event) -> bool:
        if watched is self.window and event.type() == QEvent.Type.Resize:
            self._reframe_soon()
        return False


def start_tour(window) -> Tour:
    """Help ▸ Tour: from the first step (one tour per window)."""
    tour = getattr(window, "tour", None)
    if tour is None:
        tour = window.tour = Tour(window)
    tour.start()
    return tour


def offer_tour(window) -> bool:
    """On the first launch only: a card offering the tour (Start / Not now). Remembered in
    the window's settings whatever the answer; True when offered."""
    settings = window.settings
    if settings.value(OFFERED_KEY, False, type=bool):
        return False
    settings.setValue(OFFERED_KEY, True)
    settings.sync()
    card = window.tour_offer = TourCard(window)
    card.title.setText("New to capsule networks?")
    card.text.setText(f"A short tour over the real views: what a capsule is, how routing "
                      f"shares the votes, and where to play. {len(STEPS)} steps; Help ▸ Tour "
                      "starts it again at any time.")
    card.counter.setText("")
    card.back_button.hide()
    card.close_button.setText("Not now")
    card.next_button.setText("Start the tour")
    card.close_button.clicked.connect(card.close)
    card.next_button.clicked.connect(lambda: (card.close(), start_tour(window)))
    card.adjustSize()
    bounds = window.rect()
    card.move(bounds.right() - card.width() - 24, bounds.bottom() - card.sizeHint().height() - 48)
    card.show()
    card.raise_()
    return True

"""The status bar, bound to the app state: a message line, export progress with Cancel, whether
jobs are running, the test set, each model's file and the device. It is built with the window's
frame, before torch is loaded, and bound to the state once the window has started."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QToolButton

from capsviewer.data import DATASET_TITLES

NO_MODEL = "train one on the Training tab or open a checkpoint (File ▸ Open model…)"


class _Message:
    """The bar's message line, drawn by the bar itself: a new message repaints, it does not
    lay out the window again (a label's new text would, every view included)."""

    def __init__(self, bar: QStatusBar):
        self._bar = bar

    def setText(self, text: str) -> None:
        self._bar.showMessage(text)

    def text(self) -> str:
        return self._bar.currentMessage()


class StatusBar(QStatusBar):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.status_text = _Message(self)
        self.export_progress = QProgressBar()
        self.export_cancel = QToolButton()
        self.export_cancel.setText("✕")
        self.export_cancel.setToolTip("Cancel the export (files written so far stay)")
        self.busy_label, self.data_label = QLabel(), QLabel()
        self.model_label = QLabel("loading models…")
        self.device_label = QLabel()
        for widget in (self.export_progress, self.export_cancel, self.busy_label,
                       self.data_label, self.model_label, self.device_label):
            self.addPermanentWidget(widget)
        line = self.model_label.sizeHint().height()
        busy = self.busy_label.fontMetrics().horizontalAdvance("computing…") + 4
        # Widgets that change while jobs run have a fixed size: updating them repaints the
        # bar, it never lays out the window's views again. The busy note also keeps its place
        # while empty; the export's bar and button take room only while an export runs (shown
        # and hidden once an export, and their room is the message line's the rest of the time).
        for widget, width in ((self.export_progress, 120), (self.export_cancel, line + 6),
                              (self.busy_label, busy)):
            widget.setFixedSize(width, line)
        self.model_label.setMinimumWidth(80)
        for widget in (self.export_progress, self.export_cancel):
            widget.setVisible(False)

    def bind(self, state, controller) -> None:
        """Show ``state``'s models, device, test set and export, and whether jobs run."""
        from capsviewer.training import describe_device

        self.state = state
        self.export_cancel.clicked.connect(controller.cancel_export)
        self.device_label.setText(describe_device(state.device))
        events = state.events
        events.models.connect(self._models_changed)
        events.device.connect(lambda device: self.device_label.setText(describe_device(device)))
        events.test_set.connect(self._data_changed)
        events.export.connect(self._export_changed)
        controller.busy_changed.connect(
            lambda busy: self.busy_label.setText("computing…" if busy else ""))
        self._export_changed(state.export)
        if state.test_set is not None:
            self._data_changed(state.test_set)

    def say(self, text: str) -> None:
        self.showMessage(text)

    def _models_changed(self, models) -> None:
        """Which file each model is (accuracy and full paths in the tooltip)."""
        self.model_label.setText("  |  ".join(m.short_name() for m in models.values())
                                 or "no model")
        self.model_label.setToolTip("\n".join(f"{m.summary()}: {m.path}" for m in models.values()))
        if "capsnet" not in models:
            self.say(f"No CapsNet loaded: {NO_MODEL}")

    def _data_changed(self, images) -> None:
        if images is None:
            self.show_data(None)
        else:
            self.show_data(images.name, len(images), images.is_sample)

    def show_data(self, name: str | None, count: int = 0, is_sample: bool = False) -> None:
        """Which test set the browser shows: the whole one, the shipped sample, or none."""
        if name is None:
            self.data_label.setText("no test set")
            self.data_label.setToolTip("")
            return
        title = DATASET_TITLES.get(name, name)
        if is_sample:
            self.data_label.setText(f"{count:,}-image sample of the {title} test set: "
                                    "File ▸ Download the full test set")
            self.data_label.setToolTip(
                f"The full {title} test set is not in the data folder; these are its first "
                f"{count:,} images, shipped with capsviewer. File ▸ Download the full "
                "test set fetches it (not the training set), or File ▸ Choose data folder… "
                "points capsviewer at a copy.")
        else:
            self.data_label.setText(f"{title}: {count:,} test images")
            self.data_label.setToolTip("")

    def _export_changed(self, result) -> None:
        for widget in (self.export_progress, self.export_cancel):
            widget.setVisible(result.pending)
        if result.pending:
            done, total = result.progress or (0, 1)
            self.export_progress.setRange(0, total)
            self.export_progress.setValue(done)
            self.export_progress.setFormat("exporting… %p%")
        elif result.error:
            self.say("Export cancelled" if result.error == "cancelled"
                     else f"Export failed: {result.error}")
        elif result.value is not None:
            if len(result.value) == 1:
                self.say(f"Exported {result.value[0]}")
            else:
                folder = result.value[0].parent if result.value else ""
                self.say(f"Exported {len(result.value)} files to {folder}")

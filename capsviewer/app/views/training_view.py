"""Train a CapsNet or the CNN from the window: a form, live loss and accuracy curves, a log.

The view only builds a :class:`TrainConfig` and draws the events it is given; a
:class:`TrainingRunner` (``connect_runner``) does the training off the UI thread.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import QEvent, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

import pyqtgraph as pg  # after PySide6, so pyqtgraph binds it

from capsviewer import paths
from capsviewer.app.state import EM_MODELS
from capsviewer.app.views.common import FORMULAS, ExportableView, Table
from capsviewer.data.augmentation import SHIFT
from capsviewer.data.tasks import MULTIMNIST
from capsviewer.models import CapsNetConfig, configured_by, default_routing_iterations
from capsviewer.training import (
    BatchProgress,
    EpochResult,
    EvaluationProgress,
    Option,
    TrainConfig,
    TrainingFinished,
    train_options,
)
from capsviewer.training.devices import device_choices

ROUTED = default_routing_iterations()  # architectures with routing: default iterations
ROUTING_CHOICE = configured_by("routing")  # architectures whose routing algorithm is chosen
EXTRA_TIPS = {"model": FORMULAS["routing"], "routing_iterations": FORMULAS["routing"]}
SMOOTHING = 0.1  # weight of the newest point in the exponential moving average
REDRAW_INTERVAL_MS = 100  # the curves and the progress bar redraw at most 10 times a second
POINT_COLUMNS = ("step", "epoch", "batch", "loss", "accuracy", "smoothed_loss",
                 "smoothed_accuracy")
TRAIN_COLOUR, TEST_COLOUR = (31, 119, 180), (255, 127, 14)  # readable on light and dark

LOSS_TIP = (
    "Training loss per batch (faint: each update, bold: smoothed) and per epoch "
    "(● train, ■ test).\n"
    f"CapsNet: margin loss Σ_k L_k,  {FORMULAS['margin']}\n"
    f"plus reconstruction: {FORMULAS['reconstruction']}\n"
    "CNN: cross-entropy −log p_y,  " + FORMULAS["cnn"]
)
ACCURACY_TIP = (
    "Fraction of images classified correctly: training batches (smoothed) and the test set "
    "after each epoch (■).\nCapsNet predicts the longest digit capsule, argmax_k ‖v_k‖."
)


CHECKPOINTS = "{model}-{dataset}-<date>-<time>.safetensors"


def default_checkpoint(model: str, dataset: str, when: datetime | None = None) -> Path:
    """A run's own file: ``<user data>/capsviewer/checkpoints/{model}-{dataset}-{date}-{time}
    .safetensors`` (then ``-2``, ``-3``… if that exists): a run never overwrites a model."""
    stamp = (when or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return unused_path(paths.checkpoints_dir() / f"{model}-{dataset}-{stamp}.safetensors")


def unused_path(path: Path) -> Path:
    """``path``, or ``stem-2.suffix``, ``stem-3.suffix``… whichever does not exist yet."""
    path, n = Path(path), 2
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes = f"{rest // 60:02d}:{rest % 60:02d}"
    return f"{hours}:{minutes}" if hours else minutes


def form_options() -> list[Option]:
    """The TrainConfig options the tab shows, in their declared order."""
    return [opt for opt in train_options() if opt.label is not None]


def option_widget(opt: Option) -> QWidget:
    """The input for one declared option: a list for choices and devices, a spin box within
    the declared range (0 reads "all …" where None means all images), a line for paths."""
    if opt.kind == "path":
        return QLineEdit()
    if opt.kind == "device" or opt.choices is not None:
        combo = QComboBox()
        for value in (device_choices() if opt.kind == "device" else opt.choices):
            combo.addItem((opt.titles or {}).get(value, value), value)
        return combo
    if opt.type is float:
        spin = QDoubleSpinBox()
        spin.setDecimals(1 - math.floor(math.log10(opt.step)) if opt.step else 2)  # 1e-4: 5
    else:
        spin = QSpinBox()
    everything = opt.optional and opt.key is None  # None: all images
    low = 0 if everything else opt.minimum
    spin.setRange(low, min(opt.maximum, 2**31 - 1))
    spin.setSingleStep(opt.step or 1)
    if everything:
        spin.setSpecialValueText(f"all {opt.maximum:,}")
    return spin


def read_widget(widget: QWidget, opt: Option):
    if isinstance(widget, QComboBox):
        return widget.currentData()
    if isinstance(widget, QLineEdit):
        return widget.text().strip() or None
    if opt.optional and opt.key is None:
        return widget.value() or None  # 0 reads "all"
    return widget.value()


def write_widget(widget: QWidget, opt: Option, value) -> None:
    if isinstance(widget, QComboBox):
        index = widget.findData(value)
        if index >= 0:
            widget.setCurrentIndex(index)
    elif isinstance(widget, QLineEdit):
        widget.setText("" if value is None else str(value))
    else:
        widget.setValue(value or 0)


class TrainingView(QWidget, ExportableView):
    export_name = "training"

    start_requested = Signal(object)  # TrainConfig
    pause_requested = Signal()
    resume_requested = Signal()
    cancel_requested = Signal()
    model_ready = Signal(str)  # checkpoint path of a finished (or cancelled) run
    use_model = Signal(str)  # the user chose to load that checkpoint in the window

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._data_root: str | None = None
        self._state = "idle"
        self._output_edited = False
        self._ready: str | None = None  # the checkpoint of the last run, offered for use
        self._runner = None
        self._routed_model = "capsnet"  # whose default the iterations spin box holds
        self._history: list[EpochResult] = []
        # Per progress event: step, epoch, batch, loss, accuracy and the two moving averages
        # (rows 0…_count−1 of a buffer that doubles when full).
        self._points = np.zeros((1024, len(POINT_COLUMNS)))
        self._count = 0
        self._redraw_timer = QTimer(self)  # progress is drawn at most 10 times a second
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(REDRAW_INTERVAL_MS)
        self._redraw_timer.timeout.connect(self._redraw)
        self.redraws = 0  # how often the curves were drawn (tests, benchmarks)
        self._batches_per_epoch = 1
        self._progress_text = self._epoch_text = ""
        self._build_form()
        self._build_plots()
        self._update_model_fields()
        self.on_state("idle")

    # -- construction --------------------------------------------------------------------------
    def _build_form(self) -> None:
        """One row per declared option (:func:`form_options`), built from its declaration."""
        self._options = form_options()
        self._fields: dict[str, QWidget] = {}
        form = QFormLayout()
        for opt in self._options:
            widget = option_widget(opt)
            tip = opt.help[0].upper() + opt.help[1:] + "."
            widget.setToolTip(tip + (f"\n{EXTRA_TIPS[opt.key or opt.name]}"
                                     if (opt.key or opt.name) in EXTRA_TIPS else ""))
            if opt.key is None and opt.kind != "path":
                write_widget(widget, opt, opt.default)
            self._fields[opt.key or opt.name] = widget
            row = widget
            if opt.kind == "path":  # the checkpoint: a line and a file dialog
                browse = QToolButton()
                browse.setText("…")
                browse.setToolTip("Choose where the checkpoint is written after every epoch.")
                browse.clicked.connect(self._browse_output)
                row = QHBoxLayout()
                row.setContentsMargins(0, 0, 0, 0)
                row.addWidget(widget, 1)
                row.addWidget(browse)
            form.addRow(opt.label, row)
        self._model, self._dataset = self._fields["model"], self._fields["dataset"]
        self._iterations, self._device = self._fields["routing_iterations"], self._fields["device"]
        self._routing, self._augmentation = self._fields["routing"], self._fields["augmentation"]
        self._output = self._fields["output"]
        self._output_help = self._output.toolTip()
        self._iterations.setValue(ROUTED[self._model.currentData()])
        self._output.textEdited.connect(self._on_output_edited)
        self._inputs = [*self._fields.values(), browse]

        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.cancel_button = QPushButton("Cancel")
        self.use_button = QPushButton("Use this model")
        self.use_button.setToolTip("Load the checkpoint this run wrote in place of the model "
                                   "of its kind (Model ▸ Shipped models brings those back)")
        self.use_button.setEnabled(False)
        self.use_button.clicked.connect(lambda: self.use_model.emit(self._ready))
        self.start_button.clicked.connect(self._on_start_clicked)
        self.pause_button.clicked.connect(self._on_pause_clicked)
        self.cancel_button.clicked.connect(self.cancel_requested)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.cancel_button, self.use_button):
            buttons.addWidget(button)

        self._log = QListWidget()
        self._log.setToolTip("One line per finished epoch.")
        self._log.setWordWrap(True)
        left = QVBoxLayout()
        left.addLayout(form)
        left.addLayout(buttons)
        left.addWidget(self._log, 1)
        self._left = left

        self._model.currentIndexChanged.connect(self._update_model_fields)
        self._dataset.currentIndexChanged.connect(self._update_model_fields)

    def _build_plots(self) -> None:
        self._progress = QProgressBar()
        self._progress.setTextVisible(True)
        self.loss_plot = self._plot("loss", LOSS_TIP)
        self.accuracy_plot = self._plot("accuracy", ACCURACY_TIP)
        # Ranges are set by _fit_ranges, not recomputed from the data at every redraw: the
        # axes then repaint only when a range changes (about once an epoch), not at every point.
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.disableAutoRange()
        self.accuracy_plot.setYRange(0, 1)
        self._ranges = (0.0, 0.0)  # the x and loss axes' upper ends as set
        faint = pg.mkPen((*TRAIN_COLOUR, 70), width=1)
        bold = pg.mkPen(TRAIN_COLOUR, width=2)
        self.loss_raw = self.loss_plot.plot(pen=faint)
        self.loss_curve = self.loss_plot.plot(pen=bold, name="train (batches)")
        self.loss_train_epochs = self._markers(self.loss_plot, "o", TRAIN_COLOUR, "train (epoch)")
        self.loss_test_epochs = self._markers(self.loss_plot, "s", TEST_COLOUR, "test (epoch)")
        self.accuracy_raw = self.accuracy_plot.plot(pen=faint)
        self.accuracy_curve = self.accuracy_plot.plot(pen=bold, name="train (batches)")
        self.accuracy_test_epochs = self._markers(self.accuracy_plot, "s", TEST_COLOUR,
                                                  "test (epoch)")
        for curve in (self.loss_raw, self.loss_curve, self.accuracy_raw, self.accuracy_curve):
            # a long run's thousands of points cost what the plot's width shows
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
        right = QVBoxLayout()
        right.addWidget(self._progress)
        right.addWidget(self.loss_plot, 1)
        right.addWidget(self.accuracy_plot, 1)
        layout = QHBoxLayout(self)
        layout.addLayout(self._left, 0)
        layout.addLayout(right, 1)
        self._apply_palette()

    def _plot(self, quantity: str, tip: str) -> pg.PlotWidget:
        plot = pg.PlotWidget()
        plot.setLabel("bottom", "batch")
        plot.setLabel("left", quantity)
        plot.getAxis("left").enableAutoSIPrefix(False)  # a loss of 0.7 reads 0.7, not 700 × 0.001
        # No grid: its lines belong to the axes, which then repaint the whole plot area with
        # every new point (≈100 ms a redraw on a busy 2-core CPU, against ≈10 ms without).
        # loss falls and accuracy rises: keep the legend in the corner the curve leaves free
        plot.addLegend(offset=(-10, 10) if quantity == "loss" else (-10, -10))
        plot.setMenuEnabled(False)
        plot.setToolTip(tip)
        plot.placeholder = pg.TextItem(f"the {quantity} appears here once a training run starts",
                                       anchor=(0.5, 0.5), color=pg.getConfigOption("foreground"))
        plot.placeholder.setPos(0.5, 0.5)
        plot.addItem(plot.placeholder, ignoreBounds=True)
        plot.getAxis("bottom").setTicks([[]])  # no batch numbers before there are batches
        return plot

    @staticmethod
    def _markers(plot: pg.PlotWidget, symbol: str, colour, name: str) -> pg.PlotDataItem:
        return plot.plot(pen=None, symbol=symbol, symbolSize=9, symbolBrush=colour,
                         symbolPen=pg.mkPen(colour), name=name)

    def _apply_palette(self) -> None:
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.setBackground(self.palette().color(QPalette.ColorRole.Base))

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self._apply_palette()
        super().changeEvent(event)

    # -- form ------------------------------------------------------------------------------------
    def set_dataset(self, name: str) -> None:
        """Preselect dataset ``name`` in the form (the window's dataset), unless training."""
        index = self._dataset.findData(name)
        if index >= 0 and self._dataset.isEnabled():
            self._dataset.setCurrentIndex(index)

    def set_data_root(self, path: str | Path | None) -> None:
        """Where datasets are read (None: $CAPSVIEWER_DATA or the user data directory)."""
        self._data_root = None if path is None else str(path)

    def config(self) -> TrainConfig:
        """The TrainConfig the form describes."""
        values = {opt.name: read_widget(self._fields[opt.key or opt.name], opt)
                  for opt in self._options if opt.key is None}
        model_config = values["model_config"] = {}
        if values["model"] in ROUTED:
            model_config["routing_iterations"] = self._iterations.value()
        if values["model"] in ROUTING_CHOICE:
            model_config["routing"] = self._routing.currentData()
        if values["dataset"] == MULTIMNIST:  # pairs have their own shifts
            values["augmentation"] = SHIFT
        on_gpu = values["device"].startswith("cuda") or (
            values["device"] == "auto" and torch.cuda.is_available())
        typed = values["output"]
        values["output"] = str(unused_path(Path(typed)) if typed else self._default_output())
        # Cancel is checked between test batches: small ones keep it prompt on a CPU.
        return TrainConfig(**values, data_root=self._data_root,
                           eval_batch_size=500 if on_gpu else 100)

    def set_config(self, config: TrainConfig) -> None:
        """Fill the form from ``config`` (fields the form does not show are not kept)."""
        for opt in self._options:
            if opt.key is None and opt.kind != "path":
                write_widget(self._fields[opt.name], opt, getattr(config, opt.name))
        self._iterations.setValue(config.model_config.get(
            "routing_iterations", ROUTED.get(config.model, self._iterations.value())))
        routing = next(o for o in self._options if o.key == "routing")
        write_widget(self._routing, routing,
                     config.model_config.get("routing", CapsNetConfig.routing))
        if config.output:
            self._output.setText(config.output)
            self._output_edited = True
        if config.data_root is not None:
            self._data_root = config.data_root

    def _default_output(self) -> Path:
        return default_checkpoint(self._model.currentData(), self._dataset.currentData())

    @Slot()
    def _update_model_fields(self) -> None:
        model = self._model.currentData()
        self._iterations.setEnabled(self._state == "idle" and model in ROUTED)
        self._routing.setEnabled(self._state == "idle" and model in ROUTING_CHOICE)
        self._augmentation.setEnabled(self._state == "idle"
                                      and self._dataset.currentData() != MULTIMNIST)
        if model in ROUTED and model != self._routed_model:
            self._routed_model = model
            self._iterations.setValue(ROUTED[model])
        if not self._output_edited:
            self._output.clear()
            pattern = (f"{self._model.currentData()}-{self._dataset.currentData()}-"
                       "<date>-<time>.safetensors")
            self._output.setPlaceholderText("a new file per run")
            self._output.setToolTip(f"{self._output_help}\nEmpty: every run writes a new file, "
                                    f"{pattern}, in the user's checkpoint folder".strip())

    @Slot(str)
    def _on_output_edited(self, text: str) -> None:
        self._output_edited = bool(text.strip())

    @Slot()
    def _browse_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save checkpoints as", self._output.text(),
                                              "safetensors (*.safetensors)")
        if path:
            self._output.setText(path)
            self._output_edited = True

    @Slot()
    def _on_start_clicked(self) -> None:
        self.start_requested.emit(self.config())

    @Slot()
    def _on_pause_clicked(self) -> None:
        (self.resume_requested if self._state == "paused" else self.pause_requested).emit()

    # -- runner events -------------------------------------------------------------------------
    def connect_runner(self, runner) -> None:
        """Wire this view to a TrainingRunner in both directions."""
        self._runner = runner
        self.start_requested.connect(runner.start)
        self.pause_requested.connect(runner.pause)
        self.resume_requested.connect(runner.resume)
        self.cancel_requested.connect(runner.cancel)
        runner.progress.connect(self.on_progress)
        runner.testing.connect(self.on_testing)
        runner.epoch_done.connect(self.on_epoch)
        runner.finished.connect(self.on_finished)
        runner.failed.connect(self.on_failed)
        runner.state_changed.connect(self.on_state)

    @Slot(str)
    def on_state(self, state: str) -> None:
        if self._state == "idle" and state == "running":
            self._clear()
            self._ready = None
            self.use_button.setEnabled(False)
        self._state = state
        active = state in ("running", "paused")
        self.start_button.setEnabled(state == "idle")
        self.pause_button.setEnabled(active)
        self.pause_button.setText("Resume" if state == "paused" else "Pause")
        self.cancel_button.setEnabled(active)
        for widget in self._inputs:
            widget.setEnabled(state == "idle")
        self._update_model_fields()
        if state == "cancelling":
            self._progress.setFormat("cancelling…")
        elif state == "paused":
            self._progress.setFormat(f"paused · {self._progress_text}")
        elif state == "running" and self._progress_text:
            self._progress.setFormat(self._progress_text)

    @Slot(object)
    def on_progress(self, event: BatchProgress) -> None:
        """Record the event; the curves and the bar are drawn by :meth:`_redraw`, at most
        every REDRAW_INTERVAL_MS, whatever the rate of events."""
        step = (event.epoch - 1) * event.batches + event.batch
        if self._count == len(self._points):
            self._points = np.concatenate([self._points, np.zeros_like(self._points)])
        loss, accuracy = event.loss, event.accuracy
        if self._count:
            last_loss, last_accuracy = self._points[self._count - 1, 5:]
            loss = last_loss + SMOOTHING * (event.loss - last_loss)
            accuracy = last_accuracy + SMOOTHING * (event.accuracy - last_accuracy)
        self._points[self._count] = (step, event.epoch, event.batch, event.loss, event.accuracy,
                                     loss, accuracy)
        self._count += 1
        self._batches_per_epoch = event.batches
        self._progress_range = (event.epochs * event.batches, step)
        self._epoch_text = f"epoch {event.epoch}/{event.epochs}"
        self._progress_text = (
            f"{self._epoch_text} · batch {event.batch}/{event.batches} · "
            f"{event.images_per_second:,.0f} img/s · ETA {format_duration(event.eta_seconds)}"
        )
        self._schedule_redraw()

    @Slot(object)
    def on_testing(self, event: EvaluationProgress) -> None:
        """The test pass after an epoch: the images tested so far (the ETA counts batches)."""
        self._progress_text = (f"{self._epoch_text} · testing {event.images:,}/{event.total:,} "
                               "test images")
        self._schedule_redraw()

    def _schedule_redraw(self) -> None:
        if not self._redraw_timer.isActive():
            self._redraw_timer.start()

    @Slot()
    def _redraw(self) -> None:
        """Draw what the progress events recorded since the last redraw."""
        self._redraw_timer.stop()
        points = self._points[:self._count]
        steps = points[:, 0]
        self.loss_raw.setData(steps, points[:, 3])
        self.loss_curve.setData(steps, points[:, 5])
        self.accuracy_raw.setData(steps, points[:, 4])
        self.accuracy_curve.setData(steps, points[:, 6])
        if self._count:
            self._progress.setRange(0, int(self._progress_range[0]))
            self._progress.setValue(int(self._progress_range[1]))
        if self._state != "paused" and self._progress_text:
            self._progress.setFormat(self._progress_text)
        self._fit_ranges()
        self.redraws += 1

    def _fit_ranges(self) -> None:
        """x: the epochs begun so far (grows once an epoch); loss: 0 to a little above the
        largest loss drawn (grows when a larger one comes)."""
        if not self._count:
            return
        right = self._points[self._count - 1, 1] * self._batches_per_epoch
        tested = [h.test_loss for h in self._history]
        top = float(np.nanmax([*self._points[:self._count, 3], *tested]))
        x_right, loss_top = self._ranges
        if right != x_right:
            for plot in (self.loss_plot, self.accuracy_plot):
                plot.setXRange(0, right, padding=0.02)
        if top > loss_top or not loss_top:
            loss_top = 1.1 * top if top > 0 else 1.0
            self.loss_plot.setYRange(0, loss_top, padding=0)
        self._ranges = (right, loss_top)

    @Slot(object)
    def on_epoch(self, result: EpochResult) -> None:
        self._redraw()  # the epoch's markers join curves that are up to date
        self._history.append(result)
        # x: the last batch of each epoch, on the batch axis of the curves
        steps = np.array([h.epoch * self._batches_per_epoch for h in self._history], float)
        train_loss, test_loss, test_accuracy = np.array(
            [(h.train_loss, h.test_loss, h.test_accuracy) for h in self._history]).T
        self.loss_train_epochs.setData(steps, train_loss)
        self.loss_test_epochs.setData(steps, test_loss)
        self.accuracy_test_epochs.setData(steps, test_accuracy)
        self._fit_ranges()  # a test loss above every batch's
        self._log.addItem(
            f"epoch {result.epoch}/{result.epochs} · test accuracy "
            f"{100 * result.test_accuracy:.2f} %, loss {result.test_loss:.4f} · train accuracy "
            f"{100 * result.train_accuracy:.2f} %, loss {result.train_loss:.4f} · "
            f"{result.seconds:.1f} s, {result.images_per_second:,.0f} img/s"
        )
        self._log.scrollToBottom()

    @Slot(object)
    def on_finished(self, finished: TrainingFinished) -> None:
        self._redraw()
        best = finished.best_test_accuracy
        verdict = "finished" if finished.completed else "cancelled"
        line = (f"{verdict} after {finished.epochs_done} epoch(s) "
                f"in {format_duration(finished.seconds)}")
        if best is not None:
            line += f" · best test accuracy {100 * best:.2f} %"
        bar = line
        if finished.checkpoint:
            line += f" · {finished.checkpoint}"
            bar += f" · {Path(finished.checkpoint).name}"
        self._log.addItem(line)
        self._log.scrollToBottom()
        self._set_bar_text(bar, line)
        if finished.checkpoint and finished.epochs_done >= 1:
            run = self._runner.config if self._runner is not None else self.config()
            pairs = run.dataset == MULTIMNIST  # the Overlap tab shows a pair CapsNet
            usable = run.model == "capsnet" if pairs else run.model in ("capsnet", "cnn",
                                                                         *EM_MODELS)
            self._ready = finished.checkpoint if usable else None
            self.use_button.setEnabled(usable)
            if pairs:
                note = ("Saved as a new file; “Use this model” shows it in the Overlap tab."
                        if usable else "Saved; the Overlap tab shows MultiMNIST CapsNets only.")
            else:
                note = ("Saved as a new file; the window keeps its models until you press "
                        "“Use this model”." if usable else
                        "Saved; the window shows CapsNet, CNN and matrix-capsule models only.")
            self._log.addItem(note)
            self.model_ready.emit(finished.checkpoint)

    @Slot(str)
    def on_failed(self, message: str) -> None:
        self._redraw()
        self._log.addItem(f"failed: {message}")
        self._log.scrollToBottom()
        self._set_bar_text("failed: " + message.splitlines()[0])

    def _set_bar_text(self, text: str, whole: str | None = None) -> None:
        """A final line on the progress bar, elided to its width; ``whole`` (the line with
        the checkpoint's full path, as in the log) in its tooltip."""
        room = self._progress.contentsRect().width() - 16
        shown = self._progress.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, room)
        self._progress.setFormat(shown)
        self._progress.setToolTip(whole or text)

    def _clear(self) -> None:
        for plot in (self.loss_plot, self.accuracy_plot):  # a run starts: its curves come
            plot.placeholder.setText("")
            plot.getAxis("bottom").setTicks(None)
        self._redraw_timer.stop()
        self._history, self._count = [], 0
        self._progress_text = self._epoch_text = ""
        for item in (self.loss_raw, self.loss_curve, self.loss_train_epochs, self.loss_test_epochs,
                     self.accuracy_raw, self.accuracy_curve, self.accuracy_test_epochs):
            item.setData([], [])
        self._ranges = (0.0, 0.0)
        self._progress.reset()
        self._progress.setFormat("starting…")
        self._progress.setToolTip("")
        self._log.clear()

    # -- export --------------------------------------------------------------------------------
    def export_tables(self) -> dict[str, Table]:
        history = (
            ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds",
             "images_per_second"],
            [[h.epoch, h.train_loss, h.train_accuracy, h.test_loss, h.test_accuracy, h.seconds,
              h.images_per_second] for h in self._history],
        )
        columns = ["step", "epoch", "batch", "loss", "smoothed_loss", "accuracy",
                   "smoothed_accuracy"]
        order = [POINT_COLUMNS.index(c) for c in columns]
        batches = (columns, [[int(row[0]), int(row[1]), int(row[2]), *row[3:]] for row in
                             self._points[:self._count, order].tolist()])
        return {"training-history": history, "training-batch-loss": batches}

    def export_scenes(self) -> dict[str, pg.GraphicsItem]:
        return {"training-loss": self.loss_plot.getPlotItem(),
                "training-accuracy": self.accuracy_plot.getPlotItem()}

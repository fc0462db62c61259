"""The app when things go wrong: bad files dropped or found, jobs that raise, a window closed
while it trains. Each gives one sentence (Python's text only behind "Show Details…"), keeps
what was shown, and never blocks or crashes the UI thread."""

import threading

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from capsviewer.app.main_window import MainWindow
from capsviewer.app.views import input_view
from capsviewer.app.views.training_view import REDRAW_INTERVAL_MS, TrainingView
from capsviewer.training import BatchProgress, TrainConfig, save_checkpoint
from capsviewer.training.model_files import find_models

from fuzz_cases import METADATA_CASES, tiny_cnn


def open_window(qtbot, models, data_root, tmp_path, show_errors=False):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(models, data_root=str(data_root), settings=settings, download=False,
                        show_errors=show_errors, predict_test_set=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: set(window.state.models) == set(models) and window.is_idle()
                    and window.image is not None, timeout=30_000)
    return window


def drop(widget, path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    buttons, keys = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(QPoint(20, 20), Qt.DropAction.CopyAction, mime, buttons, keys)
    QApplication.sendEvent(widget, enter)
    dropped = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, buttons, keys)
    QApplication.sendEvent(widget, dropped)
    assert enter.isAccepted() and dropped.isAccepted()


def test_dropped_files_are_decoded_off_the_ui_thread_and_failures_are_sentences(qtbot, model_files, data_root, tmp_path,
                                                     monkeypatch, mnist_test):
    window = open_window(qtbot, {"cnn": model_files["cnn"]}, data_root, tmp_path,
                         show_errors=True)
    threads = []
    load = input_view.load_image_file
    monkeypatch.setattr(input_view, "load_image_file",
                        lambda path: threads.append(threading.current_thread()) or load(path))
    digit = tmp_path / "digit.png"
    Image.fromarray(255 - mnist_test.images[3, 0].numpy()).resize((2000, 2000)).save(digit)
    drop(window.input_view, digit)
    assert window.input_view._caption.text() == "Opening digit.png…"
    qtbot.waitUntil(lambda: window.image is not None and window.image.source == "file digit.png",
                    timeout=30_000)
    assert threads and threads[0] is not threading.main_thread()

    shown = window.image
    huge = tmp_path / "huge.png"
    Image.new("L", (9000, 9000)).save(huge)  # 81 megapixels in 79 KB
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    for path, phrase in ((huge, "too large"), (broken, "not an image")):
        errors = len(window.errors)
        drop(window.input_view, path)
        qtbot.waitUntil(lambda: len(window.errors) > errors, timeout=30_000)
        title, message = window.errors[-1]
        assert title == "Cannot use image" and path.name in message and phrase in message
        assert window.image is shown  # nothing lost
        assert window.input_view._caption.text() == "Input: file digit.png"
        assert window.error_box.text() == message and not window.error_box.detailedText()
        window.error_box.close()

    # A failure capsviewer did not expect: a sentence, Python's text behind "Show Details…"
    from capsviewer.app import controller

    def failing(*args):
        raise KeyError("conv1.weight")

    monkeypatch.setattr(controller, "_rotated_responses", failing)
    errors = len(window.errors)
    window.state.angle = 30.0
    qtbot.waitUntil(lambda: len(window.errors) > errors, timeout=30_000)
    title, message = window.errors[-1]
    assert title == "Rotated failed" and message.startswith(
        "Something went wrong while computing “rotated”. This is a bug in capsviewer")
    assert "KeyError" not in message and "conv1" not in message
    box = window.error_box
    assert box.text() == message and "KeyError: 'conv1.weight'" in box.detailedText()
    assert "Traceback" in box.detailedText()
    box.close()
    window.shutdown()


def test_bad_files_in_a_model_folder_are_skipped_and_named(qtbot, data_root, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    save_checkpoint(folder / "good.safetensors", tiny_cnn(), {"dataset": {"name": "mnist"}})
    for name in ("json-null", "architecture-unknown", "training-state-kind"):
        (folder / f"{name}.safetensors").write_bytes(METADATA_CASES[name]())
    models = find_models("mnist", [folder])
    assert set(models) == {"cnn"} and len(models.skipped) == 3
    window = open_window(qtbot, models, data_root, tmp_path)
    assert window.skipped_label.text() == "⚠ 3 model file(s) skipped"
    assert "json-null.safetensors" in window.skipped_label.toolTip()
    assert "\n" in window.skipped_label.toolTip() and not window.errors
    window.shutdown()


def test_closing_the_window_while_a_capsnet_trains_stops_it_cleanly(
        qtbot, model_files, data_root, tmp_path, mnist_train, mnist_test):
    window = open_window(qtbot, {"cnn": model_files["cnn"]}, data_root, tmp_path)
    runner = window.runner
    progress = []
    runner.progress.connect(progress.append)
    runner.start(TrainConfig(model="capsnet", subset=2000, test_subset=500, batch_size=32,
                             epochs=1, device="cpu", output=str(tmp_path / "c.safetensors")),
                 mnist_train, mnist_test)
    qtbot.waitUntil(lambda: len(progress) >= 1, timeout=60_000)
    window.close()  # shutdown: cancel, then wait for the worker
    assert runner.wait(0)  # the worker thread ended within the close
    qtbot.waitUntil(lambda: not runner.is_running(), timeout=5_000)  # its last signals arrived
    assert not (tmp_path / "c.safetensors").exists()  # the epoch never finished


def test_progress_is_redrawn_at_a_bounded_rate(qtbot):
    """500 progress events in a burst are drawn once, on the next redraw tick."""
    view = TrainingView()
    qtbot.addWidget(view)
    view.on_state("running")
    assert REDRAW_INTERVAL_MS >= 100  # ≤ 10 redraws a second
    for batch in range(1, 501):
        view.on_progress(BatchProgress(1, 1, batch, 500, 1.0 / batch, 0.5, 100.0, batch, 1.0,
                                       1e-3))
    assert view.redraws == 0 and view.loss_raw.getOriginalDataset()[0] is None
    qtbot.waitUntil(lambda: view.redraws == 1, timeout=5_000)
    steps, losses = view.loss_raw.getOriginalDataset()
    assert np.array_equal(steps, np.arange(1, 501)) and losses[-1] == pytest.approx(1 / 500)
    assert view._progress.value() == 500 and "batch 500/500" in view._progress.format()
    header, rows = view.export_tables()["training-batch-loss"]
    assert len(rows) == 500 and rows[1][:4] == [2, 1, 2, 0.5]

"""What the app tells a user about a failure: one clear sentence, and for the unexpected ones
the technical details (shown only behind "Show Details…" in the dialog)."""

from __future__ import annotations

import traceback


def explain(error: BaseException, doing: str) -> tuple[str, str]:
    """(sentence, details) for ``error``, raised while ``doing`` ("loading the model"…).
    Failures capsviewer expects carry their own sentence and need no details; anything else
    is described in plain words, its Python text and traceback kept as the details."""
    from capsviewer.analysis.preprocess import ImageError
    from capsviewer.data import DatasetUnavailable, DownloadCancelled
    from capsviewer.training import CheckpointError, DeviceUnavailable, TrainingError

    if isinstance(error, (CheckpointError, DatasetUnavailable, DeviceUnavailable, TrainingError,
                          ImageError, DownloadCancelled)):
        return _sentence(str(error)), ""
    if isinstance(error, OSError):
        where = f" {error.filename}" if error.filename is not None else ""
        reason = (error.strerror or "the system refused").rstrip(".")
        return f"Could not use{where} while {doing}: {reason}.", ""
    if isinstance(error, MemoryError):
        return f"There was not enough memory for {doing}.", ""
    details = "".join(traceback.format_exception(error)).strip()
    return (f"Something went wrong while {doing}. This is a bug in capsviewer; please report "
            "it."), details


def _sentence(text: str) -> str:
    text = " ".join(text.split())  # one line
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."

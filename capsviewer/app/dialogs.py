"""What the menus open: file dialogs for models and exports, the formulas and About boxes.
Each takes the main window; the work they start runs in the background."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox


CHECKPOINTS = "capsviewer checkpoints (*.safetensors)"


def last_dir(window) -> str:
    return str(window.settings.value("last_dir", str(Path.home())))


def open_model(window) -> None:
    path, _ = QFileDialog.getOpenFileName(window, "Open model", last_dir(window), CHECKPOINTS)
    if path:
        window.settings.setValue("last_dir", str(Path(path).parent))
        window.session.load_checkpoint(path)


def save_model(window, architecture: str) -> None:
    entry = window.state.models.get(architecture)
    if entry is None:
        window.report_error("Nothing to save", f"No {architecture} model is loaded.")
        return
    path, _ = QFileDialog.getSaveFileName(window, "Save model", last_dir(window), CHECKPOINTS)
    if path:
        from capsviewer.training import save_checkpoint

        meta = {k: v for k, v in entry.metadata.items()
                if k not in ("format", "format_version", "architecture", "config")}
        window.controller.lanes["loading"].submit(
            "save", save_checkpoint, path, entry.model, meta,
            on_done=lambda saved: window.status_text.setText(f"Saved {saved}"),
            on_error=lambda error: window.report_error("Could not save", str(error)))


def choose_data_root(window) -> None:
    """A folder holding the datasets in torchvision's layout: its test set replaces the one
    in use (the sample, say), and training reads from it."""
    from capsviewer.data import resolve_data_root

    folder = QFileDialog.getExistingDirectory(window, "Data folder (holding MNIST/raw)",
                                              str(resolve_data_root(window.session.data_root)))
    if folder:
        window.session.set_data_root(folder)
        window.training_view.set_data_root(folder)


def export(window, current: bool) -> None:
    """Ask for a folder, then export in the background (progress and Cancel in the status bar)."""
    folder = QFileDialog.getExistingDirectory(window, "Export to folder", last_dir(window))
    if folder:
        window.controller.export(window.export_targets(current), folder)


def export_animation(window) -> None:
    """Ask for a file, then write the routing iterations as a GIF in the background."""
    start = str(Path(last_dir(window)) / "routing.gif")
    path, _ = QFileDialog.getSaveFileName(window, "Export routing animation", start,
                                          "Animated GIF (*.gif)")
    if path:
        path = path if path.lower().endswith(".gif") else f"{path}.gif"
        window.controller.export_animation(window.on_routing_tab(), path)


def formulas(window) -> None:
    from capsviewer.app.formulas_window import open_formulas

    open_formulas(window)


def about(window) -> None:
    import capsviewer

    QMessageBox.about(window, "About capsviewer",
                      f"capsviewer {capsviewer.__version__}\n\nExplore Capsule Networks: "
                      "Sabour, Frosst & Hinton (2017), Dynamic Routing Between Capsules.")

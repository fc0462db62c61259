"""The PySide6 desktop app. Imports the numerical core; the core never imports this."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")


def run_app(args) -> int:
    """Open the main window (``args`` from the CLI: model, data_root, device, theme)."""
    from pathlib import Path

    from PySide6.QtWidgets import QApplication

    from capsviewer.app import theme
    from capsviewer.app.main_window import MainWindow, default_models
    from capsviewer.app.settings import user_settings
    from capsviewer.training import read_metadata

    from pyqtgraph.util.garbage_collector import GarbageCollector

    app = QApplication.instance() or QApplication(sys.argv[:1])
    # Collect garbage on the GUI thread only: a cycle holding Qt objects collected on a worker
    # thread (training, compute lanes) deletes them from the wrong thread.
    collector = GarbageCollector(interval=1.0)  # kept alive while the app runs
    app.setApplicationName("capsviewer")
    app.setOrganizationName("capsviewer")
    app.setWindowIcon(theme.app_icon())
    models = default_models()
    for path in getattr(args, "model", None) or []:
        models[read_metadata(path)["architecture"]] = Path(path)
    settings = user_settings()
    if args.theme:
        settings.setValue("theme", args.theme)
    theme.apply_theme(app, str(settings.value("theme", "system")))  # before any plot is built
    window = MainWindow(models, data_root=args.data_root, device=args.device, settings=settings)
    window.show()
    window.offer_tour()  # once, on the first launch; remembered in the settings
    code = app.exec()
    collector.timer.stop()
    window.deleteLater()  # Qt objects go before the interpreter tears down
    app.processEvents()
    return code

"""The PySide6 desktop app. Imports the numerical core; the core never imports this."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
# The app runs torch on several threads at once (compute lanes, training), each with its own
# OpenMP team: threads that spin while they wait starve one another on a machine with few
# cores (a one-image analysis took 7-9x longer on 2 busy cores). Waiting threads sleep instead.
# Set before torch is imported; a value the user set stays.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run_app(args) -> int:
    """Open the main window (``args`` from the CLI: model, data_root, device, theme)."""
    from pyqtgraph.util.garbage_collector import GarbageCollector

    app, window = open_window(args)
    # The tour is offered once, on the first launch (remembered in the settings), when the
    # window has started (it is started behind the painted frame, after this returns).
    window.started.connect(window.offer_tour)
    # Collect garbage on the GUI thread only: a cycle holding Qt objects collected on a worker
    # thread (training, compute lanes) deletes them from the wrong thread.
    collector = GarbageCollector(interval=1.0)  # kept alive while the app runs
    code = app.exec()
    collector.timer.stop()
    window.deleteLater()  # Qt objects go before the interpreter tears down
    app.processEvents()
    return code


def open_window(args, settings=None):
    """The application and its main window, on screen before torch is imported: the frame
    (test-set browser, drawing canvas, menus) shows at once; the test set, torch, the models
    and the views follow behind it (:meth:`MainWindow.start_in_background`)."""
    from PySide6.QtWidgets import QApplication

    from capsviewer.app import theme
    from capsviewer.app.main_window import MainWindow
    from capsviewer.app.settings import user_settings

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("capsviewer")
    app.setOrganizationName("capsviewer")
    app.setWindowIcon(theme.app_icon())
    settings = settings or user_settings()
    if getattr(args, "theme", None):
        settings.setValue("theme", args.theme)
    theme.apply_theme(app, str(settings.value("theme", "system")))  # before any plot is built
    window = MainWindow(data_root=args.data_root, settings=settings, start=False)
    window.show()
    window.start_in_background(getattr(args, "model", None), args.device)
    return app, window

"""Light and dark themes: follow the system by default, or force one (View ▸ Theme)."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPalette
from PySide6.QtWidgets import QApplication, QWidget

from capsviewer.resources import resource_path

THEMES = ("system", "light", "dark")


def app_icon() -> QIcon:
    return QIcon(str(resource_path("icons", "capsviewer.svg")))


def _dark_palette() -> QPalette:
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#1f2226", QPalette.ColorRole.WindowText: "#e6e6e6",
        QPalette.ColorRole.Base: "#16181b", QPalette.ColorRole.AlternateBase: "#24272b",
        QPalette.ColorRole.ToolTipBase: "#2b2f34", QPalette.ColorRole.ToolTipText: "#f0f0f0",
        QPalette.ColorRole.Text: "#e6e6e6", QPalette.ColorRole.Button: "#2a2e33",
        QPalette.ColorRole.ButtonText: "#e6e6e6", QPalette.ColorRole.Highlight: "#3d8fd1",
        QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.Link: "#6cb4ee",
        QPalette.ColorRole.PlaceholderText: "#8a8f96",
        QPalette.ColorRole.Mid: "#6b717a",  # check-box frames, disabled checked buttons
    }
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b7078"))
    return palette


def is_dark(theme: str) -> bool:
    if theme == "system":
        return QGuiApplication.styleHints().colorScheme() == Qt.ColorScheme.Dark
    return theme == "dark"


def apply_theme(app: QApplication, theme: str = "system") -> bool:
    """Set the palette, the style sheet and pyqtgraph's colours; True when dark."""
    if theme not in THEMES:
        theme = "system"
    dark = is_dark(theme)
    app.setStyle("Fusion")
    app.setPalette(_dark_palette() if dark else app.style().standardPalette())
    app.setStyleSheet(style_sheet(app.palette()))
    old_foreground = pg.mkColor(pg.getConfigOption("foreground"))
    background, foreground = plot_colours(dark)
    pg.setConfigOptions(background=background, foreground=foreground, antialias=True)
    for widget in app.allWidgets():
        restyle_plots(widget, dark, old_foreground)
    return dark


def style_sheet(palette: QPalette) -> str:
    """The shipped style sheet, its ``@icons`` pointing at the shipped icons folder (a style
    sheet's url() is read relative to the working directory, not to the sheet) and ``@frame``
    the colour halfway between the window and its text (3:1 or more on either theme)."""
    style = resource_path("styles", "capsviewer.qss")
    if not style.is_file():
        return ""
    window, text = palette.window().color(), palette.windowText().color()
    frame = QColor(*((a + b) // 2 for a, b in zip(window.getRgb()[:3], text.getRgb()[:3])))
    return (style.read_text(encoding="utf-8").replace("@icons", resource_path("icons").as_posix())
            .replace("@frame", frame.name()))


def plot_colours(dark: bool) -> tuple[str, str]:
    return ("#16181b", "#d0d0d0") if dark else ("#ffffff", "#303030")


def restyle_plots(widget: QWidget, dark: bool, old_foreground: QColor | None = None) -> None:
    """Recolour an existing pyqtgraph view (pyqtgraph options only reach new ones): background,
    axes, titles, and every line or text drawn in the old foreground colour."""
    background, foreground = plot_colours(dark)
    if not isinstance(widget, pg.GraphicsView):
        return
    widget.setBackground(background)
    new = pg.mkColor(foreground)

    def was_foreground(colour) -> bool:
        return old_foreground is not None and pg.mkColor(colour).rgb() == old_foreground.rgb()

    for item in widget.scene().items():
        if isinstance(item, pg.AxisItem):
            item.setPen(foreground)
            item.setTextPen(foreground)
        elif isinstance(item, pg.LabelItem):
            item.setText(item.text, color=foreground)
        elif isinstance(item, pg.TextItem) and was_foreground(item.color):
            item.setColor(new)
        elif isinstance(item, pg.ScatterPlotItem):
            pen, brush = pg.mkPen(item.opts["pen"]), pg.mkBrush(item.opts["brush"])
            if was_foreground(pen.color()):
                pen.setColor(new)
                item.setPen(pen)
            if was_foreground(brush.color()):
                item.setBrush(pg.mkBrush(new))
        elif isinstance(item, (pg.InfiniteLine, pg.PlotCurveItem)):
            pen = pg.mkPen(item.pen if isinstance(item, pg.InfiniteLine) else item.opts["pen"])
            if was_foreground(pen.color()):
                pen.setColor(new)
                item.setPen(pen)

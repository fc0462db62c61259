"""File ▸ Export: each view as PNG (and SVG where pyqtgraph can) plus its numbers as CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSize
from PySide6.QtGui import QPainter
from PySide6.QtSvg import QSvgGenerator

from capsviewer.app.views.common import ExportableView


def write_svg(item: pg.GraphicsItem, path: str | Path) -> Path:
    """Render a scene item (PlotItem, layout…) as SVG with Qt's own generator: vector axes,
    curves and text. (pyqtgraph's SVGExporter cannot parse the paths Qt 6.12 writes.)
    Items are put in pyqtgraph's export mode, as its exporters do: scatter plots then draw
    each point as a vector shape, not as one embedded bitmap per point."""
    source = item.sceneBoundingRect()
    items = [i for i in item.scene().items() if hasattr(i, "setExportMode")]
    generator = QSvgGenerator()
    generator.setFileName(str(path))
    generator.setSize(QSize(int(source.width()), int(source.height())))
    generator.setViewBox(QRectF(0, 0, source.width(), source.height()))
    views = item.scene().views()
    if views:  # the screen's dots per inch, or text and axes land apart from the data
        generator.setResolution(views[0].logicalDpiX())
    generator.setTitle(Path(path).stem)
    painter = QPainter(generator)
    try:
        for each in items:
            each.setExportMode(True, {"antialias": True, "painter": painter})
        item.scene().render(painter, QRectF(0, 0, source.width(), source.height()), source)
    finally:
        painter.end()
        for each in items:
            each.setExportMode(False)
    return Path(path)


def _file_stem(view_name: str, part: str) -> str:
    """'training' + 'training_history' → 'training-history' (no doubled prefix, hyphens)."""
    part = part.replace("_", "-")
    if part.startswith(f"{view_name}-"):
        part = part[len(view_name) + 1:]
    return f"{view_name}-{part}"


def export_view(view: ExportableView, folder: str | Path, prefix: str | None = None) -> list[Path]:
    """Write ``{name}.png``, ``{name}-{scene}.svg`` and ``{name}-{table}.csv``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = prefix or view.export_name
    written = []
    png = folder / f"{name}.png"
    if not view.export_widget().grab().save(str(png), "PNG"):
        raise OSError(f"could not write {png}")
    written.append(png)
    for scene_name, item in view.export_scenes().items():
        svg = folder / f"{_file_stem(name, scene_name)}.svg"
        written.append(write_svg(item, svg))
    for table_name, (header, rows) in view.export_tables().items():
        path = folder / f"{_file_stem(name, table_name)}.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        written.append(path)
    return written

"""File ▸ Export: each view as PNG, its plots as SVG (where pyqtgraph can) and its numbers as CSV.

Only what must touch widgets runs on the UI thread, in short steps: a horizontal strip of
the view grabbed, a plot's drawing recorded into a QPicture (pyqtgraph's export mode: scatter
dots as vector circles, not one bitmap each), a view's tables read. Encoding the PNG, playing
the pictures into SVG and writing the CSV happen on the export lane (:func:`export_job`), which
reports progress and stops when asked. :func:`export_views` does the same in one go.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QRect, QRectF, QSize
from PySide6.QtGui import QImage, QPainter, QPicture
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import QStackedWidget

from capsviewer.app.compute import on_ui_thread
from capsviewer.app.views.common import ExportableView

STRIP_HEIGHT = 96  # pixels of a view grabbed in one UI-thread step (a few milliseconds)
CSV_CHUNK = 64  # rows written in one call (csv holds the GIL for a whole call)


@dataclass
class _File:
    """Files to write: UI-thread steps that read the screen, then a writer for any thread
    (``write(path, parts)`` returns the paths it wrote)."""

    path: Path
    steps: list[Callable[[], object]]
    write: Callable[[Path, list], list[Path]]


def _set_export_mode(item: pg.GraphicsItem, on: bool) -> None:
    """pyqtgraph's export mode on ``item`` and its children (scatter dots drawn as paths)."""
    if hasattr(item, "setExportMode"):
        item.setExportMode(on, {"antialias": True} if on else None)
    for child in item.childItems():
        _set_export_mode(child, on)


def record_scene(item: pg.GraphicsItem) -> tuple[QPicture, QRectF]:
    """UI thread: the drawing of a scene item (PlotItem, layout…), recorded in export mode."""
    source = item.sceneBoundingRect()
    picture = QPicture()
    painter = QPainter(picture)
    _set_export_mode(item, True)
    try:
        item.scene().render(painter, QRectF(0, 0, source.width(), source.height()), source)
    finally:
        _set_export_mode(item, False)
        painter.end()
    return picture, source


def _write_svg(path: Path, parts: list) -> list[Path]:
    """Any thread: Qt's own SVG generator replays the recorded drawing (vector axes, curves,
    text). pyqtgraph's SVGExporter cannot parse the paths Qt 6.12 writes."""
    picture, source = parts[0]
    generator = QSvgGenerator()
    generator.setFileName(str(path))
    generator.setSize(QSize(int(source.width()), int(source.height())))
    generator.setViewBox(QRectF(0, 0, source.width(), source.height()))
    # The picture's dots per inch (the screen's), or text and axes land apart from the data.
    generator.setResolution(picture.logicalDpiX())
    generator.setTitle(path.stem)
    painter = QPainter(generator)
    try:
        picture.play(painter)
    finally:
        painter.end()
    return [path]


def write_svg(item: pg.GraphicsItem, path: str | Path) -> Path:
    """Write a scene item as SVG now (UI thread)."""
    _write_svg(Path(path), [record_scene(item)])
    return Path(path)


def _grab_strip(widget, top: int, height: int) -> QImage:
    return widget.grab(QRect(0, top, widget.width(), height)).toImage()


def _hidden_page(widget) -> tuple[QStackedWidget, object] | None:
    """(stack, page shown now) when ``widget`` is a page not shown of a stack that is."""
    stack = widget.parentWidget()
    if isinstance(stack, QStackedWidget) and stack.isVisible() and stack.currentWidget() is not widget:
        return stack, stack.currentWidget()
    return None


def _write_png(path: Path, strips: list) -> list[Path]:
    strips = [strip for strip in strips if isinstance(strip, QImage)]  # not the page switches
    width = max(strip.width() for strip in strips)
    height = sum(strip.height() for strip in strips)
    image = QImage(width, height, QImage.Format.Format_ARGB32_Premultiplied)
    image.setDevicePixelRatio(strips[0].devicePixelRatio())
    image.fill(0)
    painter = QPainter(image)
    top = 0
    for strip in strips:
        painter.drawImage(QPoint(0, round(top / strip.devicePixelRatio())), strip)
        top += strip.height()
    painter.end()
    if not image.save(str(path), "PNG"):
        raise OSError(f"could not write {path}")
    return [path]


def _write_tables(stem: Path, parts: list) -> list[Path]:
    """Each table of a view as ``{stem}-{table}.csv``."""
    written = []
    for table_name, (header, rows) in parts[0].items():
        path = stem.parent / f"{_file_stem(stem.name, table_name)}.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for start in range(0, len(rows), CSV_CHUNK):  # lets the UI thread take the GIL
                writer.writerows(rows[start:start + CSV_CHUNK])
        written.append(path)
    return written


def _file_stem(view_name: str, part: str) -> str:
    """'training' + 'training_history' → 'training-history' (no doubled prefix, hyphens)."""
    part = part.replace("_", "-")
    if part.startswith(f"{view_name}-"):
        part = part[len(view_name) + 1:]
    return f"{view_name}-{part}"


def _files(view: ExportableView, folder: Path) -> list[_File]:
    """UI thread: what exporting ``view`` writes, as steps (reads nothing heavy yet)."""
    name = view.export_name
    widget = view.export_widget()
    height = max(widget.height(), 1)
    strips = [lambda top=top: _grab_strip(widget, top, min(STRIP_HEIGHT, height - top))
              for top in range(0, height, STRIP_HEIGHT)]
    page = _hidden_page(widget)
    if page is not None:  # a panel behind another of a shown view: shown while it is grabbed
        stack, shown = page
        strips = [lambda: stack.setCurrentWidget(widget), *strips,
                  lambda: stack.setCurrentWidget(shown)]
    elif not widget.isVisible():
        # A hidden tab is laid out again on every grab (and with it the window): at once.
        strips = [lambda: _grab_strip(widget, 0, height)]
    files = [_File(folder / f"{name}.png", strips, _write_png)]
    for scene_name, item in view.export_scenes().items():
        files.append(_File(folder / f"{_file_stem(name, scene_name)}.svg",
                           [lambda item=item: record_scene(item)], _write_svg))
    files.append(_File(folder / name, [view.export_tables], _write_tables))
    return files


def _with_panels(views) -> list[ExportableView]:
    """Each view and the panels exported with it (the routing view's)."""
    return [part for view in views for part in [view, *getattr(view, "export_panels", list)()]]


def export_views(views, folder: str | Path, panels: bool = True) -> list[Path]:
    """Write ``views`` (with the panels exported with them) to ``folder`` now, on this (the
    UI) thread; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [path for view in (_with_panels(views) if panels else views)
            for file in _files(view, folder)
            for path in file.write(file.path, [step() for step in file.steps])]


def export_view(view: ExportableView, folder: str | Path) -> list[Path]:
    """One view, without its panels: ``{name}.png``, ``{name}-{scene}.svg``, CSVs."""
    return export_views([view], folder, panels=False)


def export_job(views, folder: Path, should_stop: Callable[[], bool], progress) -> list[Path]:
    """On the export lane: the same files, the UI thread lent one short step at a time.
    ``progress(done, total)`` counts steps; JobCancelled once ``should_stop()``."""
    folder.mkdir(parents=True, exist_ok=True)
    plans = on_ui_thread(lambda: [(view, _files(view, folder)) for view in _with_panels(views)],
                         should_stop=should_stop)
    total = sum(len(file.steps) + 1 for _, files in plans for file in files)
    done, written = 0, []
    for _, files in plans:
        for file in files:
            parts = []
            for step in file.steps:
                parts.append(on_ui_thread(step, should_stop=should_stop))
                done += 1
                progress(done, total)
            written += file.write(file.path, parts)
            done += 1
            progress(done, total)
    return written


# -- the routing animation -------------------------------------------------------------------

FRAME_MS = 900  # how long each routing iteration stays on screen in the GIF


def _grab_rgb(widget, top: int, height: int) -> np.ndarray | None:
    """UI thread: a strip of ``widget`` as RGB pixels (height, width, 3) uint8, copied; None
    below the widget's bottom (it can shrink while the status bar shows the progress)."""
    height = min(height, widget.height() - top)
    if height <= 0:
        return None
    image = _grab_strip(widget, top, height).convertToFormat(QImage.Format.Format_RGB888)
    stride, width = image.bytesPerLine(), image.width()
    rows = np.frombuffer(image.constBits(), np.uint8, count=stride * image.height())
    return rows.reshape(image.height(), stride)[:, :3 * width].reshape(-1, width, 3).copy()


def write_gif(path: Path, frames: list[np.ndarray], frame_ms: int = FRAME_MS,
              width: int | None = None) -> Path:
    """Any thread: RGB frames (H, W, 3) as a looping GIF with one shared palette, scaled down
    to ``width`` pixels when wider."""
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    size = images[0].size  # a frame laid out a pixel taller is fitted to the first
    images = [image if image.size == size else image.resize(size) for image in images]
    if width is not None and images[0].width > width:
        height = round(images[0].height * width / images[0].width)
        images = [image.resize((width, height), Image.Resampling.LANCZOS) for image in images]
    palette = images[-1].quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    indexed = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
    indexed[0].save(path, save_all=True, append_images=indexed[1:], duration=frame_ms, loop=0,
                    optimize=True, disposal=1)
    return path


def animation_job(view, path: Path, should_stop: Callable[[], bool], progress,
                  width: int | None = None) -> list[Path]:
    """On the export lane: every routing iteration of ``view`` (a RoutingView) shown and
    grabbed on the UI thread, a strip at a time, then encoded here as an animated GIF; the
    iteration on screen comes back afterwards."""
    count, shown = on_ui_thread(lambda: (view.iteration_count, view.iteration),
                                should_stop=should_stop)
    widget = view.animation_widget()
    frames = []
    try:
        for r in range(1, count + 1):
            height, shown_now = on_ui_thread(
                lambda r=r: (view.set_iteration(r), widget.height(), widget.isVisible())[1:],
                should_stop=should_stop)
            step = STRIP_HEIGHT if shown_now else height  # a hidden tab: grabbed at once
            strips = [on_ui_thread(_grab_rgb, widget, top, min(step, height - top),
                                   should_stop=should_stop) for top in range(0, height, step)]
            frames.append(np.concatenate([strip for strip in strips if strip is not None]))
            progress(r, count + 1)
    finally:
        on_ui_thread(view.set_iteration, shown, should_stop=lambda: False)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_gif(Path(path), frames, width=width)
    progress(count + 1, count + 1)
    return [Path(path)]

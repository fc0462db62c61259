"""The robustness report's figure: accuracy against rotation angle, against shift, and the
random-affine set beside the clean one, for every model (matplotlib, Agg, no GUI)."""

from __future__ import annotations

import io

from capsviewer.analysis.robustness import RobustnessReport
from capsviewer.models import display_name

# Colour-blind-safe pair (Okabe–Ito), the CapsNet first when present.
_COLOURS = {"capsnet": "#0072B2", "cnn": "#D55E00"}
_OTHER_COLOURS = ["#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
_MARKERS = {"capsnet": "o", "cnn": "s"}


def figure_png(report: RobustnessReport, width_px: int = 900, height_px: int = 300,
               dpi: int = 100) -> bytes:
    """The three-panel figure as PNG bytes (``width_px`` × ``height_px``)."""
    # The Figure/Agg canvas pair needs no pyplot and sets no global backend, so it is safe
    # inside a process that also runs a Qt GUI.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    rotation_axes, shift_axes, affine_axes = figure.subplots(
        1, 3, gridspec_kw={"width_ratios": [1.35, 1.0, 0.8]})
    others = iter(_OTHER_COLOURS)
    colours = {m.name: _COLOURS.get(m.name) or next(others, "#777777") for m in report.models}
    labels = {m.name: display_name(m.name) for m in report.models}

    for axes, kind, unit, title in (
        (rotation_axes, "rotation", "°", "Rotation (counter-clockwise)"),
        (shift_axes, "shift", " px", "Shift within 28×28"),
    ):
        values, series = report.series(kind)
        for name, accuracy in series.items():
            axes.plot(values, [100 * a for a in accuracy], marker=_MARKERS.get(name, "^"),
                      markersize=3.5, linewidth=1.4, color=colours[name], label=labels[name])
        axes.set_title(title, fontsize=9)
        axes.set_xlabel(f"{'angle' if kind == 'rotation' else 'shift'} ({unit.strip()})",
                        fontsize=8)
        if values:
            step = 30 if kind == "rotation" and max(values) > 90 else None
            if step:
                axes.set_xticks(range(0, int(max(values)) + 1, step))
            else:
                axes.set_xticks(values)
    rotation_axes.set_ylabel("test accuracy (%)", fontsize=8)
    rotation_axes.legend(fontsize=7, title=f"{report.images:,} test images", title_fontsize=7,
                         frameon=False, loc="upper right")

    clean = report.condition("clean")
    conditions = [("clean", clean)]
    try:
        conditions.append(("random\naffine", report.condition("affine")))
    except KeyError:
        pass
    names = report.model_names
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(conditions))]
        heights = [100 * c.accuracy[name] for _, c in conditions]
        bars = affine_axes.bar(xs, heights, width * 0.92, color=colours[name], label=labels[name])
        affine_axes.bar_label(bars, fmt="%.1f", fontsize=6.5, padding=1.5)
    affine_axes.set_xticks(range(len(conditions)), [label for label, _ in conditions])
    affine_axes.set_title("Random affine vs clean", fontsize=9)

    for axes in (rotation_axes, shift_axes, affine_axes):
        axes.set_ylim(0, 105)
        axes.grid(True, axis="y", linewidth=0.4, alpha=0.5)
        axes.tick_params(labelsize=7)
        axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout(pad=0.4, w_pad=1.0)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()

"""The robustness report in words: Markdown tables, findings worded from the numbers, the
caveats of these measurements, and the whole report as one Markdown document. The numbers come
from :mod:`capsviewer.analysis.robustness`; the figure is :mod:`capsviewer.report.figure`."""

from __future__ import annotations

import math

from capsviewer.analysis.robustness import Condition, ModelInfo, RobustnessReport
from capsviewer.data.augmentation import EFFICIENT_CAPSNET
from capsviewer.models import display_name


def _percent(value: float) -> str:
    return f"{100 * value:.2f}"


def markdown_tables(report: RobustnessReport) -> str:
    """The three tables (rotation, shift, affine), accuracy in % on ``report.images`` images."""
    names = report.model_names
    shown = {m.name: display_name(m.name) for m in report.models}
    lines: list[str] = []

    def table(title: str, kind: str, unit: str) -> None:
        values, series = report.series(kind)
        if not values:
            return
        lines.append(f"**{title}**\n")
        lines.append("| model | " + " | ".join(f"{v:g}{unit}" for v in values) + " |")
        lines.append("|---|" + "---:|" * len(values))
        for name in names:
            cells = " | ".join(_percent(a) for a in series[name])
            lines.append(f"| {shown[name]} | {cells} |")
        lines.append("")

    table("Accuracy (%) against rotation angle (counter-clockwise)", "rotation", "°")
    table("Accuracy (%) against shift (exactly k px up, down, left or right)", "shift", " px")
    clean = report.condition("clean")
    try:
        affine = report.condition("affine")
    except KeyError:
        affine = None
    if affine is not None:
        lines.append(f"**Accuracy (%) under random affine transforms "
                     f"({report.affine.describe()})**\n")
        lines.append("| model | clean | random affine | change (points) |")
        lines.append("|---|---:|---:|---:|")
        for name in names:
            change = 100 * (affine.accuracy[name] - clean.accuracy[name])
            lines.append(f"| {shown[name]} | {_percent(clean.accuracy[name])} | "
                         f"{_percent(affine.accuracy[name])} | {change:+.2f} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _noise_points(p: float, q: float, count: int) -> float:
    """Two standard errors of the difference of two accuracies on ``count`` images, in
    points (treating them as independent: conservative, since the images are shared)."""
    if count == 0:
        return float("nan")
    return 200 * math.sqrt((p * (1 - p) + q * (1 - q)) / count)


def findings(report: RobustnessReport) -> list[str]:
    """Sentences worded from the measured numbers, whichever model they favour."""
    shown = {m.name: display_name(m.name) for m in report.models}
    names = report.model_names
    sentences = []

    def compare(condition: Condition) -> str:
        if len(names) < 2:
            return ""
        ranked = sorted(names, key=lambda n: condition.accuracy[n], reverse=True)
        best, second = ranked[0], ranked[1]
        gap = 100 * (condition.accuracy[best] - condition.accuracy[second])
        noise = _noise_points(condition.accuracy[best], condition.accuracy[second], condition.count)
        if gap == 0:
            return "; the models tie"
        verdict = (f"within sampling noise (two standard errors: {noise:.1f} points at "
                   f"{condition.count:,} images)"
                   if gap < noise else "more than sampling noise")
        return f"; {shown[best]} is higher by {gap:.2f} points, {verdict}"

    def listing(condition: Condition) -> str:
        return ", ".join(f"{shown[n]} {_percent(condition.accuracy[n])} %" for n in names)

    clean = report.condition("clean")
    sentences.append(f"Clean: {listing(clean)}{compare(clean)}.")
    try:
        affine = report.condition("affine")
        drops = ", ".join(
            f"{shown[n]} {100 * (clean.accuracy[n] - affine.accuracy[n]):.2f}" for n in names)
        sentences.append(f"Random affine: {listing(affine)} (drops from clean, in points: "
                         f"{drops}){compare(affine)}.")
    except KeyError:
        pass
    angles, series = report.series("rotation")
    if angles:
        parts = []
        for n in names:
            below = next((a for a, acc in zip(angles, series[n]) if acc < 0.5), None)
            parts.append(f"{shown[n]} at {below:g}°" if below is not None
                         else f"{shown[n]} never (up to {angles[-1]:g}°)")
        sentences.append("Rotation: accuracy first falls below 50 % for " + ", ".join(parts)
                         + f"; at {angles[-1]:g}°: "
                         + listing(report.condition("rotation", angles[-1])) + ".")
    shifts, _ = report.series("shift")
    if shifts:
        largest = report.condition("shift", shifts[-1])
        sentences.append(f"Shift by {shifts[-1]:g} px: {listing(largest)}{compare(largest)}.")
    return sentences


def training_sentence(report: RobustnessReport, trained: str) -> str:
    """What the models saw in training, besides the clean digits."""
    shifted = "without rotation, shear or scaling, so everything beyond that is outside what " \
              "they saw in training."
    recipe = [display_name(m.name) for m in report.models
              if m.training_augmentation == EFFICIENT_CAPSNET]
    if not recipe:
        return f"The models were trained {trained} and {shifted}"
    saw = ("Efficient-CapsNet's augmentation (rotations of up to ±30° on half the images, "
           "shifts within each digit's margins, horizontal squeezes of 1–7 px, a 4×4 patch "
           "erased), so rotations of up to 30° are within what it saw")
    if len(recipe) == len(report.models):
        return f"The models were trained with {saw.replace(' it ', ' they ')}."
    return (f"{', '.join(recipe)} {'was' if len(recipe) == 1 else 'were'} trained with "
            f"{saw if len(recipe) == 1 else saw.replace(' it ', ' they ')}; the others were "
            f"trained {trained} and {shifted}")


def caveats(report: RobustnessReport) -> list[str]:
    shifts = {m.training_shift_px for m in report.models
              if m.training_augmentation != EFFICIENT_CAPSNET}
    if len(shifts) == 1 and None not in shifts:
        trained = f"with random shifts of up to {shifts.pop()} px"
    else:
        trained = "with the random shifts listed above (where known)"
    return [
        "Both models take 28×28 inputs only (the CapsNet's 32×6×6 primary grid and its W_ij are "
        "tied to those 6×6 positions; the CNN ends in a fixed fully connected layer), so the "
        "digits cannot be placed on a 40×40 canvas as in the paper's affNIST experiment: shifts "
        "stay within the 28×28 frame, up to 6 px, and ink pushed past the border is lost (MNIST "
        "digits fit a 20×20 box centred by mass, so shifts beyond about 4 px start to crop "
        "strokes).",
        training_sentence(report, trained),
        "Published results disagree about capsules' affine robustness. Sabour, Frosst & Hinton "
        "(2017) report 79 % on affNIST for their CapsNet against 66 % for a CNN with a similar "
        "number of parameters, both trained on translated MNIST; Gu & Tresp (CVPR 2020) find "
        "that dynamic routing contributes neither to generalisation nor to affine robustness, "
        "and re-implementations do not reliably reproduce the paper's gap. This report is one "
        "measurement of these two models under these conditions, not a verdict on capsules.",
        "Every model sees the same perturbed images (a paired comparison), and each condition "
        "draws its own random numbers from the report seed, so the same command gives the same "
        "numbers.",
    ]


def _model_row(m: ModelInfo) -> str:
    def cell(value, text: str) -> str:
        return "—" if value is None else text

    stated = cell(m.stated_test_accuracy, f"{100 * (m.stated_test_accuracy or 0):.2f} %"
                  + ("" if m.stated_on_full_test_set else " (on a test subset)"))
    return (f"| {display_name(m.name)} | {m.architecture} | {cell(m.checkpoint, f'`{m.checkpoint}`')} "
            f"| {cell(m.epoch, str(m.epoch))} | {cell(m.parameters, f'{m.parameters or 0:,}')} "
            f"| {cell(m.training_shift_px, f'±{m.training_shift_px} px')} | {stated} |")


def to_markdown(report: RobustnessReport, figure: str | None = None) -> str:
    """The whole report: how it was made, the models, the conditions, the tables, the
    findings and the caveats. ``figure`` is a relative path to the PNG to embed."""
    lines = ["# Robustness report", ""]
    if report.command:
        lines += ["Generated by", "", f"    {report.command}", ""]
    lines.append(
        f"on {report.created[:10] or 'an unknown date'} ({report.created or '?'}), device "
        f"{report.device}, in {report.seconds:.0f} s: {report.images:,} {report.dataset} test "
        f"images, seed {report.seed}.")
    lines += ["", "| model | architecture | checkpoint | epochs | parameters | trained with shifts "
              "| stated test accuracy |", "|---|---|---|---:|---:|---:|---:|"]
    lines += [_model_row(m) for m in report.models]
    lines += [
        "",
        "## Conditions",
        "",
        "- **Rotation**: every image turned counter-clockwise by the angle about its centre "
        "(bilinear, zero fill).",
        f"- **Random affine**: one transform per image, uniform in {report.affine.describe()}; "
        "x' = s·H(φ)·R(θ)·x + t about the centre, with horizontal shear H(φ) = [[1, tan φ], "
        "[0, 1]] (bilinear, zero fill).",
        "- **Shift**: every image moved by exactly k px up, down, left or right (one direction "
        "drawn per image; whole pixels, no interpolation, zero fill).",
        "",
        "Rotation by 0° and a shift of 0 px leave the images untouched, so they repeat the clean "
        "accuracy exactly.",
        "",
        "## Results",
        "",
        markdown_tables(report).rstrip(),
        "",
    ]
    if figure:
        lines += [f"![Accuracy against rotation angle, shift and random affine transforms]"
                  f"({figure})", ""]
    lines += ["## What the numbers say", ""]
    lines += [f"- {s}" for s in findings(report)]
    lines += ["", "## Caveats", ""]
    lines += [f"- {c}" for c in caveats(report)]
    return "\n".join(lines).rstrip() + "\n"

"""``capsviewer report``: the robustness report of the CapsNet and the CNN on the test set,
written as Markdown, PNG and JSON, and optionally into README between two markers."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from capsviewer.command_errors import run_reporting_errors

README_START = "<!-- robustness:start -->"
README_END = "<!-- robustness:end -->"
FILES = ("robustness.md", "robustness.png", "robustness.json")


def add_report_parser(sub) -> argparse.ArgumentParser:
    """Add the ``report`` sub-command to ``sub`` (argparse sub-parsers)."""
    from capsviewer.data import DATASETS

    report = sub.add_parser(
        "report",
        help="robustness report: accuracy under rotation, random affine transforms and shifts",
        description="Evaluate the models on the test set rotated by 0–180° (15° steps), under "
        "one random affine transform per image and shifted by 0–6 px; write robustness.md, "
        ".png and .json into --out.",
    )
    report.add_argument("--model", metavar="PATH", type=Path, action="append",
                        help="checkpoint to evaluate (repeat for several). Default: the newest "
                        "CapsNet and CNN found where the app looks ($CAPSVIEWER_MODELS, the "
                        "shipped models, the user's checkpoints, ./checkpoints)")
    report.add_argument("--dataset", choices=sorted(DATASETS), default="mnist",
                        help="test set (default: mnist); models trained on another are refused")
    report.add_argument("--data-root", metavar="PATH",
                        help="dataset folder (default: $CAPSVIEWER_DATA, else the user data "
                        "directory)")
    report.add_argument("--subset", type=_positive, metavar="N",
                        help="use N random test images (default: all)")
    report.add_argument("--seed", type=int, default=0,
                        help="picks the subset and draws the random transforms (default: 0)")
    report.add_argument("--batch-size", type=_positive, default=500,
                        help="images per forward pass (default: 500)")
    report.add_argument("--device", default="auto",
                        help="auto (the default: CUDA when present, else CPU), cpu, cuda, cuda:N")
    report.add_argument("--out", metavar="DIR", type=Path, default=Path("docs"),
                        help="folder for robustness.md, .png and .json (default: docs)")
    report.add_argument("--readme", metavar="PATH", type=Path,
                        help=f"also replace the text between {README_START} and {README_END} "
                        "in this file with the tables")
    report.add_argument("--no-progress", action="store_true", help="no progress bar")
    return report


def run_report(args) -> int:
    """Run the report for parsed ``args``; 0 on success, 2 with a message on a usage error."""
    return run_reporting_errors("report", lambda: _run(args), (ReportError,),
                                "interrupted; nothing was written")


class ReportError(RuntimeError):
    """A report that cannot run as asked; the message says why."""


def _run(args) -> int:
    from tqdm import tqdm

    from capsviewer.analysis.report_figure import figure_png
    from capsviewer.analysis.robustness import (
        ModelInfo,
        markdown_tables,
        robustness_report,
        to_json,
        to_markdown,
    )
    from capsviewer.data import load_dataset
    from capsviewer.training import describe_device, load_checkpoint, select_device
    from capsviewer.training.checkpoints import epochs_trained
    from capsviewer.training.model_files import find_models, model_dirs

    if args.readme is not None:
        if not args.readme.is_file():
            raise ReportError(f"--readme {args.readme}: no such file")
        if replace_between_markers(args.readme.read_text(encoding="utf-8"), "") is None:
            print(f"note: {args.readme} has no {README_START} … {README_END} markers; the "
                  "report will be written but README left unchanged", file=sys.stderr)
    found = find_models(args.dataset)
    paths = list(args.model or [found[k] for k in ("capsnet", "cnn") if k in found])
    if not paths:
        searched = ", ".join(str(d) for d in model_dirs())
        raise ReportError(
            f"no {args.dataset} models found (searched {searched}); pass --model PATH, or train "
            "one with `capsviewer train` (and `capsviewer train --model cnn`)")
    device = select_device(args.device)
    models, info = {}, {}
    for path in paths:
        checkpoint = load_checkpoint(path, device)
        meta = checkpoint.metadata
        trained_on = meta.get("dataset", {}).get("name", args.dataset)
        if trained_on != args.dataset:
            raise ReportError(f"{path} was trained on {trained_on}, not {args.dataset} "
                              "(choose the test set with --dataset)")
        name = meta["architecture"]
        if name in models:
            name = f"{name}-{len(models) + 1}"
        models[name] = checkpoint.model
        info[name] = ModelInfo(
            name=name,
            architecture=meta["architecture"],
            checkpoint=str(path),
            stated_test_accuracy=meta.get("metrics", {}).get("test_accuracy"),
            stated_on_full_test_set=meta.get("dataset", {}).get("test_images") == "all",
            epoch=epochs_trained(meta),
            parameters=sum(p.numel() for p in checkpoint.model.parameters()),
            training_shift_px=meta.get("train_config", {}).get("max_shift"),
        )
    test = load_dataset(args.dataset, train=False, root=args.data_root).subset(args.subset,
                                                                               seed=args.seed)
    print(f"robustness report on {len(test):,} {args.dataset} test images, "
          f"{describe_device(device)}:", flush=True)
    for name, model_info in info.items():
        stated = model_info.stated_test_accuracy
        print(f"  {name:<8} {model_info.checkpoint}"
              + ("" if stated is None else f" (stated test accuracy {stated:.2%})"), flush=True)

    bar = None

    def progress(done: int, total: int, label: str) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            bar = tqdm(total=total, unit="img", dynamic_ncols=True)
        bar.set_description(label, refresh=False)
        bar.update(done - bar.n)

    try:
        report = robustness_report(
            models, test.images, test.labels, seed=args.seed, batch_size=args.batch_size,
            progress=progress, model_info=info, dataset=args.dataset,
            device=describe_device(device), command=command_line(args))
    finally:
        if bar is not None:
            bar.close()

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    markdown_path, figure_path, json_path = (out / name for name in FILES)
    write_file(figure_path, figure_png(report))
    write_file(markdown_path, to_markdown(report, figure=FILES[1]).encode())
    write_file(json_path, to_json(report).encode())
    print()
    print(markdown_tables(report))
    print(f"{report.seconds:.1f} s; wrote {markdown_path}, {figure_path}, {json_path}")
    if args.readme is not None:
        section = readme_section(report, args.readme, markdown_path, figure_path)
        if update_readme(args.readme, section):
            print(f"updated the robustness table in {args.readme}")
        else:
            print(f"{args.readme} has no {README_START} … {README_END} markers (in that order); "
                  "left it unchanged. Add them where the table should go.", file=sys.stderr)
    return 0


def command_line(args) -> str:
    """The command that reproduces this report (the options that were given)."""
    parts = ["capsviewer", "report"]
    for path in args.model or []:
        parts += ["--model", str(path)]
    if args.dataset != "mnist":
        parts += ["--dataset", args.dataset]
    if args.data_root:
        parts += ["--data-root", str(args.data_root)]
    if args.subset:
        parts += ["--subset", str(args.subset)]
    if args.seed != 0:
        parts += ["--seed", str(args.seed)]
    if args.batch_size != 500:
        parts += ["--batch-size", str(args.batch_size)]
    if args.device != "auto":
        parts += ["--device", args.device]
    if args.out != Path("docs"):
        parts += ["--out", str(args.out)]
    if args.readme is not None:
        parts += ["--readme", str(args.readme)]
    return shlex.join(parts)


def readme_section(report, readme: Path, markdown_path: Path, figure_path: Path) -> str:
    """What goes between the README markers: a line on how it was made, the tables, the figure,
    with links relative to the README."""
    from capsviewer.analysis.robustness import markdown_tables

    def link(path: Path) -> str:
        return Path(os.path.relpath(path.resolve(), readme.resolve().parent)).as_posix()

    names = ", ".join(
        f"{m.name} ({100 * m.stated_test_accuracy:.2f} % stated)" if m.stated_test_accuracy
        is not None else m.name for m in report.models)
    return (
        f"Measured by `{report.command}` on {report.images:,} {report.dataset} test images "
        f"({report.created[:10]}, {report.device}, {report.seconds:.0f} s; models: {names}). "
        f"Details, conditions and caveats: [{markdown_path.name}]({link(markdown_path)}).\n\n"
        + markdown_tables(report)
        + "\n![Accuracy against rotation, shift and random affine transforms]"
        + f"({link(figure_path)})\n"
    )


def replace_between_markers(text: str, content: str,
                            start: str = README_START, end: str = README_END) -> str | None:
    """``text`` with everything between the markers replaced by ``content`` (markers kept);
    None when either marker is missing or they are out of order."""
    first = text.find(start)
    last = text.find(end, first + len(start)) if first >= 0 else -1
    if first < 0 or last < 0:
        return None
    return text[:first + len(start)] + "\n" + content.strip("\n") + "\n" + text[last:]


def update_readme(path: Path, content: str) -> bool:
    """Replace the marked section of ``path``; False (file untouched) without the markers."""
    text = Path(path).read_text(encoding="utf-8")
    updated = replace_between_markers(text, content)
    if updated is None:
        return False
    if updated != text:
        write_file(path, updated.encode("utf-8"))
    return True


def write_file(path: Path, data: bytes) -> Path:
    """Write atomically (temp file, fsync, rename) and keep the file's permissions, or give a
    new file the usual ones (the temp file is private)."""
    from capsviewer.training.checkpoints import atomic_write_bytes

    path = Path(path)
    if path.exists():
        mode = path.stat().st_mode & 0o7777
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    atomic_write_bytes(path, data)
    os.chmod(path, mode)
    return path


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value

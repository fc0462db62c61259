"""``capsviewer report``: the robustness report of the CapsNet and the CNN on the test set,
written as Markdown, PNG and JSON into the folder the user names (``--out``)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from capsviewer.cli.common import (
    CommandError,
    add_data_root,
    add_dataset,
    add_device,
    add_progress_switch,
    batch_size,
    find_models_noting_skipped,
    non_negative_int,
    positive_int,
    sub_command,
    write_file,
)

FILES = ("robustness.md", "robustness.png", "robustness.json")
DEFAULT_OUT = Path("capsviewer-report")
DEFAULT_BATCH_SIZE = 500


# In `capsviewer --help`:
HELP = "robustness report: accuracy under rotation, random affine transforms and shifts"


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub_command(
        sub, "report", run,
        HELP,
        "Evaluate the models on the test set rotated by 0–180° (15° steps), under one random "
        "affine transform per image and shifted by 0–6 px; print the tables and write "
        "robustness.md, .png and .json into --out.",
        interrupted="interrupted; nothing was written")
    add_options(parser)
    parser.add_argument("--out", metavar="DIR", type=Path, default=DEFAULT_OUT,
                        help="folder for robustness.md, .png and .json")
    return parser


def add_options(parser: argparse.ArgumentParser) -> None:
    """What is measured, and how: the options every way of making the report shares."""
    parser.add_argument("--model", metavar="PATH", type=Path, action="append",
                        help="checkpoint to evaluate (repeat for several). Default: the newest "
                        "CapsNet and CNN found where the app looks ($CAPSVIEWER_MODELS, the "
                        "shipped models, the user's checkpoints, ./checkpoints)")
    add_dataset(parser, "test set; models trained on another are refused", default="mnist")
    add_data_root(parser)
    parser.add_argument("--subset", type=positive_int, metavar="N",
                        help="use N random test images (default: all)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="picks the subset and draws the random transforms")
    parser.add_argument("--batch-size", type=batch_size, default=DEFAULT_BATCH_SIZE,
                        help="images per forward pass")
    add_device(parser)
    add_progress_switch(parser)


def run(args) -> int:
    from capsviewer.report.text import markdown_tables

    report = measure(args, command_line(args))
    paths = write(report, args.out)
    print()
    print(markdown_tables(report))
    print(f"{report.seconds:.1f} s; wrote {', '.join(map(str, paths))}")
    return 0


def measure(args, command: str):
    """The RobustnessReport of the models ``args`` name (or the app's), with a progress bar;
    ``command`` is recorded as the way to reproduce it."""
    from tqdm import tqdm

    from capsviewer.analysis.robustness import ModelInfo, robustness_report, trained_augmentation
    from capsviewer.data import load_dataset
    from capsviewer.training import describe_device, load_checkpoint, select_device
    from capsviewer.training.checkpoints import epochs_trained
    from capsviewer.training.model_files import model_dirs

    found = find_models_noting_skipped(args.dataset)
    paths = list(args.model or [found[k] for k in ("capsnet", "cnn") if k in found])
    if not paths:
        searched = ", ".join(str(d) for d in model_dirs())
        raise CommandError(
            f"no {args.dataset} models found (searched {searched}); pass --model PATH, or train "
            "one with `capsviewer train` (and `capsviewer train --model cnn`)")
    device = select_device(args.device)
    models, info = {}, {}
    for path in paths:
        checkpoint = load_checkpoint(path, device)
        meta = checkpoint.metadata
        trained_on = meta.get("dataset", {}).get("name", args.dataset)
        if trained_on != args.dataset:
            raise CommandError(f"{path} was trained on {trained_on}, not {args.dataset} "
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
            **trained_augmentation(meta.get("train_config")),
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
        return robustness_report(
            models, test.images, test.labels, seed=args.seed, batch_size=args.batch_size,
            progress=progress, model_info=info, dataset=args.dataset,
            device=describe_device(device), command=command)
    finally:
        if bar is not None:
            bar.close()


def write(report, out: Path) -> tuple[Path, Path, Path]:
    """robustness.md, .png and .json in folder ``out``; their paths."""
    from capsviewer.analysis.robustness import to_json
    from capsviewer.report.figure import figure_png
    from capsviewer.report.text import to_markdown

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    markdown_path, figure_path, json_path = (out / name for name in FILES)
    write_file(figure_path, figure_png(report))
    write_file(markdown_path, to_markdown(report, figure=FILES[1]).encode())
    write_file(json_path, to_json(report).encode())
    return markdown_path, figure_path, json_path


def command_line(args, prog: str = "capsviewer report", default_out: Path = DEFAULT_OUT) -> str:
    """The command that reproduces this report (the options that were given)."""
    parts = shlex.split(prog)
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
    if args.batch_size != DEFAULT_BATCH_SIZE:
        parts += ["--batch-size", str(args.batch_size)]
    if args.device != "auto":
        parts += ["--device", args.device]
    if Path(args.out) != default_out:
        parts += ["--out", str(args.out)]
    return shlex.join(parts)

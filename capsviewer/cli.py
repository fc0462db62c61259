"""Command line: ``capsviewer`` (the app), ``capsviewer train``, ``eval``, ``info``, ``export``,
``report``, ``ablation`` and ``average``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import capsviewer
from capsviewer.ablation_cli import add_ablation_parser, run_ablation
from capsviewer.average_cli import add_average_parser, run_average
from capsviewer.data import DATASETS, ENV_VAR, DatasetUnavailable
from capsviewer.eval_cli import add_eval_parser, run_eval
from capsviewer.models import MODELS
from capsviewer.report_cli import add_report_parser, run_report

DEFAULT_OUTPUT = "checkpoints/{model}-{dataset}.safetensors"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="capsviewer",
        description="Explore Capsule Networks. Without a sub-command, opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"capsviewer {capsviewer.__version__}")
    window = parser.add_argument_group("desktop app (no sub-command)")
    window.add_argument("--model", metavar="PATH", type=Path, action="append",
                        help="checkpoint to open (CapsNet or CNN; repeat for both). Default: the "
                        "shipped models, else the newest in the user's checkpoint folder")
    window.add_argument("--data-root", metavar="PATH", dest="app_data_root",
                        help=f"where MNIST is (default: ${ENV_VAR}, else the user data directory)")
    window.add_argument("--device", dest="app_device", default="auto", metavar="DEVICE",
                        help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N")
    window.add_argument("--theme", choices=["system", "light", "dark"],
                        help="colour theme (default: the last one chosen, else the system's)")
    sub = parser.add_subparsers(dest="command", metavar="{train,eval,info,export,report,ablation,average}")

    data_root = dict(
        metavar="PATH",
        help=f"dataset folder in torchvision's layout (default: ${ENV_VAR}, else the user data "
        "directory, where missing datasets are downloaded)",
    )
    device = dict(default="auto", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N")

    train = sub.add_parser("train", help="train a model and save checkpoints every epoch", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--model", choices=sorted(MODELS), default="capsnet", help="architecture")
    train.add_argument("--dataset", choices=sorted(DATASETS), default="mnist", help="dataset")
    train.add_argument("--epochs", type=_positive, default=10, help="passes over the data")
    train.add_argument("--batch-size", type=_positive, default=128,
                       help="images per step (shared among the processes under torchrun)")
    train.add_argument("--lr", type=float, default=1e-3, help="initial Adam learning rate")
    train.add_argument("--lr-decay", type=float, default=0.96, metavar="RATE",
                       help="the learning rate is multiplied by RATE every --decay-steps steps "
                       "(smoothly, per step)")
    train.add_argument("--decay-steps", type=_positive, default=2000, metavar="N",
                       help="steps per --lr-decay factor (469 is one MNIST epoch at batch 128)")
    train.add_argument("--init-from", metavar="PATH",
                       help="start from this checkpoint's weights (same architecture and config), "
                       "with a fresh optimizer and schedule: fine-tuning")
    train.add_argument("--subset", type=_positive, help="train on this many random images")
    train.add_argument("--test-subset", type=_positive, help="test on this many random images")
    train.add_argument("--iterations", type=_positive, help="routing iterations (CapsNet; default 3)")
    train.add_argument("--seed", type=int, default=0, help="seed for weights, order and shifts")
    train.add_argument("--device", **device)
    train.add_argument("--data-root", **data_root)
    train.add_argument("--output", metavar="PATH", help=f"checkpoint path (default: {DEFAULT_OUTPUT})")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run at --output")
    train.add_argument("--no-progress", action="store_true", help="no progress bar, one line per epoch")
    train.add_argument("--keep-epochs", action="store_true",
                       help="also keep every epoch's checkpoint, in OUTPUT_STEM.epochs/ (for "
                       "capsviewer average)")
    train.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                       help="bf16: convolutions in bf16 (mixed precision); auto: bf16 where the "
                       "GPU or CPU does bf16 natively, else fp32")
    train.add_argument("--compile", action="store_true", help="torch.compile the model (GPUs)")

    add_eval_parser(sub, device, data_root, _positive)

    export = sub.add_parser(
        "export", help="every view for one input as PNG, SVG and CSV, without a window",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    export.add_argument("--model", type=Path, action="append", metavar="PATH",
                        help="checkpoint (repeat for both; default: as the app finds them)")
    source = export.add_mutually_exclusive_group()
    source.add_argument("--index", type=int, default=0, help="test-set image")
    source.add_argument("--image", type=Path, metavar="FILE", help="an image file instead")
    export.add_argument("--iterations", type=_positive, help="routing iterations to show")
    export.add_argument("--out", type=Path, default=Path("capsviewer-export"), help="folder")
    export.add_argument("--device", **device)
    export.add_argument("--data-root", **data_root)

    info = sub.add_parser("info", help="what a checkpoint holds")
    info.add_argument("checkpoint", type=Path)
    info.add_argument("--json", action="store_true", help="print the raw metadata as JSON")
    add_report_parser(sub)
    add_ablation_parser(sub)
    add_average_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from capsviewer.training import CheckpointError, DeviceUnavailable, TrainingError

    commands = {"train": _train, "eval": run_eval, "info": _info, "export": _export,
                "report": run_report, "ablation": run_ablation, "average": run_average,
                None: _app}
    try:
        return commands[args.command](args)
    except (DatasetUnavailable, CheckpointError, DeviceUnavailable, TrainingError) as error:
        print(f"capsviewer: error: {error}", file=sys.stderr)
        return 2


def _app(args) -> int:
    from capsviewer.app import run_app

    args.data_root, args.device = args.app_data_root, args.app_device
    return run_app(args)


def _export(args) -> int:
    from capsviewer.app.headless import export_views

    return export_views(args)


def _train(args) -> int:
    """Train; under ``torchrun --nproc_per_node=N`` every process runs this, rank 0 reports."""
    from capsviewer.training import distributed, select_device

    processes = distributed.join_from_environment(select_device(args.device))
    try:
        code = _train_process(args, processes)
    except BaseException:
        distributed.leave()
        raise
    distributed.leave(together=True)
    return code


def _train_process(args, processes) -> int:
    from tqdm import tqdm

    from capsviewer.training import (
        BatchProgress,
        EpochResult,
        EvaluationProgress,
        TrainConfig,
        Trainer,
    )

    output = args.output or DEFAULT_OUTPUT.format(model=args.model, dataset=args.dataset)
    config = TrainConfig(
        model=args.model,
        model_config={"routing_iterations": args.iterations} if args.iterations else {},
        dataset=args.dataset,
        data_root=args.data_root,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        lr_decay=args.lr_decay,
        decay_steps=args.decay_steps,
        init_from=args.init_from,
        subset=args.subset,
        test_subset=args.test_subset,
        seed=args.seed,
        device=args.device,
        output=output,
        resume=args.resume,
        keep_epochs=args.keep_epochs,
        precision=args.precision,
        compile=args.compile,
    )
    trainer = Trainer(config)
    report = processes.is_main
    if report:
        where = f"{trainer.device}, {trainer.precision}"
        if processes.enabled:
            where += f", {processes.world_size} processes"
        print(f"training {args.model} on {args.dataset} ({where}), checkpoints → {output}")
    bar, epoch = None, ""
    try:
        for event in trainer.events():
            if not report:
                continue
            if isinstance(event, BatchProgress) and not args.no_progress:
                if bar is None:
                    bar = tqdm(total=event.batches, desc=f"epoch {event.epoch}/{event.epochs}",
                               unit="batch", dynamic_ncols=True)
                bar.set_postfix(loss=f"{event.loss:.4f}", acc=f"{event.accuracy:.1%}",
                                img_s=f"{event.images_per_second:.0f}", refresh=False)
                bar.update(event.batch - bar.n)  # events may cover several batches (GPU)
                if event.batch == event.batches:
                    bar.close()
                    bar, epoch = None, f"epoch {event.epoch}/{event.epochs}"
            elif isinstance(event, EvaluationProgress) and not args.no_progress:
                if bar is None:
                    bar = tqdm(total=event.total, desc=f"{epoch} test", unit="img",
                               dynamic_ncols=True)
                bar.update(event.images - bar.n)
                if event.images == event.total:
                    bar.close()
                    bar = None
            elif isinstance(event, EpochResult):
                print(
                    f"epoch {event.epoch}/{event.epochs}: train loss {event.train_loss:.4f} "
                    f"acc {event.train_accuracy:.2%} | test loss {event.test_loss:.4f} "
                    f"acc {event.test_accuracy:.2%} | {event.seconds:.1f} s "
                    f"({event.images_per_second:.0f} img/s)",
                    flush=True,
                )
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print(f"\ninterrupted; every finished epoch is saved in {output} "
              "(continue with --resume)", file=sys.stderr)
        return 130
    if report:
        print(f"done in {event.seconds:.1f} s; best test accuracy "
              f"{event.best_test_accuracy:.2%}; saved {event.checkpoint}")
    return 0


def _info(args) -> int:
    from capsviewer.training import read_metadata

    meta = read_metadata(args.checkpoint)
    if args.json:
        print(json.dumps(meta, indent=2))
        return 0
    size = args.checkpoint.stat().st_size
    print(f"{args.checkpoint} ({size / 1e6:.1f} MB)")
    print(f"  architecture     {meta['architecture']}")
    for key, value in meta.get("config", {}).items():
        print(f"    {key:<23}{value}")
    for key in ("epoch", "seed", "device", "training_seconds", "torch_version", "saved"):
        if key in meta:
            print(f"  {key:<17}{meta[key]}")
    if meta.get("averaged"):
        epochs = ", ".join(str(a.get("epoch")) for a in meta["averaged"])
        print(f"  averaged         {len(meta['averaged'])} checkpoints, epochs {epochs}")
    if meta.get("initialised_from"):
        print("  initialised from " + _provenance(meta["initialised_from"]))
    for key, value in meta.get("metrics", {}).items():
        print(f"  {key:<17}{value:.4%}" if "accuracy" in key else f"  {key:<17}{value:.4f}")
    if "dataset" in meta:
        print("  dataset          " + ", ".join(f"{k}={v}" for k, v in meta["dataset"].items()))
    return 0


def _provenance(source: dict) -> str:
    """``initialised_from`` in words: the file a fine-tuning run started from, and its run."""
    parts = []
    if source.get("averaged_epochs"):
        parts.append("mean of epochs " + ", ".join(map(str, source["averaged_epochs"])))
    elif source.get("epoch") is not None:
        parts.append(f"epoch {source['epoch']}")
    if source.get("training_seconds") is not None:
        parts.append(f"{source['training_seconds']} s of training before this run")
    return source.get("file", "?") + (f" ({'; '.join(parts)})" if parts else "")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value

"""``capsviewer train``: train a model, saving a checkpoint every epoch. Its options are
TrainConfig's declared ones (:func:`capsviewer.training.train_options`); under
``torchrun --nproc_per_node=N`` every process runs it and rank 0 reports."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from capsviewer.cli.common import add_progress_switch, number, sub_command

if TYPE_CHECKING:
    from capsviewer.training.config import Option, TrainConfig

DEFAULT_OUTPUT = "checkpoints/{model}-{dataset}.safetensors"
# In `capsviewer --help`:
HELP = "train a model and save checkpoints every epoch"


def add_parser(sub) -> argparse.ArgumentParser:
    from capsviewer.training.config import train_options

    parser = sub_command(sub, "train", run, HELP, interrupted="interrupted")
    for opt in train_options():
        parser.add_argument(opt.cli_flag, dest=_dest(opt), **_argument(opt))
    add_progress_switch(parser, "no progress bar, one line per epoch")
    return parser


def _dest(opt: Option) -> str:
    return opt.key or opt.name


def _argument(opt: Option) -> dict:
    """add_argument's keywords for a declared option."""
    help = opt.help
    if opt.name == "output":
        help += f" (default: {DEFAULT_OUTPUT})"
    if opt.type is bool:
        return {"action": "store_true", "help": help}
    details = {"default": opt.default, "help": help, "metavar": opt.metavar}
    if opt.choices is not None:
        details["choices"] = opt.choices
    elif opt.type in (int, float):
        details["type"] = number(opt.type, opt.minimum, opt.maximum)
    return details


def config_from(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the parsed options describe."""
    from capsviewer.training.config import TrainConfig, train_options

    values = {}
    for opt in train_options():
        value = getattr(args, _dest(opt))
        if opt.key is None:
            values[opt.name] = value
        else:  # an entry of a dict field, set only when given
            entries = values.setdefault(opt.name, {})
            if value is not None:
                entries[opt.key] = value
    values["output"] = args.output or DEFAULT_OUTPUT.format(model=args.model, dataset=args.dataset)
    return TrainConfig(**values)


def run(args) -> int:
    from capsviewer.training import distributed, select_device

    processes = distributed.join_from_environment(select_device(args.device))
    try:
        code = _train(args, processes)
    except BaseException:
        distributed.leave()
        raise
    distributed.leave(together=True)
    return code


def _train(args, processes) -> int:
    from tqdm import tqdm

    from capsviewer.training import BatchProgress, EpochResult, EvaluationProgress, Trainer

    config = config_from(args)
    output = config.output
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
                    f"acc {event.test_accuracy:.2%}"
                    + (f" (top-2; per digit {event.test_digit_accuracy:.2%})"
                       if event.test_digit_accuracy is not None else "")
                    + f" | {event.seconds:.1f} s "
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

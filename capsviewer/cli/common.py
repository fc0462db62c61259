"""What every sub-command shares: the help format, argument types with their ranges, the
common options, writing files, and turning expected failures into one line and an exit status.

Light to import (no torch): ``capsviewer --help`` and the app's start read it."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

from capsviewer.data.datasets import DATA_ROOT_HELP, DATASETS
from capsviewer.checks import ROUTING_ITERATIONS, printable, range_problem
from capsviewer.training.devices import DEVICE_HELP

MAX_BATCH = 65_536  # images per batch at most, as `capsviewer train --batch-size`


class CommandError(RuntimeError):
    """A request a sub-command cannot carry out as asked; the message says why."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it is None or False, or the help already names one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        if action.default is None or action.default is False or "default" in help:
            return help
        return super()._get_help_string(action)


def number(kind: type = int, minimum: float | None = None,
           maximum: float | None = None) -> Callable[[str], int | float]:
    """An argparse type: ``kind`` (int or float) within [minimum, maximum], finite."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{'a whole number' if kind is int else 'a number'} is needed, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        problem = range_problem(value, minimum, maximum, kind)
        if problem:
            raise argparse.ArgumentTypeError(f"{problem}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


positive_int = number(int, 1)
non_negative_int = number(int, 0)
batch_size = number(int, 1, MAX_BATCH)
routing_iterations = number(int, *ROUTING_ITERATIONS)


def add_device(parser: argparse.ArgumentParser, dest: str = "device") -> None:
    parser.add_argument("--device", dest=dest, default="auto", metavar="DEVICE", help=DEVICE_HELP)


def add_data_root(parser: argparse.ArgumentParser, dest: str = "data_root") -> None:
    parser.add_argument("--data-root", dest=dest, metavar="PATH", help=DATA_ROOT_HELP)


def add_dataset(parser: argparse.ArgumentParser, help: str, default: str | None = None,
                choices: tuple[str, ...] = tuple(DATASETS)) -> None:
    parser.add_argument("--dataset", choices=choices, default=default, help=help)


def add_progress_switch(parser: argparse.ArgumentParser, help: str = "no progress bar") -> None:
    parser.add_argument("--no-progress", action="store_true", help=help)


def sub_command(sub, name: str, run: Callable, help: str, description: str | None = None,
                interrupted: str = "interrupted") -> argparse.ArgumentParser:
    """A sub-parser whose ``run(args)`` :func:`run_command` calls; ``interrupted`` is what
    Ctrl-C prints."""
    parser = sub.add_parser(name, help=help, description=description,
                            formatter_class=HelpFormatter)
    parser.set_defaults(run=run, interrupted=interrupted)
    return parser


DEBUG_ENV_VAR = "CAPSVIEWER_DEBUG"  # set: an unexpected error shows its traceback


def run_command(args: argparse.Namespace) -> int:
    """``args.run(args)``; an expected failure (missing data, a bad checkpoint, an unavailable
    device, a failed training, a file that cannot be read or written, a CommandError) prints
    ``capsviewer NAME: error: …`` on one line and gives 2, Ctrl-C prints the command's
    ``interrupted`` note and gives 130. Anything else is a bug: one line saying so, exit 1
    (the traceback with $CAPSVIEWER_DEBUG set)."""
    name = getattr(args, "prog", None) or "capsviewer" + (f" {args.command}" if args.command else "")
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(f"\n{args.interrupted}", file=sys.stderr)
        return 130
    except _expected_errors() as error:
        print(f"{name}: error: {printable(error, 2000)}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"{name}: error: {printable(os_error_text(error), 2000)}", file=sys.stderr)
        return 2
    except Exception as error:
        if os.environ.get(DEBUG_ENV_VAR):
            raise
        print(f"{name}: internal error: {type(error).__name__}: {printable(error, 300)} (a bug "
              f"in capsviewer; set {DEBUG_ENV_VAR}=1 for the traceback and please report it)",
              file=sys.stderr)
        return 1


def find_models_noting_skipped(dataset: str = "mnist"):
    """:func:`find_models`, printing a note that names the files it skipped."""
    from capsviewer.training.model_files import find_models, skipped_note

    found = find_models(dataset)
    if skipped_note(found):
        print(f"note: {skipped_note(found)}", file=sys.stderr)
    return found


def _expected_errors() -> tuple[type[Exception], ...]:
    """The failures a user can cause (evaluated when one is raised: nothing imported early)."""
    from capsviewer.data import DatasetUnavailable
    from capsviewer.training import CheckpointError, DeviceUnavailable, TrainingError

    preprocess = sys.modules.get("capsviewer.analysis.preprocess")  # loaded if images were
    images = (preprocess.ImageError,) if preprocess is not None else ()
    return (DatasetUnavailable, CheckpointError, DeviceUnavailable, TrainingError, CommandError,
            *images)


def os_error_text(error: OSError) -> str:
    """"cannot use PATH: No space left on device" from an OSError, without Python's [Errno]."""
    where = error.filename if error.filename is not None else None
    reason = error.strerror or str(error)
    return f"cannot use {where}: {reason}" if where else reason


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

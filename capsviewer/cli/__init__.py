"""Command line: ``capsviewer`` opens the app; ``capsviewer train``, ``eval``, ``info``,
``export``, ``report``, ``ablation`` and ``average`` each live in a module of this package,
with what they share (option types, error reporting) in :mod:`capsviewer.cli.common`.

Only the sub-command that runs builds its options (``train``'s come from TrainConfig, which
imports torch): ``capsviewer --help`` and opening the app parse without importing torch, and
the app shows its window before torch is loaded."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import capsviewer
from capsviewer.cli.common import (
    CommandError,
    HelpFormatter,
    add_data_root,
    add_device,
    run_command,
)

COMMANDS = ("train", "eval", "info", "export", "report", "ablation", "average")


def command_module(name: str):
    return importlib.import_module(f"capsviewer.cli.{name}")


def build_parser(commands: tuple[str, ...] | None = None) -> argparse.ArgumentParser:
    """The parser with the options of ``commands`` (all when None); any other sub-command is
    listed with its help line only, and takes anything (:func:`main` parses it again)."""
    parser = argparse.ArgumentParser(
        prog="capsviewer", formatter_class=HelpFormatter,
        description="Explore Capsule Networks. Without a sub-command, opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"capsviewer {capsviewer.__version__}")
    window = parser.add_argument_group("desktop app (no sub-command)")
    window.add_argument("--model", metavar="PATH", type=Path, action="append",
                        help="checkpoint to open (CapsNet, CNN or matrix capsules; repeat for "
                        "several). Default: per model, the first found in $CAPSVIEWER_MODELS, "
                        "the shipped models, the user's checkpoint folder, ./checkpoints (the "
                        "newest file within a folder)")
    add_data_root(window, dest="app_data_root")
    add_device(window, dest="app_device")
    window.add_argument("--theme", choices=["system", "light", "dark"],
                        help="colour theme (default: the last one chosen, else the system's)")
    parser.set_defaults(run=_app, interrupted="interrupted")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    for name in COMMANDS:
        module = command_module(name)
        if commands is None or name in commands:
            module.add_parser(sub)
        else:
            sub.add_parser(name, help=module.HELP, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    known, _ = build_parser(commands=()).parse_known_args(argv)  # which sub-command, if any
    return run_command(build_parser(commands=(known.command,) if known.command else ())
                       .parse_args(argv))


def _app(args) -> int:
    from capsviewer.app import run_app

    missing = [str(path) for path in args.model or [] if not path.is_file()]
    if missing:  # a file that is there but cannot be read is reported in the window
        raise CommandError(f"no such model file: {', '.join(missing)}")
    args.data_root, args.device = args.app_data_root, args.app_device
    return run_app(args)

"""Command line: ``capsviewer`` opens the app; ``capsviewer train``, ``eval``, ``info``,
``export``, ``report``, ``ablation`` and ``average`` each live in a module of this package,
with what they share (option types, error reporting) in :mod:`capsviewer.cli.common`."""

from __future__ import annotations

import argparse
from pathlib import Path

import capsviewer
from capsviewer.cli import ablation, average, export, info, report, train
from capsviewer.cli import eval as eval_  # the module, not the builtin
from capsviewer.cli.common import HelpFormatter, add_data_root, add_device, run_command

COMMANDS = (train, eval_, info, export, report, ablation, average)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="capsviewer", formatter_class=HelpFormatter,
        description="Explore Capsule Networks. Without a sub-command, opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"capsviewer {capsviewer.__version__}")
    window = parser.add_argument_group("desktop app (no sub-command)")
    window.add_argument("--model", metavar="PATH", type=Path, action="append",
                        help="checkpoint to open (CapsNet or CNN; repeat for both). Default: the "
                        "shipped models, else the newest in the user's checkpoint folder")
    add_data_root(window, dest="app_data_root")
    add_device(window, dest="app_device")
    window.add_argument("--theme", choices=["system", "light", "dark"],
                        help="colour theme (default: the last one chosen, else the system's)")
    parser.set_defaults(run=_app, interrupted="interrupted")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(
        c.__name__.rsplit(".", 1)[-1] for c in COMMANDS) + "}")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv))


def _app(args) -> int:
    from capsviewer.app import run_app

    args.data_root, args.device = args.app_data_root, args.app_device
    return run_app(args)

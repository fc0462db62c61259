"""``capsviewer export``: every view of the app for one input, as PNG, SVG and CSV, rendered
offscreen without a window."""

from __future__ import annotations

import argparse
from pathlib import Path

from capsviewer.cli.common import (
    add_data_root,
    add_device,
    non_negative_int,
    routing_iterations,
    sub_command,
)


# In `capsviewer --help`:
HELP = "every view for one input as PNG, SVG and CSV, without a window"


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub_command(sub, "export", run, HELP,
                         "Every view of the app for one input, rendered offscreen. With a "
                         "MultiMNIST CapsNet (--model, or --pair with the one the app finds), "
                         "the Overlap view of one pair: --index N is test pair N of the fixed "
                         "MultiMNIST test set, --pair I J puts test digits I and J on each "
                         "other, centred.")
    parser.add_argument("--model", type=Path, action="append", metavar="PATH",
                        help="checkpoint (repeat for both; default: as the app finds them)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--index", type=int, default=0,
                        help="test-set image (MultiMNIST model: test pair)")
    source.add_argument("--image", type=Path, metavar="FILE", help="an image file instead")
    source.add_argument("--pair", type=non_negative_int, nargs=2, metavar=("I", "J"),
                        help="test digits I and J overlaid, for a MultiMNIST CapsNet")
    parser.add_argument("--iterations", type=routing_iterations, help="routing iterations to show")
    parser.add_argument("--out", type=Path, default=Path("capsviewer-export"), help="folder")
    add_device(parser)
    add_data_root(parser)
    return parser


def run(args) -> int:
    from capsviewer.app.headless import export_views

    return export_views(args)

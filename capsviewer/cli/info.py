"""``capsviewer info``: what a checkpoint holds (architecture, config, training, metrics)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from capsviewer.checks import printable
from capsviewer.cli.common import sub_command
from capsviewer.data.datasets import MULTIMNIST


# In `capsviewer --help`:
HELP = "what a checkpoint holds"


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub_command(sub, "info", run, HELP)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--json", action="store_true", help="print the raw metadata as JSON")
    return parser


def run(args) -> int:
    from capsviewer.training import read_metadata

    meta = read_metadata(args.checkpoint)
    if args.json:
        print(json.dumps(meta, indent=2))  # ASCII: control characters come out escaped
        return 0
    size = args.checkpoint.stat().st_size
    lines = [f"{args.checkpoint} ({size / 1e6:.1f} MB)",
             f"  architecture     {meta['architecture']}"]
    lines += [f"    {key:<23}{value}" for key, value in meta.get("config", {}).items()]
    lines += [f"  {key:<17}{meta[key]}" for key in
              ("epoch", "seed", "device", "training_seconds", "torch_version", "saved") if key in meta]
    if meta.get("averaged"):
        epochs = ", ".join(str(a.get("epoch")) for a in meta["averaged"])
        lines.append(f"  averaged         {len(meta['averaged'])} checkpoints, epochs {epochs}")
    if meta.get("initialised_from"):
        lines.append("  initialised from " + provenance(meta["initialised_from"]))
    dataset = meta.get("dataset", {})
    for key, value in meta.get("metrics", {}).items():
        label = f"{key:<17}" if len(key) < 17 else key + " "
        lines.append(f"  {label}{value:.4%}" if "accuracy" in key else f"  {label}{value:.4f}")
    if "dataset" in meta:
        lines.append("  dataset          " + ", ".join(f"{k}={v}" for k, v in dataset.items()))
    if dataset.get("name") == MULTIMNIST:
        pairs = dataset.get("test_pairs")
        pairs = f"{pairs:,}" if isinstance(pairs, int) else "?"
        lines.append(f"  MultiMNIST: accuracies are top-2 (a pair counts when both digits are "
                     f"among the two longest capsules), test_digit_accuracy per digit; tested on "
                     f"{pairs} fixed pairs (seed {dataset.get('test_seed')})")
    for line in lines:  # metadata is anyone's text: no terminal escape sequences get through
        print(printable(line, 1000))
    return 0


def provenance(source: dict) -> str:
    """``initialised_from`` in words: the file a fine-tuning run started from, and its run."""
    parts = []
    if source.get("averaged_epochs"):
        parts.append("mean of epochs " + ", ".join(map(str, source["averaged_epochs"])))
    elif source.get("epoch") is not None:
        parts.append(f"epoch {source['epoch']}")
    if source.get("training_seconds") is not None:
        parts.append(f"{source['training_seconds']} s of training before this run")
    return source.get("file", "?") + (f" ({'; '.join(parts)})" if parts else "")

"""``capsviewer ablation``: test accuracy of a CapsNet against the number of agreement updates
k of dynamic routing (k = 0: uniform couplings, r = 1 iteration; r = k + 1 in general)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from capsviewer.cli.common import (
    CommandError,
    add_data_root,
    add_device,
    add_progress_switch,
    non_negative_int,
    positive_int,
    sub_command,
    write_file,
)


# In `capsviewer --help`:
HELP = "routing ablation: test accuracy against the number of agreement updates"


def add_parser(sub) -> argparse.ArgumentParser:
    from capsviewer.analysis.routing_diagnostics import UPDATES

    parser = sub_command(
        sub, "ablation", run,
        HELP,
        "Classify the test set with k agreement updates of dynamic routing (k = 0: uniform "
        "couplings c_ij = 1/J, routing iterations r = k + 1; the paper trains with r = 3, k = 2) "
        "and print the accuracy for each k, with the number of predictions that differ from the "
        "trained setting.")
    parser.add_argument("--model", metavar="PATH", type=Path,
                        help="CapsNet checkpoint. Default: the shipped CapsNet, else the newest "
                        "found where the app looks ($CAPSVIEWER_MODELS, the shipped "
                        "models, the user's checkpoints, ./checkpoints)")
    parser.add_argument("--updates", metavar="K", type=non_negative_int, nargs="+",
                        default=list(UPDATES), help="agreement updates to compare (default: "
                        + " ".join(map(str, UPDATES)) + ")")
    add_data_root(parser)
    parser.add_argument("--test-subset", metavar="N", type=positive_int,
                        help="use N random test images (default: all)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="picks the subset")
    parser.add_argument("--batch-size", type=positive_int, default=250,
                        help="images per forward pass")
    add_device(parser)
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the table as JSON")
    add_progress_switch(parser)
    return parser


def default_capsnet() -> Path:
    """The CapsNet the app would open: the shipped one first."""
    from capsviewer.training.model_files import SHIPPED_MODELS, find_models, model_dirs

    found = find_models("mnist").get("capsnet")
    if found is None:
        searched = ", ".join(str(d) for d in model_dirs())
        raise CommandError(
            f"no MNIST CapsNet found: none ships in {SHIPPED_MODELS} yet and none was trained "
            f"here (searched {searched}). Pass --model PATH, or train one with `capsviewer train`")
    return found


def run(args) -> int:
    from tqdm import tqdm

    from capsviewer.analysis.routing_diagnostics import accuracy_by_updates
    from capsviewer.data import load_dataset
    from capsviewer.training import describe_device, load_checkpoint, select_device

    path = args.model or default_capsnet()
    device = select_device(args.device)
    checkpoint = load_checkpoint(path, device)
    meta = checkpoint.metadata
    if meta["architecture"] != "capsnet":
        raise CommandError(f"{path} is a {meta['architecture']}; routing needs a CapsNet")
    dataset = meta.get("dataset", {}).get("name", "mnist")
    test = load_dataset(dataset, train=False, root=args.data_root).subset(args.test_subset,
                                                                          seed=args.seed)
    updates = sorted(set(args.updates))
    print(f"routing ablation of {path} on {len(test):,} {dataset} test images "
          f"({describe_device(device)}):", flush=True)
    bar = None if args.no_progress else tqdm(total=len(test), unit="img", dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    start = time.perf_counter()
    try:
        result = accuracy_by_updates(checkpoint.model, test.images, test.labels, updates,
                                     args.batch_size, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    print(table(result))
    print(f"{seconds:.1f} s")
    if args.json is not None:
        document = {"model": str(path), "dataset": dataset, "test_images": len(test),
                    "subset_seed": args.seed if args.test_subset else None,
                    "device": describe_device(device), "seconds": round(seconds, 2),
                    "trained_iterations": result.trained_iterations, "rows": result.rows()}
        write_file(args.json, (json.dumps(document, indent=2) + "\n").encode())
        print(f"wrote {args.json}")
    return 0


def table(result) -> str:
    """The accuracy table, one line per k, with differences from the trained setting."""
    reference = result.label(result.reference)
    header = f"{'agreement updates k':<30} {'accuracy':>9} {'correct':>13} {'changed':>8}"
    lines = [header, "-" * len(header)]
    for row in result.rows():
        lines.append(f"{row['label']:<30} {100 * row['accuracy']:>8.2f}% "
                     f"{row['correct']:>6,}/{row['count']:<6,} {row['changed_vs_reference']:>8,}")
    lines.append(f"changed: predictions that differ from {reference}")
    return "\n".join(lines)

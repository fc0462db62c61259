"""``capsviewer average``: one checkpoint from the mean weights of several (epoch snapshots
kept by ``capsviewer train --keep-epochs``), measured on the test set and stored as asked."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from capsviewer.cli.common import (
    add_data_root,
    add_device,
    batch_size,
    positive_int,
    sub_command,
)

DTYPES = ("fp32", "fp16")


# In `capsviewer --help`:
HELP = "average the weights of several checkpoints of one model into one"


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub_command(
        sub, "average", run, HELP,
        "Average the weights of checkpoints of one architecture and config (e.g. the last epochs "
        "of a run, kept with `capsviewer train --keep-epochs`), measure the result on the test "
        "set in fp32 as it will be stored, and save it with that accuracy in its metadata, so "
        "`capsviewer eval` reproduces it.")
    parser.add_argument("checkpoints", nargs="+", type=Path, metavar="CHECKPOINT")
    parser.add_argument("--output", type=Path, required=True, metavar="PATH",
                        help="the averaged checkpoint")
    parser.add_argument("--dtype", choices=DTYPES, default="fp32",
                        help="weights stored in this dtype (fp16 halves the file, and the "
                        "command says how many predictions that changes)")
    add_data_root(parser)
    add_device(parser)
    parser.add_argument("--test-subset", type=positive_int, metavar="N",
                        help="measure on N random test images (as `capsviewer eval --subset N`; "
                        "default: all)")
    parser.add_argument("--batch-size", type=batch_size, default=500,
                        help="images per forward pass")
    return parser


def run(args) -> int:
    import torch

    from capsviewer.data.tasks import MULTIMNIST, get_task
    from capsviewer.training import describe_device, evaluate, save_checkpoint, select_device
    from capsviewer.training.averaging import average_checkpoints, round_trip
    from capsviewer.training.evaluation import predict_classes

    device = select_device(args.device)
    averaged = average_checkpoints(args.checkpoints)
    meta = averaged.metadata
    dataset = meta.get("dataset", {}).get("name", "mnist")
    epochs = [a["epoch"] for a in meta["averaged"]]
    print(f"averaging {len(epochs)} checkpoints of {meta['architecture']} on {dataset} "
          f"(epochs {', '.join(map(str, epochs))})")
    task = get_task(dataset)
    test = task.test_set(task.load(False, args.data_root), args.test_subset)
    model = averaged.model.to(device)
    dtype = torch.float16 if args.dtype == "fp16" else None
    if dtype is not None:
        exact = predict_classes(model, test.images, device, args.batch_size)
        round_trip(model, dtype)  # measure the weights as they will be stored
        rounded = predict_classes(model, test.images, device, args.batch_size)
        changed = int((rounded != exact).reshape(len(exact), -1).any(dim=1).sum())
    start = time.perf_counter()
    result = evaluate(model, test, device, args.batch_size, precision="fp32")
    seconds = time.perf_counter() - start
    meta["metrics"] = {"test_accuracy": result.accuracy, "test_loss": result.loss}
    if result.digit_accuracy is not None:
        meta["metrics"]["test_digit_accuracy"] = result.digit_accuracy
    meta["training_precision"] = meta.get("precision", "fp32")
    meta["precision"] = "fp32"  # the precision the stored accuracy was measured in
    meta["dataset"] = {**meta.get("dataset", {}), "test_images": args.test_subset or "all"}
    if dataset == MULTIMNIST:  # the pairs measured on
        meta["dataset"].update(test_pairs=len(test), test_sha256=test.checksum())
    meta["evaluated_on"] = describe_device(device)
    path = save_checkpoint(args.output, model, meta, dtype=dtype)
    print(f"test set ({result.count} images, {device}, fp32, {seconds:.1f} s): accuracy "
          f"{result.accuracy:.2%} ({result.correct}/{result.count}), loss {result.loss:.4f}")
    if dtype is not None:
        print(f"stored in {args.dtype}: {changed} of {result.count} predictions differ from the "
              "unrounded average")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0

"""``capsviewer eval``: test-set accuracy of one checkpoint, checked against its metadata; given
several, each on its own and then all of them as an ensemble (mean of their class scores).
MultiMNIST checkpoints are measured on the fixed 10,000 test pairs: top-2 accuracy (both digits
among the two longest capsules) and per-digit accuracy."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from capsviewer.cli.common import (
    CommandError,
    add_data_root,
    add_dataset,
    add_device,
    add_progress_switch,
    batch_size,
    positive_int,
    routing_iterations,
    sub_command,
)
from capsviewer.data.datasets import MULTIMNIST, TASKS
from capsviewer.training.devices import PRECISIONS

LISTED_WRONG = 100  # misclassified indices printed for an ensemble


# In `capsviewer --help`:
HELP = "accuracy of a checkpoint on a test set (several: also their ensemble)"


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub_command(
        sub, "eval", run, HELP,
        "Accuracy of each checkpoint on the test set, and whether it matches the accuracy in its "
        "metadata. Given several checkpoints of one dataset, also the accuracy of their ensemble "
        "(the mean of their class scores: capsule lengths, CNN probabilities), how many images "
        "they disagree on, and which images it gets wrong.")
    parser.add_argument("checkpoints", nargs="+", type=Path, metavar="CHECKPOINT")
    add_dataset(parser, "default: the checkpoint's dataset", choices=TASKS)
    parser.add_argument("--subset", type=positive_int,
                        help="evaluate on this many random test images (MultiMNIST: the first "
                        "pairs of the fixed test set)")
    parser.add_argument("--iterations", type=routing_iterations,
                        help="override the routing iterations (CapsNet)")
    parser.add_argument("--batch-size", type=batch_size, default=500,
                        help="images per forward pass")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="default: the precision each checkpoint was tested in, if this "
                        "device has it natively, else fp32")
    add_device(parser)
    add_data_root(parser)
    add_progress_switch(parser)
    return parser


def run(args) -> int:
    from capsviewer.data.datasets import unpublished_note
    from capsviewer.data.tasks import get_task
    from capsviewer.training import load_checkpoint, select_device

    device = select_device(args.device)
    checkpoints = [load_checkpoint(path, device) for path in args.checkpoints]
    _check_iterations(args, checkpoints)
    names = {c.metadata.get("dataset", {}).get("name", "mnist") for c in checkpoints}
    if args.dataset is None and len(names) > 1:
        raise CommandError(f"the checkpoints were trained on different datasets "
                               f"({', '.join(sorted(names))}); choose one with --dataset")
    dataset = args.dataset or names.pop()
    task = get_task(dataset)
    loaded = task.load(False, args.data_root)
    note = unpublished_note(loaded)
    if note:
        print(f"note: {note}", file=sys.stderr)
    test = task.test_set(loaded, args.subset)
    ensemble = len(checkpoints) > 1
    scores = [_evaluate_one(args, path, checkpoint, test, dataset, device, keep_scores=ensemble)
              for path, checkpoint in zip(args.checkpoints, checkpoints)]
    if ensemble:
        _print_ensemble(args, scores, test)
    return 0


def _check_iterations(args, checkpoints) -> None:
    import inspect

    if not args.iterations:
        return
    if len(checkpoints) > 1:
        raise CommandError("--iterations applies to one capsule network, not to an ensemble")
    model = checkpoints[0].model
    if "iterations" not in inspect.signature(model.forward).parameters:
        raise CommandError(f"--iterations applies to capsule networks; "
                               f"{args.checkpoints[0]} is a {checkpoints[0].metadata['architecture']}")


def _precision(args, checkpoint, device) -> str:
    import torch

    from capsviewer.models.precision import native_bf16
    from capsviewer.training.devices import resolve_precision

    stored = checkpoint.metadata.get("precision", "fp32")
    precision = args.precision
    if precision is None:
        precision = "bf16" if stored == "bf16" and native_bf16(device) else "fp32"
    precision = resolve_precision(precision, device)
    if precision == "bf16":
        checkpoint.model.to(memory_format=torch.channels_last)  # oneDNN's and cuDNN's bf16 layout
    return precision


def _evaluate_one(args, path, checkpoint, test, dataset, device, keep_scores: bool):
    """Prints one checkpoint's accuracy; returns its class scores if ``keep_scores``."""
    from tqdm import tqdm

    from capsviewer.training import evaluate

    meta = checkpoint.metadata
    precision = _precision(args, checkpoint, device)
    options = {"iterations": args.iterations} if args.iterations else {}
    start = time.perf_counter()
    with tqdm(total=len(test), desc=path.name, unit="img", disable=args.no_progress,
              leave=False, dynamic_ncols=True, mininterval=0) as bar:  # every batch
        result = evaluate(checkpoint.model, test, device, args.batch_size, precision=precision,
                          keep_scores=keep_scores,
                          progress=lambda step: bar.update(step.images - bar.n), **options)
    seconds = time.perf_counter() - start
    pairs = dataset == MULTIMNIST
    print(
        f"{path}: {meta['architecture']} on {dataset} test set ({result.count} "
        f"{'pairs' if pairs else 'images'}, {device}, {precision}, {seconds:.1f} s)\n"
        f"{'top-2 accuracy' if pairs else 'accuracy'} {result.accuracy:.2%} "
        f"({result.correct}/{result.count}), error {result.error_percent:.2f}%, "
        f"loss {result.loss:.4f}"
    )
    if result.digit_accuracy is not None:
        print(f"per-digit accuracy {result.digit_accuracy:.2%} (digits among their pair's two "
              "highest scores); top-2 counts a pair when both are")
    stated = meta.get("metrics", {}).get("test_accuracy")
    tested_on = meta.get("dataset", {}).get("test_sha256")  # MultiMNIST: the pairs' checksum
    if tested_on is not None:
        same_images = tested_on == test.checksum()
        if not same_images and not args.subset:
            print("the checkpoint was tested on other pairs (its test-set checksum differs)")
    else:
        same_images = meta.get("dataset", {}).get("test_images") == "all" and not args.subset
    if stated is not None and same_images:
        stored_precision = meta.get("precision", "fp32")
        same = "matches" if abs(stated - result.accuracy) < 1e-9 else "DIFFERS from"
        note = "" if precision == stored_precision else f", measured in {stored_precision}"
        print(f"this {same} the accuracy stored in the checkpoint ({stated:.2%}{note})")
    return result.scores


def _print_ensemble(args, scores, test) -> None:
    from capsviewer.training.ensemble import evaluate_ensemble

    try:
        result = evaluate_ensemble(scores, test.labels)
    except ValueError as error:
        raise CommandError(str(error)) from error
    shown = ", ".join(map(str, result.wrong[:LISTED_WRONG]))
    more = len(result.wrong) - LISTED_WRONG
    print(
        f"ensemble of {len(scores)} (mean class score): accuracy {result.accuracy:.2%} "
        f"({result.correct}/{result.count}), error {result.error_percent:.2f}%; the models "
        f"disagree on {result.disagreements} images\n"
        f"wrong{' (indices into the subset)' if args.subset else ''}: {shown or 'none'}"
        + (f" … and {more} more" if more > 0 else "")
    )

"""Apply the shipping rule of docs/multimnist.md to a trained MultiMNIST CapsNet: measure its
weights in fp32 on the 10,000 fixed test pairs, as they are and rounded to fp16, and only when
every condition holds write capsviewer/resources/models/capsnet-multimnist.safetensors (fp16),
with the rounded weights' figures in its metadata. Run from the checkout:

    python tools/ship_multimnist.py checkpoints/multimnist/capsnet-multimnist.safetensors \\
        --data-root ../shared/data
"""

import argparse
import tempfile
from pathlib import Path

import torch

from capsviewer.data.tasks import MULTIMNIST, get_task
from capsviewer.training import describe_device, evaluate, load_checkpoint, save_checkpoint
from capsviewer.training.averaging import round_trip
from capsviewer.training.metrics import correct
from capsviewer.training.model_files import SHIPPED_MODELS

# The rule's conditions (docs/multimnist.md, "Rule").
MIN_TOP2_ACCURACY = 0.25  # chance: 1/45
MAX_CHANGED_PAIRS = 10  # top-2 outcomes fp16 rounding may change, of 10,000
MAX_BYTES = 25_000_000
SHIPPED = SHIPPED_MODELS / "capsnet-multimnist.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="the run's final checkpoint")
    parser.add_argument("--data-root", type=Path, help="where MNIST is (torchvision's layout)")
    args = parser.parse_args()
    source = load_checkpoint(args.checkpoint)
    meta, model = dict(source.metadata), source.model
    if meta["architecture"] != "capsnet" or meta.get("dataset", {}).get("name") != MULTIMNIST:
        raise SystemExit(f"{args.checkpoint} is not a MultiMNIST CapsNet")
    task = get_task(MULTIMNIST)
    test = task.test_set(task.load(False, args.data_root, download=False))
    exact = evaluate(model, test, precision="fp32", keep_scores=True)
    round_trip(model, torch.float16)  # the weights as they will be stored
    rounded = evaluate(model, test, precision="fp32", keep_scores=True)
    changed = int((correct(exact.scores, test.labels)
                   != correct(rounded.scores, test.labels)).sum())
    for name, result in (("fp32 weights", exact), ("fp16 weights", rounded)):
        print(f"{name}: top-2 accuracy {result.accuracy:.2%} ({result.correct}/{result.count}), "
              f"error {result.error_percent:.2f}%, per-digit {result.digit_accuracy:.2%}")
    print(f"fp16 rounding changes the top-2 outcome of {changed} of {len(test):,} pairs")
    meta["metrics"] = {"test_accuracy": rounded.accuracy,
                       "test_digit_accuracy": rounded.digit_accuracy, "test_loss": rounded.loss}
    meta["training_precision"] = meta.get("precision", "fp32")
    meta["precision"] = "fp32"  # the precision the stored accuracy was measured in
    meta["evaluated_on"] = describe_device(torch.device("cpu"))
    meta["shipping"] = {"source": args.checkpoint.name, "fp32_weights_test_accuracy":
                        exact.accuracy, "fp16_changed_pairs": changed}
    with tempfile.TemporaryDirectory() as folder:
        candidate = save_checkpoint(Path(folder) / SHIPPED.name, model, meta,
                                    dtype=torch.float16)
        size = candidate.stat().st_size
        print(f"fp16 file: {size / 1e6:.1f} MB")
        failed = [what for what, ok in (
            (f"top-2 accuracy below {MIN_TOP2_ACCURACY:.0%}", rounded.accuracy >= MIN_TOP2_ACCURACY),
            (f"more than {MAX_CHANGED_PAIRS} pairs changed by fp16", changed <= MAX_CHANGED_PAIRS),
            (f"file over {MAX_BYTES / 1e6:.0f} MB", size <= MAX_BYTES)) if not ok]
        if failed:
            raise SystemExit("not shipped: " + "; ".join(failed))
        SHIPPED.write_bytes(candidate.read_bytes())
    print(f"wrote {SHIPPED}")


if __name__ == "__main__":
    main()

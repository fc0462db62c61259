"""Speed of capsviewer on this machine, side by side with the straightforward formulation.

    python benchmarks/speed.py [--device auto] [--batch-sizes 32 128] [--json PATH]
    python benchmarks/speed.py --epoch [--batch-size 128]       # a full MNIST epoch (GPU)
    python benchmarks/speed.py --to-accuracy 0.995 [--epochs 15]  # time to a test accuracy
    python benchmarks/speed.py --accuracy-check [--subset 2000]   # fast path vs plain fp32

The default run measures, in one process:

* training throughput (images/s for a whole step: forward with decoder, margin and
  reconstruction loss, backward, Adam, the learning-rate schedule, shifts and metrics; the
  better of two timed epochs, the reference's best step) for each batch size, three ways: capsviewer's trainer as it runs here (``precision`` auto, e.g.
  bf16 convolutions), the same trainer in plain fp32, and the straightforward formulation on
  the same weights (votes by tiling, recomputed in every routing iteration, fp32, as the
  authors' TensorFlow code; tests/reference/capsnet.py) in a plain loop; with the
  peak memory of each (CUDA: peak allocated; CPU: peak growth of the resident set, model and
  optimizer included, approximate since the allocator reuses freed memory);
* evaluation throughput, the same three ways;
* the interactive figures: one-image analysis with the full routing trace (CapsNet alone,
  and with the CNN as the app does it), one decoder call, the 16×11 pose-perturbation grid,
  the 72-angle rotation sweep through CapsNet and CNN (fp32, and where the hardware has bf16
  as the app runs it: bf16 convolutions with near-ties redone in fp32; also plain bf16).

Training and evaluation use untrained models of the real architectures (timings do not depend
on the weights); the interactive figures use the checkpoints the app would open, when found.
Images are MNIST when found (``--data-root``, ``$CAPSVIEWER_DATA``), else random.
Ratios compare figures from this one run; absolute times mean something only per machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the package, and the reference formulations

from capsviewer.data import ImageSet, load_dataset, random_shift, to_float  # noqa: E402
from capsviewer.data.datasets import DatasetUnavailable  # noqa: E402
from capsviewer.models import build_model  # noqa: E402
from reference.capsnet import reference_forward  # noqa: E402
from capsviewer.training import TrainConfig, Trainer, evaluate, select_device  # noqa: E402
from capsviewer.models.precision import native_bf16  # noqa: E402
from capsviewer.training.devices import resolve_precision  # noqa: E402
from capsviewer.training.trainer import EpochResult  # noqa: E402


# -- machine and measuring ----------------------------------------------------------------------
def machine(device: torch.device) -> dict:
    info = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "native_bf16": native_bf16(device),
        "precision_auto": resolve_precision("auto", device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory while the block runs: CUDA bytes allocated, or on Linux CPUs the growth of
    the resident set over its size at the start (VmHWM, reset through /proc/self/clear_refs)."""

    def __init__(self, device: torch.device):
        self.device, self.bytes = device, None

    def reset(self) -> None:
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._base = _status_kib("VmRSS") * 1024
        except OSError:
            self._base = None

    def read(self) -> int | None:
        if self.device.type == "cuda":
            sync(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device)
        elif self._base is not None:
            self.bytes = _status_kib("VmHWM") * 1024 - self._base
        return self.bytes


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(key)


def median_ms(function, repeats: int, device: torch.device, warmup: int = 5) -> dict:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        function()
        sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "runs": repeats}


# -- data ---------------------------------------------------------------------------------------
def datasets(root: str | None) -> tuple[ImageSet, ImageSet, str]:
    try:
        return (load_dataset("mnist", True, root, download=False),
                load_dataset("mnist", False, root, download=False), "MNIST")
    except DatasetUnavailable:
        g = torch.Generator().manual_seed(0)

        def fake(count: int, train: bool) -> ImageSet:
            images = torch.randint(0, 256, (count, 1, 28, 28), dtype=torch.uint8, generator=g)
            labels = torch.randint(0, 10, (count,), generator=g)
            return ImageSet("random", train, images, labels, tuple("0123456789"))

        return fake(60000, True), fake(10000, False), "random images (MNIST not found)"


# -- training -----------------------------------------------------------------------------------
def trainer_throughput(train, test, device, batch_size: int, steps: int, precision: str,
                       *, compile: bool = False, model_config: dict | None = None) -> dict:
    """capsviewer's trainer, ``steps`` batches per epoch, three epochs: the faster of epochs 2
    and 3 counts (the first pays for kernel selection and warm-up, and compiling)."""
    config = TrainConfig(epochs=3, batch_size=batch_size, subset=steps * batch_size,
                         test_subset=batch_size, eval_batch_size=batch_size, device=str(device),
                         precision=precision, seed=0, compile=compile,
                         model_config=model_config or {})
    memory = PeakMemory(device)
    memory.reset()
    trainer = Trainer(config, train, test)
    epochs = [e for e in trainer.events() if isinstance(e, EpochResult)]
    return {"images_per_second": max(e.images_per_second for e in epochs[1:]),
            "images": steps * batch_size, "precision": trainer.precision,
            "first_epoch_seconds": epochs[0].seconds, "peak_memory_bytes": memory.read()}


def reference_throughput(train, device, batch_size: int, steps: int) -> dict:
    """The straightforward formulation in a plain loop: batches prepared on the host and
    copied, the loss read back every step, fp32, Adam with default settings. The fastest of
    ``steps`` timed steps counts (conservative: capsviewer's figure is an epoch's mean)."""
    memory = PeakMemory(device)
    memory.reset()
    torch.manual_seed(0)
    model = build_model("capsnet").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.96 ** (1 / 2000))
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(train), generator=generator)

    def step(k: int) -> None:
        index = order[k * batch_size:(k + 1) * batch_size]
        x = to_float(random_shift(train.images[index], 2, generator)).to(device)
        y = train.labels[index].to(device)
        output = reference_forward(model, x, y)
        loss = model.loss(output, x, y).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss.item(), (output.scores.argmax(1) == y).sum().item()

    step(0)  # warm-up
    times = []
    for k in range(1, steps + 1):
        sync(device)
        start = time.perf_counter()
        step(k)
        sync(device)
        times.append(time.perf_counter() - start)
    return {"images_per_second": batch_size / min(times), "images": steps * batch_size,
            "precision": "fp32", "peak_memory_bytes": memory.read()}


# -- evaluation ---------------------------------------------------------------------------------
def evaluation_throughput(test: ImageSet, device, count: int, batch_size: int,
                          precision: str | None, model_config: dict | None = None) -> dict:
    """evaluate() over ``count`` test images; ``precision`` None: the reference formulation."""
    torch.manual_seed(0)
    model = build_model("capsnet", model_config).to(device).eval()
    data = test.subset(count)
    if precision is None:
        def run():
            with torch.no_grad():
                for start in range(0, count, batch_size):
                    x = to_float(data.images[start:start + batch_size]).to(device)
                    y = data.labels[start:start + batch_size].to(device)
                    output = reference_forward(model, x, y)
                    model.loss(output, x, y).total.item()
    else:
        precision = resolve_precision(precision, device)
        if precision == "bf16":
            model.to(memory_format=torch.channels_last)

        def run():
            evaluate(model, data, device, batch_size, precision=precision)

    warm = data.subset(min(batch_size, count))
    evaluate(model, warm, device, batch_size)  # kernel selection
    memory = PeakMemory(device)
    memory.reset()
    sync(device)
    start = time.perf_counter()
    run()
    sync(device)
    seconds = time.perf_counter() - start
    return {"images_per_second": count / seconds, "images": count,
            "precision": precision or "fp32", "peak_memory_bytes": memory.read()}


# -- interactive --------------------------------------------------------------------------------
def trained_or_untrained(architecture: str, device: torch.device):
    """The checkpoint the app would open ($CAPSVIEWER_MODELS, the shipped models, …), else an untrained
    model. Timings do not depend on the weights except the fast sweep's, which redoes
    near-ties in fp32, and an untrained model's answers are all near-ties."""
    from capsviewer.training import load_checkpoint
    from capsviewer.training.model_files import find_models

    path = find_models().get(architecture)
    if path is not None:
        print(f"interactive figures: {architecture} from {path}")
        return load_checkpoint(path, device).model.eval()
    print(f"interactive figures: untrained {architecture} (no checkpoint found)")
    torch.manual_seed(0)
    return build_model(architecture).to(device).eval()


def interactive(test: ImageSet, device: torch.device, repeats: int) -> dict:
    """The analysis functions the app calls, on test image 0, as the app calls them (fp32);
    the rotation sweep also as the app runs it where the hardware has bf16 (``fast``: bf16
    convolutions, near-ties redone in fp32)."""
    from capsviewer.analysis.inspection import inspect_capsnet, inspect_cnn
    from capsviewer.analysis.pose import perturbation_grid, reconstruct
    from capsviewer.analysis.rotation import DEFAULT_ANGLES, rotation_sweep

    capsnet, cnn = (trained_or_untrained(name, device) for name in ("capsnet", "cnn"))
    image = test.images[0, 0].numpy()
    pose = inspect_capsnet(capsnet, image).poses[0]
    sweeps = max(10, repeats // 2)
    # The fast sweep's time depends on the digit (near-ties are redone in fp32): every sweep
    # takes the next of the first 10 test digits.
    digits = itertools.cycle([test.images[i, 0].numpy() for i in range(min(10, len(test)))])

    def sweep(**options):
        return lambda: rotation_sweep(capsnet, cnn, next(digits), DEFAULT_ANGLES, **options)

    figures = {
        "analysis_capsnet_trace": median_ms(lambda: inspect_capsnet(capsnet, image), repeats,
                                            device),
        "analysis_both_models": median_ms(
            lambda: (inspect_capsnet(capsnet, image), inspect_cnn(cnn, image)), repeats, device),
        "decoder_call": median_ms(lambda: reconstruct(capsnet, pose, 0), repeats * 2, device),
        "perturbation_grid_16x11": median_ms(lambda: perturbation_grid(capsnet, pose, 0),
                                             repeats, device),
        "rotation_sweep_72": median_ms(sweep(), sweeps, device),
    }
    if native_bf16(device):
        figures["rotation_sweep_72_fast"] = median_ms(sweep(fast=True), sweeps, device)
    return figures


# -- whole-epoch and accuracy runs (GPU figures) -------------------------------------------------
def epoch_runs(train, test, device, args) -> dict:
    """Train on all of MNIST; per epoch the training seconds (test evaluation excluded) and
    the test accuracy; with --to-accuracy, the training time until it is reached."""
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                         learning_rate=args.lr, device=str(device), precision=args.precision,
                         compile=args.compile, seed=args.seed, subset=args.subset,
                         test_subset=args.test_subset)
    trainer = Trainer(config, train, test)
    epochs, reached = [], None
    for event in trainer.events():
        if isinstance(event, EpochResult):
            epochs.append({"epoch": event.epoch, "seconds": event.seconds,
                           "images_per_second": event.images_per_second,
                           "test_accuracy": event.test_accuracy})
            print(f"  epoch {event.epoch}: {event.seconds:.2f} s training "
                  f"({event.images_per_second:.0f} img/s), test accuracy "
                  f"{event.test_accuracy:.2%}", flush=True)
            if args.to_accuracy and event.test_accuracy >= args.to_accuracy and reached is None:
                reached = sum(e["seconds"] for e in epochs)
                trainer.cancel()
    return {"batch_size": args.batch_size, "precision": trainer.precision,
            "compile": args.compile, "epochs": epochs, "target": args.to_accuracy,
            "seconds_to_target": reached}


def accuracy_check(train, test, device, args) -> dict:
    """The fast path and the plain fp32 path, same seed and epochs: test accuracies."""
    results = {}
    for precision in ("auto", "fp32"):
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                             learning_rate=args.lr, subset=args.subset,
                             test_subset=args.test_subset, device=str(device),
                             precision=precision, seed=args.seed)
        trainer = Trainer(config, train, test)
        finished = trainer.run()
        results[trainer.precision if precision == "auto" else "fp32"] = [
            {"epoch": e.epoch, "test_accuracy": e.test_accuracy, "train_loss": e.train_loss,
             "seconds": e.seconds} for e in finished.history]
        last = finished.history[-1]
        print(f"  {precision} ({trainer.precision}): test accuracy {last.test_accuracy:.2%}, "
              f"train loss {last.train_loss:.4f}, {sum(e.seconds for e in finished.history):.1f} s",
              flush=True)
    return results


# -- report -------------------------------------------------------------------------------------
def mib(value: int | None) -> str:
    return "–" if value is None else f"{value / 2**20:.0f}"


def throughput_row(label: str, figures: dict) -> str:
    fast, plain, ref = figures["capsviewer"], figures["capsviewer_fp32"], figures.get("reference")
    cells = [label, f"{fast['images_per_second']:.0f} ({fast['precision']})",
             f"{plain['images_per_second']:.0f}",
             f"{ref['images_per_second']:.1f}" if ref else "–",
             f"{fast['images_per_second'] / ref['images_per_second']:.1f}×" if ref else "–",
             f"{plain['images_per_second'] / ref['images_per_second']:.1f}×" if ref else "–",
             " / ".join(mib(f["peak_memory_bytes"]) if f else "–" for f in (fast, plain, ref))]
    return "| " + " | ".join(cells) + " |"


def print_tables(report: dict) -> None:
    m = report["machine"]
    where = m.get("gpu") or f"{m['cpu']}, {m['torch_threads']} threads"
    print(f"\ncapsviewer speed: {where}; torch {m['torch']}; device {m['device']}; "
          f"auto precision {m['precision_auto']}; data: {report['data']}")
    header = ("| {} | capsviewer img/s | capsviewer fp32 img/s | reference img/s | × reference "
              "| fp32 × reference | peak MiB (capsviewer / fp32 / reference) |\n"
              "| --- | --- | --- | --- | --- | --- | --- |")
    if "training" in report:
        print("\n" + header.format("training step"))
        for row in report["training"]:
            print(throughput_row(f"batch {row['batch_size']}", row))
    if "evaluation" in report:
        print("\n" + header.format("evaluation"))
        e = report["evaluation"]
        print(throughput_row(f"batch {e['batch_size']}", e))
    if "interactive" in report:
        names = {"analysis_capsnet_trace": "one-image analysis: CapsNet, full routing trace",
                 "analysis_both_models": "one-image analysis: CapsNet with trace + CNN",
                 "decoder_call": "decoder call (one pose)",
                 "perturbation_grid_16x11": "pose-perturbation grid, 16×11 decodes",
                 "rotation_sweep_72": "rotation sweep, 72 angles, CapsNet + CNN (fp32)",
                 "rotation_sweep_72_fast":
                     "rotation sweep, as the app runs it (bf16, near-ties in fp32)",
}
        print("\n| interactive | median ms | min ms | runs |\n| --- | --- | --- | --- |")
        for key, value in report["interactive"].items():
            print(f"| {names[key]} | {value['median_ms']:.2f} | {value['min_ms']:.2f} "
                  f"| {value['runs']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-root", default=os.environ.get("CAPSVIEWER_DATA"))
    parser.add_argument("--batch-sizes", type=int, nargs="+",
                        help="training batch sizes (default: 32 128 on CPUs, 128 512 1024 on GPUs)")
    parser.add_argument("--steps", type=int, help="timed steps per batch size (default: by device)")
    parser.add_argument("--eval-images", type=int, help="test images per evaluation figure")
    parser.add_argument("--skip-reference", action="store_true",
                        help="leave out the straightforward formulation (it is slow)")
    parser.add_argument("--only", choices=["training", "evaluation", "interactive"], nargs="+")
    parser.add_argument("--repeats", type=int, default=20, help="runs per interactive figure")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    runs = parser.add_argument_group("whole-epoch runs (instead of the default run)")
    runs.add_argument("--epoch", action="store_true", help="train on all of MNIST, time epochs")
    runs.add_argument("--to-accuracy", type=float, help="train until this test accuracy")
    runs.add_argument("--accuracy-check", action="store_true",
                      help="fast path vs plain fp32, same seed and epochs")
    runs.add_argument("--epochs", type=int, default=2)
    runs.add_argument("--batch-size", type=int, default=128)
    runs.add_argument("--lr", type=float, default=1e-3)
    runs.add_argument("--subset", type=int, help="training images (default: all)")
    runs.add_argument("--test-subset", type=int, help="test images (default: all)")
    runs.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    runs.add_argument("--compile", action="store_true")
    runs.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = select_device(args.device)
    train, test, data = datasets(args.data_root)
    report: dict = {"machine": machine(device), "data": data}
    gpu = device.type == "cuda"
    if args.epoch or args.to_accuracy:
        print(f"whole-epoch run on {report['machine'].get('gpu', device)}", flush=True)
        report["epoch_runs"] = epoch_runs(train, test, device, args)
    elif args.accuracy_check:
        print(f"accuracy check on {report['machine'].get('gpu', device)}", flush=True)
        report["accuracy_check"] = accuracy_check(train, test, device, args)
    else:
        only = set(args.only or ["training", "evaluation", "interactive"])
        sizes = args.batch_sizes or ([128, 512, 1024] if gpu else [32, 128])
        # Interactive figures first: after the reference's gigabytes of temporaries the
        # allocator's state slows small calls down measurably.
        if "interactive" in only:
            print("interactive…", file=sys.stderr, flush=True)
            report["interactive"] = interactive(test, device, args.repeats)
        if "evaluation" in only:
            print("evaluation…", file=sys.stderr, flush=True)
            count = args.eval_images or (10000 if gpu else 1000)
            size = 1000 if gpu else 250
            e = {"batch_size": size,
                 "capsviewer": evaluation_throughput(test, device, count, size, "auto"),
                 "capsviewer_fp32": evaluation_throughput(test, device, count, size, "fp32")}
            if not args.skip_reference:
                e["reference"] = evaluation_throughput(test, device, count // 2 if not gpu
                                                       else count, size, None)
            report["evaluation"] = e
        if "training" in only:
            report["training"] = []
            for size in sizes:
                steps = args.steps or (max(20, math.ceil(20000 / size)) if gpu else
                                       max(4, math.ceil(768 / size)))
                print(f"training, batch {size}…", file=sys.stderr, flush=True)
                row = {"batch_size": size,
                       "capsviewer": trainer_throughput(train, test, device, size, steps, "auto"),
                       "capsviewer_fp32": trainer_throughput(train, test, device, size, steps,
                                                             "fp32")}
                if not args.skip_reference:
                    try:
                        row["reference"] = reference_throughput(
                            train, device, size, max(2, steps // 4) if not gpu else steps)
                        row["ratio_to_reference"] = (row["capsviewer"]["images_per_second"]
                                                     / row["reference"]["images_per_second"])
                    except torch.OutOfMemoryError:  # tiling W costs B × 5.9 MB per iteration
                        row["reference_out_of_memory"] = True
                        if gpu:
                            torch.cuda.empty_cache()
                report["training"].append(row)
        print_tables(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

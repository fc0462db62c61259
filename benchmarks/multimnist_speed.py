"""MultiMNIST training speed on this machine: one training step of the 36×36 CapsNet and the
baseline CNNs, against the 28×28 MNIST CapsNet, and what that buys in an hour.

    python benchmarks/multimnist_speed.py [--threads 2] [--batch-sizes 64 128] [--steps 5]

A step is what the trainer does per batch (without the trainer, whose MultiMNIST integration
comes later): compose the pairs on the fly (MNIST: random 2-pixel shifts), uint8 → float,
forward under the trainer's precision (``auto``: bf16 convolutions where the CPU has native
bf16, channels-last weights), loss, backward, fused Adam, learning-rate step, count correct.
Images/s is the batch size over the median of ``--steps`` timed steps after two warm-up steps,
the models taking turns step by step (a changing load hits them alike, so the ratios to the
MNIST CapsNet hold on a busy machine); the pair composition alone is timed too. Untrained
models (timing does not depend on the weights).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from capsviewer.data import load_dataset, random_shift, to_float  # noqa: E402
from capsviewer.data.multimnist import compose_pairs, draw_pairs  # noqa: E402
from capsviewer.models import MULTIMNIST_MODELS, build_model  # noqa: E402
from capsviewer.training.devices import autocast, resolve_precision  # noqa: E402
from capsviewer.training.metrics import count_correct  # noqa: E402

MODELS = {  # label: (architecture, config, MultiMNIST?)
    "CapsNet 28×28 (MNIST)": ("capsnet", {}, False),
    "CapsNet 36×36 (MultiMNIST)": (*MULTIMNIST_MODELS["capsnet"], True),
    "CNN 36×36, authors' baseline": (*MULTIMNIST_MODELS["cnn"], True),
    "CNN 36×36, shipped CNN's layers": (*MULTIMNIST_MODELS["cnn-small"], True),
}


class Run:
    """One model training on its own stream of batches, a step at a time."""

    def __init__(self, architecture, config, multi, train, batch_size, precision):
        torch.manual_seed(0)
        self.model = build_model(architecture, config)
        if precision == "bf16":
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, fused=True)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, 0.96 ** (1 / 2000))
        self.generator = torch.Generator().manual_seed(0)
        self.order = torch.randperm(len(train), generator=self.generator)
        self.plan = draw_pairs(train.labels, self.order, self.generator) if multi else None
        self.train, self.batch_size, self.precision, self.steps = train, batch_size, precision, 0
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def step(self, timed: bool) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        window = slice(self.steps * self.batch_size, (self.steps + 1) * self.batch_size)
        if self.plan is not None:
            batch = compose_pairs(self.train.images, self.train.labels, self.plan[window])
            x, y, targets = to_float(batch.images), batch.labels, to_float(batch.digits)
        else:
            x = to_float(random_shift(self.train.images[self.order[window]], 2, self.generator))
            y = self.train.labels[self.order[window]]
            targets = x
        with autocast(torch.device("cpu"), self.precision):
            output = self.model(x, y)
        loss = self.model.loss(output, targets, y).total
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        count_correct(output.scores.detach(), y).item()
        self.steps += 1
        if timed:
            self.wall.append(time.perf_counter() - wall)
            self.cpu.append(time.process_time() - cpu)


def compose_seconds(train, batch_size, repeats=50):
    generator = torch.Generator().manual_seed(0)
    plan = draw_pairs(train.labels, torch.randperm(len(train), generator=generator), generator)
    times = []
    for k in range(repeats):
        start = time.perf_counter()
        batch = compose_pairs(train.images, train.labels, plan[k * batch_size:(k + 1) * batch_size])
        to_float(batch.images), to_float(batch.digits)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    draw_pairs(train.labels, torch.randperm(len(train), generator=generator), generator)
    return statistics.median(times), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("CAPSVIEWER_DATA"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per figure")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--only", nargs="+", choices=list(MODELS), help="these models only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    precision = resolve_precision(args.precision, torch.device("cpu"))
    train = load_dataset("mnist", True, args.data_root, download=False)
    print(f"torch {torch.__version__}, {args.threads} threads, precision {precision}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for batch_size in args.batch_sizes:
        per_batch, epoch_plan = compose_seconds(train, batch_size)
        print(f"pair composition, batch {batch_size}: {per_batch * 1e3:.2f} ms "
              f"({batch_size / per_batch:,.0f} pairs/s); an epoch's draw: {epoch_plan * 1e3:.0f} ms")
    labels = [label for label in MODELS if not args.only or label in args.only]
    runs = {(label, b): Run(*MODELS[label], train, b, precision)
            for label in labels for b in args.batch_sizes}
    # Round robin, one step of each model per round: a change in the machine's load over the
    # run hits every model alike, so the ratios hold even where the absolute figures drift.
    for round_ in range(args.steps + 2):
        for run in runs.values():
            run.step(timed=round_ >= 2)
    print("\nwall: median seconds per step; CPU: median process CPU seconds per step (both "
          "threads together)\n")
    print("| model | batch | s/step | images/s | × CapsNet 28×28 | CPU s/step "
          "| pairs in 1 h | 2 h | 4 h |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (label, batch_size), run in runs.items():
        seconds = statistics.median(run.wall)
        rate = batch_size / seconds
        base = runs.get((next(iter(MODELS)), batch_size))
        ratio = f"{statistics.median(base.wall) / seconds:.2f}" if base else "–"
        hours = " | ".join(f"{rate * 3600 * h / 1e6:.2f} M" for h in (1, 2, 4))
        print(f"| {label} | {batch_size} | {seconds:.3f} | {rate:.0f} | {ratio} "
              f"| {statistics.median(run.cpu):.3f} | {hours} |", flush=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""Everything issue 27 asks of one GPU, in one call: CUDA correctness, speed, time to 99.5 %,
and the paper's recipe on a longer schedule under the rule written below (RULE).

    python3 benchmarks/gpu_run.py --data-root .data --budget 420        # into $OUT, or --out DIR
    python benchmarks/gpu_run.py --dry-run --data-root ../shared/data --out /tmp/gpu-run

benchmarks/README.md gives the device command and what it carries.

Steps (``--steps``, default all):

1. correctness: ``pytest tests/test_cuda.py`` (CUDA against the CPU, bf16 against fp32, the
   trainer on CUDA) and a short training run that must lower the loss with no NaN;
2. speed: training throughput at batch 128, 512 and 1024, eager and ``torch.compile`` (each mode
   in its own process, with a time limit), peak memory, evaluation throughput, and one full
   60,000-image epoch (test evaluation excluded);
3. time to 99.5 % test accuracy from scratch;
4. with the time left: RULE's runs, their averaged weights measured, and RULE's verdict.

Figures go to ``gpu-run.json`` in the output folder (rewritten after every step, so a run cut
short keeps what it measured), each as ``{"value": …, "unit": …}``, with the GPU, torch, CUDA
and cuDNN versions; the pytest log beside it, and, only where RULE says ship, the candidate
checkpoint (fp16). ``--dry-run`` does all of it on the CPU at tiny sizes (torch.compile is
skipped there, with the reason recorded), in well under a minute: tests/test_gpu_run.py runs it.
The data root holds MNIST/raw, as the four IDX files or their .gz (unpacked on first use).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import capsviewer  # noqa: E402
from capsviewer.data import load_dataset  # noqa: E402
from capsviewer.training import (  # noqa: E402
    BatchProgress,
    EpochResult,
    TrainConfig,
    Trainer,
    evaluate,
    save_checkpoint,
    select_device,
)
from capsviewer.training.averaging import average_checkpoints, round_trip  # noqa: E402
from capsviewer.training.devices import resolve_precision  # noqa: E402
from speed import PeakMemory, evaluation_throughput, machine, trainer_throughput  # noqa: E402

REPORT = "gpu-run.json"
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TARGET = 0.995  # step 3
SHIPPED = {"file": "capsviewer/resources/models/capsnet-mnist.safetensors", "test_accuracy": 0.9962, "correct": 9962}

# The rule for step 4, written before any of its runs; the script applies it as it stands.
RULE = {
    "recipe": "the paper's CapsNet (3 routing iterations, decoder, reconstruction x0.0005) "
              "trained as the authors' TensorFlow code does: Adam, learning rate 1e-3 decayed "
              "x0.96 every 2,000 steps, batch 128, random shifts up to 2 px; bf16 convolutions "
              "where the GPU has them; seed 11 for every run",
    "variants": [  # run in this order; the first that passes the bar is the one to ship
        {"name": "paper", "model_config": {}, "time_share": 0.5,
         "why": "the recipe itself, on a longer schedule than the CPU could afford"},
        {"name": "reconstruction-x20", "model_config": {"reconstruction_weight": 0.01},
         "time_share": 0.25,
         "why": "the authors' code's loss balance: its margin loss is a mean over batch and "
                "classes, halved (1/20 of the paper's sum), beside the same 0.0005 x summed "
                "squared error; Adam ignores the loss's scale, so this is the paper's loss "
                "with reconstruction weighted 20x (0.01)"},
        {"name": "bias-on-s_j", "model_config": {"routing_bias": 0.1}, "time_share": 0.25,
         "why": "the authors' code adds a learned bias b_j (initialised to 0.1) to s_j in "
                "every routing iteration"},
    ],
    "schedule": "the time left when step 4 starts, less a reserve, is shared among the "
                "variants by time_share; each variant's number of epochs E is fixed before "
                "its run from the epoch time measured in step 3 (training plus test "
                "evaluation, +10 %), and no run is extended or cut by its results; a run the "
                "clock stops before E is incomplete and cannot ship",
    "averaged": "the weights of the last ceil(E/5) epochs of the run (at least 2; 20 % of "
                "the schedule), a uniform mean as `capsviewer average` takes it, measured once "
                "on all 10,000 test images in fp32 after rounding to fp16 as it would ship",
    "bar": "ship only a complete run whose averaged model scores more than the shipped "
           "CapsNet's 99.62 % (at least 9,963 of 10,000; error under 0.38 %); no single "
           "epochs, no other windows, no other seeds",
    "ship": "the script writes the candidate (fp16) beside its report and never touches "
            "the shipped models; a later session checks it with `capsviewer eval` and ships it",
    "bar_accuracy": 0.9962,  # strictly above
    "seed": 11,
    "batch_size": 128,
    "epoch_time_margin": 1.1,
    "startup_seconds": 5.0,  # per run: model, first-epoch kernel selection
    "minimum_epochs": 3,
}


@dataclasses.dataclass(frozen=True)
class Sizes:
    model_config: dict
    batch_sizes: tuple[int, ...]
    throughput_steps: int  # batches per timed epoch (capped by the data set)
    eval_batch_sizes: tuple[int, ...]
    eval_images: int
    check_subset: int  # step 1's training run
    check_batch: int
    train_subset: int | None  # None: all 60,000 images
    test_subset: int | None  # None: all 10,000
    target: float
    max_epochs_to_target: int
    max_long_epochs: int


FULL = Sizes({}, (128, 512, 1024), 50, (500, 1000), 10000, 6400, 128, None, None, TARGET, 40,
             10_000)
DRY = Sizes({"conv_channels": 16, "primary_maps": 4, "decoder_hidden": [32, 64]}, (16, 32, 64),
            3, (100,), 200, 320, 16, 256, 200, 0.3, 3, 3)


def figure(value, unit: str) -> dict:
    return {"value": value, "unit": unit}


def mib(count: int | None) -> dict | None:
    return None if count is None else figure(round(count / 2**20, 1), "MiB")


# -- set-up -------------------------------------------------------------------------------------
def unpack_mnist(root: Path) -> None:
    """Unpack MNIST/raw/*.gz where the IDX file itself is missing (the .gz files travel to the
    GPU machine: the four IDX files with the repository exceed what a call may carry)."""
    raw = root / "MNIST" / "raw"
    for name in MNIST_FILES:
        target, packed = raw / name, raw / f"{name}.gz"
        if not target.exists() and packed.exists():
            partial = target.with_suffix(".part")
            with gzip.open(packed, "rb") as source, open(partial, "wb") as sink:
                shutil.copyfileobj(source, sink)
            partial.replace(target)


def environment(device: torch.device) -> dict:
    info = machine(device)
    info.setdefault("gpu", None)
    info.setdefault("cuda", None)
    info.setdefault("cudnn", None)
    info["precision"] = resolve_precision("auto", device)
    info["capsviewer"] = capsviewer.__version__
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, text=True,
                                            capture_output=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


def run_child(command: list[str], timeout: float, log: Path | None = None,
              env: dict | None = None) -> tuple[int | None, float]:
    """Run ``command`` in its own process group, its output into ``log`` (else ours); on
    timeout kill the group (a compiler's workers too). Returns (exit status, None on timeout;
    seconds)."""
    started = time.monotonic()
    with open(log, "w") if log is not None else open(os.devnull) as sink:
        process = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True,
                                   stdout=sink if log is not None else None,
                                   stderr=subprocess.STDOUT if log is not None else None)
        try:
            status = process.wait(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status = None
    return status, time.monotonic() - started


# -- training with a clock ----------------------------------------------------------------------
def epoch_record(event: EpochResult, wall: float) -> dict:
    return {"epoch": event.epoch,
            "seconds": figure(round(event.seconds, 3), "s"),
            "wall_seconds": figure(round(wall, 3), "s"),
            "images_per_second": figure(round(event.images_per_second, 1), "images/s"),
            "train_loss": event.train_loss,
            "test_loss": event.test_loss,
            "test_accuracy": figure(round(100 * event.test_accuracy, 2), "%")}


def train(config: TrainConfig, data, deadline: float, on_epoch=None) -> tuple[Trainer, dict]:
    """Run a Trainer until it finishes, ``on_epoch(event, trainer)`` returns True, or the clock
    passes ``deadline`` (time.monotonic()); the events are closed either way."""
    started = time.monotonic()
    trainer = Trainer(config, *data)
    losses, epochs, stopped = [], [], None
    events = trainer.events()
    try:
        for event in events:
            if isinstance(event, BatchProgress):
                losses.append(event.loss)
            elif isinstance(event, EpochResult):
                epochs.append(epoch_record(event, time.monotonic() - started))
                if on_epoch is not None and on_epoch(event, trainer):
                    stopped = "done"
                    break
            if time.monotonic() > deadline:
                stopped = "time"
                break
    finally:
        events.close()
    return trainer, {"losses": losses, "epochs": epochs, "stopped_by_clock": stopped == "time",
                     "wall_seconds": figure(round(time.monotonic() - started, 3), "s")}


def steady_epoch_wall(epochs: list[dict]) -> float | None:
    """Median wall time of one epoch (training plus evaluation), the first (warm-up) left out."""
    walls = [e["wall_seconds"]["value"] for e in epochs]
    steps = [b - a for a, b in zip(walls, walls[1:])]
    return statistics.median(steps) if steps else None


# -- step 1 -------------------------------------------------------------------------------------
def step_correctness(ctx) -> dict:
    env = {**os.environ, "CAPSVIEWER_DATA": str(ctx.data_root),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    # pytest-qt is absent on the GPU machine: block it here too, and do not let its ini
    # options (unknown without it) turn into errors under filterwarnings = error.
    command = [sys.executable, "-m", "pytest", "tests/test_cuda.py", "-q", "-rs",
               "-p", "no:cacheprovider", "-p", "no:pytest-qt",
               "-W", "ignore::pytest.PytestConfigWarning"]
    log = ctx.out / "pytest.txt"
    status, seconds = run_child(command, ctx.cap(0.2, 150), log, env)
    output = log.read_text()
    print(output[-3000:], end="", flush=True)
    counts = {kind: int(n) for n, kind in
              re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)", output)}
    pytest_result = {"command": " ".join(command[1:]), "exit_status": status,
                     "timed_out": status is None, "counts": counts,
                     "seconds": figure(round(seconds, 2), "s"), "log": "pytest.txt"}

    s = ctx.sizes
    config = TrainConfig(model_config=s.model_config, epochs=1, batch_size=s.check_batch,
                         subset=s.check_subset, test_subset=1000, device=str(ctx.device),
                         progress_interval=0, seed=0)
    trainer, run = train(config, ctx.data, ctx.deadline)
    losses = run["losses"]
    head, tail = losses[:5], losses[-5:]
    finite = all(math.isfinite(x) for x in losses) and all(
        bool(torch.isfinite(p).all()) for p in trainer.model.parameters())
    check = {"device": str(trainer.device), "precision": trainer.precision,
             "batch_size": s.check_batch, "images": s.check_subset, "batches": len(losses),
             "first_losses": head, "last_losses": tail,
             "loss_fell": bool(losses) and statistics.mean(tail) < statistics.mean(head),
             "finite": finite,
             "test_accuracy": run["epochs"][-1]["test_accuracy"] if run["epochs"] else None}
    passed = status == 0 and check["loss_fell"] and finite
    return {"status": "ok" if passed else "failed", "pytest": pytest_result,
            "training_check": check}


# -- step 2 -------------------------------------------------------------------------------------
def step_speed(ctx) -> dict:
    cap_end = time.monotonic() + ctx.cap(0.35, 200)
    result = {"status": "ok", "training": [], "full_epoch": [], "evaluation": None}
    for mode in ("eager", "compile"):
        if mode == "compile" and ctx.device.type != "cuda":
            reason = ("no CUDA GPU: torch.compile is measured on GPUs only (on a CPU it "
                      "compiles for minutes; benchmarks/README.md)")
            result["compile_skipped"] = reason
            result["training"] += [{"mode": mode, "batch_size": b, "status": "skipped",
                                    "reason": reason} for b in ctx.sizes.batch_sizes]
            continue
        limit = cap_end - time.monotonic() if mode == "compile" else min(
            120, 0.5 * (cap_end - time.monotonic()))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "worker.json"
            command = [sys.executable, __file__, "--worker", mode, "--result", str(path),
                       "--data-root", str(ctx.data_root)] + (["--dry-run"] if ctx.dry_run else [])
            status, seconds = run_child(command, limit)
            part = json.loads(path.read_text()) if path.exists() else {}
        done = {row["batch_size"] for row in part.get("training", [])}
        why = "timed out" if status is None else f"worker exited with status {status}"
        missing = [{"mode": mode, "batch_size": b, "status": "failed",
                    "reason": f"{why} after {seconds:.0f} s (limit {limit:.0f} s)"}
                   for b in ctx.sizes.batch_sizes if b not in done]
        result["training"] += part.get("training", []) + missing
        result["full_epoch"] += part.get("full_epoch", [])
        if mode == "eager":
            result["evaluation"] = part.get("evaluation")
        result[f"{mode}_worker"] = {"exit_status": status,
                                    "seconds": figure(round(seconds, 1), "s"),
                                    "limit": figure(round(limit, 1), "s")}
        if missing or status != 0:
            result["status"] = "partial"
    return result


def worker(args) -> int:
    """One step-2 mode in its own process (a compile that hangs cannot stall the run)."""
    sizes = DRY if args.dry_run else FULL
    device = select_device("cpu" if args.dry_run else "auto")
    unpack_mnist(Path(args.data_root))
    data = (load_dataset("mnist", True, args.data_root, download=False),
            load_dataset("mnist", False, args.data_root, download=False))
    compiled = args.worker == "compile"
    report = {"training": [], "full_epoch": [], "evaluation": None}

    def save():
        args.result.write_text(json.dumps(report, indent=1))

    count = sizes.train_subset or len(data[0])
    for batch in sizes.batch_sizes:
        steps = min(sizes.throughput_steps, count // batch)
        row = {"mode": args.worker, "batch_size": batch}
        try:
            t = trainer_throughput(*data, device, batch, steps, "auto", compile=compiled,
                                   model_config=sizes.model_config)
            row.update(status="measured", precision=t["precision"], images=t["images"],
                       images_per_second=figure(round(t["images_per_second"], 1), "images/s"),
                       first_epoch_seconds=figure(round(t["first_epoch_seconds"], 2), "s"),
                       peak_memory=mib(t["peak_memory_bytes"]))
        except Exception as error:  # noqa: BLE001 - recorded, the other sizes still run
            row.update(status="failed", reason=f"{type(error).__name__}: {error}"[:500])
        print(f"[{args.worker}] batch {batch}: {row.get('images_per_second', row.get('reason'))}",
              flush=True)
        report["training"].append(row)
        save()
    measured = [r for r in report["training"] if r["status"] == "measured"]
    if measured:
        best = max(measured, key=lambda r: r["images_per_second"]["value"])["batch_size"]
        for batch in sorted({RULE["batch_size"] if not args.dry_run else sizes.batch_sizes[0],
                             best}):
            report["full_epoch"].append(full_epoch(data, device, batch, compiled, sizes))
            save()
    if not compiled:
        report["evaluation"] = []
        for batch in sizes.eval_batch_sizes:
            e = evaluation_throughput(data[1], device, sizes.eval_images, batch, "auto",
                                      sizes.model_config)
            report["evaluation"].append(
                {"batch_size": batch, "images": e["images"], "precision": e["precision"],
                 "images_per_second": figure(round(e["images_per_second"], 1), "images/s"),
                 "peak_memory": mib(e["peak_memory_bytes"])})
            save()
    return 0


def full_epoch(data, device, batch: int, compiled: bool, sizes: Sizes) -> dict:
    """Two epochs on the whole training set; the second's training time (test evaluation
    excluded; the first pays for kernel selection and compiling)."""
    config = TrainConfig(model_config=sizes.model_config, epochs=2, batch_size=batch,
                         subset=sizes.train_subset, test_subset=1000, device=str(device),
                         compile=compiled, seed=0)
    memory = PeakMemory(device)
    memory.reset()
    try:
        trainer, run = train(config, data, math.inf)
    except Exception as error:  # noqa: BLE001
        return {"mode": "compile" if compiled else "eager", "batch_size": batch,
                "status": "failed", "reason": f"{type(error).__name__}: {error}"[:500]}
    first, second = run["epochs"]
    return {"mode": "compile" if compiled else "eager", "batch_size": batch, "status": "measured",
            "precision": trainer.precision, "images": sizes.train_subset or len(data[0]),
            "seconds": second["seconds"], "first_epoch_seconds": first["seconds"],
            "images_per_second": second["images_per_second"], "peak_memory": mib(memory.read())}


# -- step 3 -------------------------------------------------------------------------------------
def step_time_to_accuracy(ctx) -> dict:
    """The shipped model's schedule (x0.9 per epoch), batch 128, from scratch, until the test
    accuracy first reaches the target; training time alone, and wall time with evaluations."""
    s = ctx.sizes
    batch = RULE["batch_size"] if not ctx.dry_run else s.check_batch
    steps_per_epoch = math.ceil((s.train_subset or len(ctx.data[0])) / batch)
    config = TrainConfig(model_config=s.model_config, epochs=s.max_epochs_to_target,
                         batch_size=batch, learning_rate=1e-3, lr_decay=0.9,
                         decay_steps=steps_per_epoch, subset=s.train_subset,
                         test_subset=s.test_subset, device=str(ctx.device), seed=0)
    trainer, run = train(config, ctx.data, time.monotonic() + ctx.cap(0.15, 75),
                         lambda event, _: event.test_accuracy >= s.target)
    reached = next((e for e in run["epochs"] if e["test_accuracy"]["value"] >= 100 * s.target),
                   None)
    upto = run["epochs"][:reached["epoch"]] if reached else run["epochs"]
    ctx.epoch_wall = steady_epoch_wall(run["epochs"])
    return {"status": "ok" if reached else "not reached",
            "target": figure(100 * s.target, "%"), "reached": reached is not None,
            "epoch": reached["epoch"] if reached else None,
            "training_seconds": figure(round(sum(e["seconds"]["value"] for e in upto), 2), "s")
            if reached else None,
            "wall_seconds": reached["wall_seconds"] if reached else None,
            "recipe": {"batch_size": batch, "learning_rate": 1e-3, "lr_decay_per_epoch": 0.9,
                       "precision": trainer.precision, "seed": 0},
            "stopped_by_clock": run["stopped_by_clock"],
            "steady_epoch_wall_seconds": figure(round(ctx.epoch_wall, 3), "s")
            if ctx.epoch_wall else None,
            "history": run["epochs"]}


# -- step 4 -------------------------------------------------------------------------------------
def step_long_schedule(ctx) -> dict:
    s = ctx.sizes
    reserve = 10.0 if ctx.dry_run else 20.0
    available = ctx.deadline - time.monotonic() - reserve
    epoch_wall = ctx.epoch_wall or ctx.fallback_epoch_wall()
    plan = []
    for variant in RULE["variants"]:
        share = available * variant["time_share"] - RULE["startup_seconds"]
        epochs = min(s.max_long_epochs,
                     int(share / (epoch_wall * RULE["epoch_time_margin"])) if epoch_wall else 0)
        plan.append({"name": variant["name"], "epochs": epochs,
                     "averaged_epochs": averaged_window(epochs),
                     "time_share": figure(round(share, 1), "s")})
    bar = 0.0 if ctx.dry_run else RULE["bar_accuracy"]
    result = {"status": "ok", "rule": RULE, "bar_applied": figure(100 * bar, "%"),
              "dry_run_note": "bar 0 so the candidate path runs" if ctx.dry_run else None,
              "epoch_wall_estimate": figure(round(epoch_wall, 3), "s") if epoch_wall else None,
              "available": figure(round(available, 1), "s"), "plan": plan, "runs": [],
              "ship": None}
    ctx.save_partial("long_schedule", result)
    for variant, planned in zip(RULE["variants"], plan):
        if planned["epochs"] < (1 if ctx.dry_run else RULE["minimum_epochs"]):
            result["runs"].append({"name": variant["name"], "status": "skipped",
                                   "reason": "not enough time for the minimum epochs"})
            continue
        run, candidate = long_run(ctx, variant, planned["epochs"], bar)
        if result["ship"] is None and run["meets_bar"]:
            result["ship"] = variant["name"]
            run["candidate"] = ctx.write_candidate(candidate, variant["name"])
        result["runs"].append(run)
        ctx.save_partial("long_schedule", result)
    if not any(r.get("status") == "complete" for r in result["runs"]):
        result["status"] = "incomplete"
    return result


@contextmanager
def no_tf32():
    """Plain fp32 on CUDA (cuDNN allows TF32 convolutions by default): the figure that decides
    shipping is the one a CPU would reproduce."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def averaged_window(epochs: int) -> list[int]:
    size = max(2, math.ceil(epochs / 5))
    return list(range(max(1, epochs - size + 1), epochs + 1))


def long_run(ctx, variant: dict, epochs: int, bar: float) -> tuple[dict, tuple | None]:
    """One variant's run, its window of epochs averaged and measured; returns the record and
    (averaged model, metadata) when there is an average to ship."""
    s = ctx.sizes
    window = averaged_window(epochs)
    config = TrainConfig(model_config={**s.model_config, **variant["model_config"]},
                         epochs=epochs, batch_size=RULE["batch_size"] if not ctx.dry_run
                         else s.check_batch, subset=s.train_subset, test_subset=s.test_subset,
                         device=str(ctx.device), seed=RULE["seed"])
    folder = Path(tempfile.mkdtemp(prefix=f"gpu-run-{variant['name']}-"))
    kept: list[Path] = []

    def keep(event: EpochResult, trainer: Trainer) -> bool:
        if event.epoch in window:
            kept.append(save_checkpoint(
                folder / f"epoch-{event.epoch:04d}.safetensors", trainer.model,
                {"epoch": event.epoch, "seed": config.seed, "dataset": {"name": "mnist"},
                 "train_config": dataclasses.asdict(config),
                 "metrics": {"test_accuracy": event.test_accuracy, "test_loss": event.test_loss}}))
        return False

    print(f"[long] {variant['name']}: {epochs} epochs, averaging {window[0]}–{window[-1]}",
          flush=True)
    try:
        trainer, run = train(config, ctx.data, ctx.deadline - 5, keep)
        complete = len(run["epochs"]) == epochs
        record = {"name": variant["name"], "model_config": config.model_config,
                  "status": "complete" if complete else "stopped by the clock",
                  "planned_epochs": epochs, "epochs_done": len(run["epochs"]),
                  "precision": trainer.precision,
                  "training_seconds": figure(round(sum(e["seconds"]["value"]
                                                       for e in run["epochs"]), 1), "s"),
                  "wall_seconds": run["wall_seconds"], "history": run["epochs"],
                  "averaged_epochs": window, "averaged": None, "meets_bar": False,
                  "candidate": None}
        candidate = None
        if complete and len(kept) == len(window):
            averaged = average_checkpoints(kept)
            model = averaged.model.to(ctx.device)
            test = ctx.data[1].subset(s.test_subset, 0)
            with no_tf32():
                fp32 = evaluate(model, test, ctx.device, 500, precision="fp32")
                round_trip(model, torch.float16)
                fp16 = evaluate(model, test, ctx.device, 500, precision="fp32")
            record["averaged"] = {
                "test_accuracy_fp32": figure(round(100 * fp32.accuracy, 2), "%"),
                "test_accuracy": figure(round(100 * fp16.accuracy, 2), "%"),
                "correct": fp16.correct, "images": fp16.count,
                "test_error": figure(round(fp16.error_percent, 2), "%"),
                "test_loss": fp16.loss}
            record["meets_bar"] = fp16.accuracy > bar
            meta = {**averaged.metadata, "metrics": {"test_accuracy": fp16.accuracy,
                                                     "test_loss": fp16.loss},
                    "gpu_run": {"rule": RULE, "variant": variant["name"],
                                "history": run["epochs"]}}
            candidate = (model.cpu(), meta)
        return record, candidate
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- the run ------------------------------------------------------------------------------------
class Run:
    def __init__(self, args):
        self.args, self.dry_run = args, args.dry_run
        self.sizes = DRY if args.dry_run else FULL
        self.started = time.monotonic()
        self.deadline = self.started + args.budget
        self.out = args.out
        self.data_root = Path(args.data_root).resolve()  # children run in the repository
        self.device = select_device("cpu" if args.dry_run else "auto")
        self.epoch_wall: float | None = None
        self.report = {
            "script": "benchmarks/gpu_run.py", "argv": sys.argv[1:], "dry_run": self.dry_run,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "budget": figure(args.budget, "s"), "environment": environment(self.device),
            "steps_run": args.steps,
            "correctness": {"status": "not run"}, "speed": {"status": "not run"},
            "time_to_accuracy": {"status": "not run"}, "long_schedule": {"status": "not run"},
            "finished": False,
        }

    def cap(self, fraction: float, most: float) -> float:
        """Seconds a step may take: a share of the budget, at most ``most``, never past the
        deadline."""
        return max(1.0, min(most, fraction * self.args.budget, self.deadline - time.monotonic()))

    def fallback_epoch_wall(self) -> float | None:
        """Step 3 did not run: one epoch from step 2's eager batch-128 throughput, plus a test
        evaluation."""
        for row in self.report["speed"].get("training", []):
            if row.get("status") == "measured" and row["mode"] == "eager" \
                    and row["batch_size"] == (RULE["batch_size"] if not self.dry_run
                                              else self.sizes.batch_sizes[0]):
                count = self.sizes.train_subset or len(self.data[0])
                return 1.5 * count / row["images_per_second"]["value"]
        return None

    def save_partial(self, key: str, value: dict) -> None:
        self.report[key] = value
        self.save()

    def save(self) -> None:
        self.report["wall_seconds"] = figure(round(time.monotonic() - self.started, 1), "s")
        partial = self.out / f"{REPORT}.part"
        partial.write_text(json.dumps(self.report, indent=1, default=str))
        partial.replace(self.out / REPORT)

    def write_candidate(self, candidate, variant: str) -> str:
        model, meta = candidate
        name = f"candidate-capsnet-{variant}.safetensors"
        save_checkpoint(self.out / name, model, meta, dtype=torch.float16)
        return name

    def execute(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        unpack_mnist(self.data_root)
        self.data = (load_dataset("mnist", True, self.data_root, download=False),
                     load_dataset("mnist", False, self.data_root, download=False))
        self.save()
        steps = {1: ("correctness", step_correctness), 2: ("speed", step_speed),
                 3: ("time_to_accuracy", step_time_to_accuracy),
                 4: ("long_schedule", step_long_schedule)}
        for number in self.args.steps:
            key, step = steps[number]
            print(f"== step {number}: {key} ({self.deadline - time.monotonic():.0f} s left)",
                  flush=True)
            begun = time.monotonic()
            try:
                result = step(self)
            except Exception as error:  # noqa: BLE001 - recorded; the next steps still run
                traceback.print_exc()
                result = {**self.report.get(key, {}), "status": "failed",
                          "error": f"{type(error).__name__}: {error}"[:1000]}
            result["seconds"] = figure(round(time.monotonic() - begun, 1), "s")
            self.save_partial(key, result)
            print(f"== step {number}: {result['status']} in {result['seconds']['value']} s",
                  flush=True)
        self.report["finished"] = True
        self.save()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("CAPSVIEWER_DATA", ".data"),
                        help="folder holding MNIST/raw (IDX files or their .gz); default "
                        "$CAPSVIEWER_DATA, else .data")
    parser.add_argument("--out", type=Path, default=os.environ.get("OUT"),
                        help="output folder (default: $OUT)")
    parser.add_argument("--budget", type=float, help="seconds for the whole run; step 4 takes "
                        "what the others leave (default: 420; dry run: 600, a cap it never nears)")
    parser.add_argument("--steps", type=lambda v: [int(x) for x in v.split(",")],
                        default=[1, 2, 3, 4], help="which steps, e.g. 2,3 (default: 1,2,3,4)")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny sizes on the CPU, every step exercised")
    parser.add_argument("--worker", choices=["eager", "compile"], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dry_run:
        torch.set_num_threads(1)  # tiny work: one thread is as fast, and robust on busy CPUs
    if args.worker:
        return worker(args)
    if args.out is None:
        parser.error("give --out, or set $OUT")
    args.out = Path(args.out)
    if args.budget is None:
        args.budget = 600.0 if args.dry_run else 420.0
    if not set(args.steps) <= {1, 2, 3, 4}:
        parser.error("--steps takes numbers from 1 to 4")
    if not args.dry_run and not torch.cuda.is_available():
        print("warning: no CUDA GPU; this measures the CPU (use --dry-run for a quick check)",
              flush=True)
    run = Run(args)
    run.execute()
    print(f"wrote {args.out / REPORT}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

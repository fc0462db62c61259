"""Development script: train every routing algorithm under one budget and regenerate the
comparison table and figure in docs/ (see docs/routing-comparison.md).

    python benchmarks/routing_comparison.py --epochs 10 --seeds 0 1 --data-root ../shared/data
    python benchmarks/routing_comparison.py --budget 24 --data-root ../shared/data  # hours
    python benchmarks/routing_comparison.py --estimate --epochs 10   # time it would take
    python benchmarks/routing_comparison.py --dry-run --out /tmp/rc   # tiny sizes, a minute
    python benchmarks/routing_comparison.py --epochs 10 --finished-only  # table of runs done

Every entry (capsviewer.analysis.routing_comparison.ENTRIES) trains with the same epochs,
seeds, batch size, learning-rate schedule and augmentation (random shifts of up to 2 px, the
trainer's); the weights after the last epoch count (CHECKPOINT_RULE, fixed here before anything
runs). ``--budget`` turns hours into that one number of epochs, from the training speed
measured on this machine before any training starts. Each run's checkpoint and figures go to
``--work`` (default runs/routing-comparison/): an interrupted comparison continues where it
stopped, and a finished run is not trained again; ``--finished-only`` tabulates the runs
finished so far and trains nothing (for a comparison spread over several sessions). The table
goes between the markers of ``--doc``, the figure and the raw figures (JSON) beside it.

Why a script and not a ``capsviewer`` sub-command: it trains a dozen models for a day to write
the project's documentation; a user who wants one model trains it with ``capsviewer train``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from capsviewer.cli import common  # noqa: E402
from capsviewer.cli.common import CommandError, write_file  # noqa: E402

PROG = "python benchmarks/routing_comparison.py"
START, END = "<!-- routing-comparison:start -->", "<!-- routing-comparison:end -->"
TRAIN_IMAGES = 60_000
# Dry run: tiny models, a few images, one epoch, one seed: every step runs, in seconds.
DRY_MODEL = {"capsnet": {"conv_channels": 16, "primary_maps": 4, "decoder_hidden": [32, 64]},
             "em-capsnet": {"conv_channels": 8, "conv2_channels": 8, "primary_types": 4},
             "efficient-capsnet": {"decoder_hidden": [32, 64]}}
DRY = {"subset": 64, "monitor_images": 16, "test_images": 32, "robustness_images": 16,
       "support_images": 8, "angles": (0, 45), "epochs": 1, "seeds": [0]}


def build_parser() -> argparse.ArgumentParser:
    from capsviewer.analysis.routing_comparison import ENTRIES

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=common.HelpFormatter)
    how_long = parser.add_mutually_exclusive_group()
    how_long.add_argument("--epochs", type=common.positive_int,
                          help="epochs for every run (default 10)")
    how_long.add_argument("--budget", type=common.number(float, 0.01), metavar="HOURS",
                          help="choose the epochs so that the whole comparison takes about "
                          "this long on this machine (measured before training)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one run per seed")
    parser.add_argument("--entries", nargs="+", choices=[e.name for e in ENTRIES],
                        help="only these entries (default: all)")
    parser.add_argument("--batch-size", type=common.positive_int, default=128)
    parser.add_argument("--subset", type=common.positive_int,
                        help="train on this many random images (default: all 60,000)")
    parser.add_argument("--monitor-images", type=common.positive_int, default=1000,
                        help="test images evaluated after each epoch (shown, never used to "
                        "choose weights)")
    parser.add_argument("--test-images", type=common.positive_int,
                        help="test images for the final accuracy (default: all 10,000)")
    parser.add_argument("--robustness-images", type=common.positive_int, default=2000,
                        help="first test images under rotation and random affine transforms")
    parser.add_argument("--support-images", type=common.positive_int, default=300,
                        help="first test images for the entropy and the dominant capsule")
    common.add_data_root(parser)
    common.add_device(parser)
    parser.add_argument("--threads", type=common.positive_int,
                        help="torch threads (default: torch's)")
    parser.add_argument("--work", type=Path, help="checkpoints and per-run results, resumable "
                        "(default: runs/routing-comparison, with --dry-run "
                        "runs/routing-comparison-dry-run)")
    parser.add_argument("--out", type=Path, help="folder for routing-comparison.png and .json "
                        "(default: docs; with --dry-run a new temporary folder)")
    parser.add_argument("--doc", type=Path, help="Markdown file whose marked section gets the "
                        "table (default: OUT/routing-comparison.md, created if missing)")
    parser.add_argument("--estimate", action="store_true",
                        help="only measure training and evaluation speed and print how long "
                        "the comparison would take")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny models, a few images, one epoch and seed: checks every step")
    parser.add_argument("--finished-only", action="store_true",
                        help="train nothing: tabulate the runs of this plan already finished in "
                        "--work, each row with the seeds it has, and say which are missing")
    parser.set_defaults(run=run, prog=PROG, interrupted="interrupted; finished runs are kept "
                        "in --work and are not trained again")
    return parser


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything fixed before training (written into every result)."""

    entries: tuple
    seeds: tuple[int, ...]
    epochs: int
    batch_size: int
    subset: int | None
    monitor_images: int
    test_images: int | None
    robustness_images: int
    support_images: int
    angles: tuple[int, ...]
    model_overrides: dict
    rule: str


def make_plan(args, epochs: int) -> Plan:
    from capsviewer.analysis.routing_comparison import (
        CHECKPOINT_RULE,
        ENTRIES,
        ROTATION_ANGLES,
    )

    entries = tuple(e for e in ENTRIES if not args.entries or e.name in args.entries)
    if args.dry_run:
        return Plan(entries, tuple(DRY["seeds"]), DRY["epochs"], 32, DRY["subset"],
                    DRY["monitor_images"], DRY["test_images"], DRY["robustness_images"],
                    DRY["support_images"], DRY["angles"], DRY_MODEL, CHECKPOINT_RULE)
    return Plan(entries, tuple(args.seeds), epochs, args.batch_size, args.subset,
                args.monitor_images, args.test_images, args.robustness_images,
                args.support_images, ROTATION_ANGLES, {}, CHECKPOINT_RULE)


# -- speed ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Speed:
    """Images/s of one entry: by the clock (what this machine gives now) and by the process's
    CPU time (what one core gives when it is not shared; equal on a quiet machine)."""

    train: float
    evaluation: float
    train_cpu: float
    evaluation_cpu: float


def step_speeds(plan: Plan, device, steps: int = 5) -> dict[str, Speed]:
    """Training and evaluation speed of each entry on random images, as the trainer runs a step
    (forward under its precision, loss, backward, Adam), the entries taking turns step by step
    (a changing load hits them alike); medians of ``steps`` timed steps after a warm-up step."""
    import torch

    from capsviewer.models import build_model
    from capsviewer.training.devices import autocast, resolve_precision

    precision = resolve_precision("auto", device)
    x = torch.rand(plan.batch_size, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (plan.batch_size,), device=device)
    models, optimizers = {}, {}
    for entry in plan.entries:
        torch.manual_seed(0)
        model = build_model(entry.architecture,
                            entry.config(plan.model_overrides.get(entry.architecture))).to(device)
        if precision == "bf16":
            model.to(memory_format=torch.channels_last)
        models[entry.name] = model
        optimizers[entry.name] = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train_step(name):
        with autocast(device, precision):
            output = models[name](x, y)
        loss = models[name].loss(output, x, y).total
        optimizers[name].zero_grad()
        loss.backward()
        optimizers[name].step()

    def eval_step(name):
        with torch.no_grad(), autocast(device, precision):
            models[name](x)

    timings = {(name, kind): ([], []) for name in models for kind in ("train", "eval")}
    for kind, step in (("train", train_step), ("eval", eval_step)):
        for name, model in models.items():
            model.train(kind == "train")
        for round_ in range(steps + 1):
            for name in models:
                wall, cpu = time.perf_counter(), time.process_time()
                step(name)
                if round_:  # the first round warms up
                    timings[name, kind][0].append(time.perf_counter() - wall)
                    timings[name, kind][1].append(time.process_time() - cpu)

    def rate(name, kind, which):
        return plan.batch_size / statistics.median(timings[name, kind][which])

    return {name: Speed(rate(name, "train", 0), rate(name, "eval", 0), rate(name, "train", 1),
                        rate(name, "eval", 1)) for name in models}


def evaluated_images(plan: Plan) -> int:
    """Forward passes of the final measurement of one run (2 passes for the support images:
    entropy and dominant capsule)."""
    test = plan.test_images or 10_000
    return test + (len(plan.angles) + 1) * plan.robustness_images + 2 * plan.support_images


def run_seconds(plan: Plan, train_speed: float, eval_speed: float, epochs: int) -> float:
    images = plan.subset or TRAIN_IMAGES
    return (epochs * (images / train_speed + plan.monitor_images / eval_speed)
            + evaluated_images(plan) / eval_speed)


def estimate_table(plan: Plan, speeds: dict[str, Speed], epochs: int) -> tuple[str, float]:
    """A line per entry and the total hours, by the clock and by CPU time (a quiet core)."""
    lines = [f"{'entry':<20} {'train img/s':>11} {'eval img/s':>10} {'hours per run':>13}"
             f" {'(CPU time: train, eval img/s, hours)':>37}"]
    total = total_cpu = 0.0
    for entry in plan.entries:
        speed = speeds[entry.name]
        seconds = run_seconds(plan, speed.train, speed.evaluation, epochs)
        quiet = run_seconds(plan, speed.train_cpu, speed.evaluation_cpu, epochs)
        total += seconds * len(plan.seeds)
        total_cpu += quiet * len(plan.seeds)
        lines.append(f"{entry.name:<20} {speed.train:>11.1f} {speed.evaluation:>10.1f} "
                     f"{seconds / 3600:>13.2f} {speed.train_cpu:>17.1f} "
                     f"{speed.evaluation_cpu:>8.1f} {quiet / 3600:>9.2f}")
    lines.append(f"{len(plan.entries)} entries × {len(plan.seeds)} seeds × {epochs} epochs of "
                 f"{plan.subset or TRAIN_IMAGES:,} images: about {total / 3600:.1f} hours at "
                 f"these clock rates, {total_cpu / 3600:.1f} hours of CPU time")
    return "\n".join(lines), total


def epochs_for_budget(plan: Plan, speeds: dict[str, Speed], hours: float) -> int:
    """The most epochs for which every run fits in ``hours`` at the measured clock rates."""
    def seconds(entry, epochs):
        speed = speeds[entry.name]
        return run_seconds(plan, speed.train, speed.evaluation, epochs)

    per_epoch = sum(seconds(e, 1) - seconds(e, 0) for e in plan.entries) * len(plan.seeds)
    fixed = sum(seconds(e, 0) for e in plan.entries) * len(plan.seeds)
    epochs = math.floor((hours * 3600 - fixed) / per_epoch)
    if epochs < 1:
        raise CommandError(f"{hours:g} hours do not fit one epoch of every run here (one epoch "
                           f"each takes about {(per_epoch + fixed) / 3600:.1f} hours)")
    return epochs


# -- one run ------------------------------------------------------------------------------------

def run_signature(plan: Plan, entry, seed: int) -> dict:
    """What a kept result must have been made with to be reused."""
    return {"entry": entry.name, "architecture": entry.architecture,
            "model_config": entry.config(plan.model_overrides.get(entry.architecture)),
            "seed": seed, "epochs": plan.epochs, "batch_size": plan.batch_size,
            "subset": plan.subset}


def finished_result(plan: Plan, entry, seed: int, work: Path) -> dict | None:
    """The kept result of this run if it finished under this very plan, else None."""
    path = work / f"{entry.name}-seed{seed}.json"
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):  # not run yet, or cut off while being written
        return None
    if kept.get("signature") == run_signature(plan, entry, seed) and kept.get(
            "measurement_images") == [plan.test_images, plan.robustness_images,
                                      plan.support_images, list(plan.angles)]:
        return kept
    return None


def run_one(plan: Plan, entry, seed: int, args, train_set, test_set) -> dict:
    """Train (or continue) one entry with one seed and measure its final weights; the result
    is kept in --work and reused when the plan has not changed."""
    from capsviewer.analysis.routing_comparison import measure_model
    from capsviewer.training import EpochResult, TrainConfig, Trainer

    args.work.mkdir(parents=True, exist_ok=True)
    stem = args.work / f"{entry.name}-seed{seed}"
    signature = run_signature(plan, entry, seed)
    model_config = signature["model_config"]
    result_path = stem.with_suffix(".json")
    kept = finished_result(plan, entry, seed, args.work)
    if kept is not None:
        print(f"{entry.name}, seed {seed}: finished before, reused ({result_path})")
        return kept
    config = TrainConfig(model=entry.architecture, model_config=model_config,
                         data_root=args.data_root, epochs=plan.epochs,
                         batch_size=plan.batch_size, subset=plan.subset,
                         test_subset=plan.monitor_images, seed=seed, device=args.device,
                         output=str(stem.with_suffix(".safetensors")), resume=True)
    trainer = Trainer(config, train_set, test_set)
    for event in trainer.events():
        if isinstance(event, EpochResult):
            print(f"{entry.name}, seed {seed}: epoch {event.epoch}/{event.epochs}, monitor "
                  f"accuracy {100 * event.test_accuracy:.2f} %, {event.images_per_second:.0f} "
                  "img/s", flush=True)
    finished = event
    test = test_set.subset(plan.test_images, 0) if plan.test_images else test_set
    model = trainer.model.eval()
    started = time.perf_counter()
    measured = measure_model(model, test.images, test.labels,
                             robustness_images=plan.robustness_images,
                             support_images=plan.support_images, angles=plan.angles)
    result = {
        "signature": signature,
        "measurement_images": [plan.test_images, plan.robustness_images, plan.support_images,
                               list(plan.angles)],
        "rule": plan.rule,
        "title": entry.title,
        "shares_backbone": entry.shares_backbone,
        **measured,
        "images_per_second": statistics.median(e.images_per_second for e in finished.history),
        "training_seconds": round(sum(e.seconds for e in finished.history), 1),
        "measurement_seconds": round(time.perf_counter() - started, 1),
        "monitor_history": [round(e.test_accuracy, 5) for e in finished.history],
        "checkpoint": finished.checkpoint,
    }
    write_file(result_path, (json.dumps(result, indent=2) + "\n").encode())
    return result


# -- table and figure ---------------------------------------------------------------------------

def _cell(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    from capsviewer.analysis.routing_comparison import summarise

    mean, low, high = summarise(values)
    if len(values) == 1:
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} ({scale * low:.{digits}f}–{scale * high:.{digits}f})"


def markdown_table(plan: Plan, results: dict[str, list[dict]]) -> str:
    angle = 45 if 45 in plan.angles else plan.angles[-1]
    header = ("| Model | Seeds | Test accuracy (%) | Rotation " f"{angle}° (%) | Rotation mean "
              f"{plan.angles[0]}–{plan.angles[-1]}° (%) | Random affine (%) | Entropy H / log J "
              "| Parameters (no decoder) | Training images/s | Dominant primary capsule |")
    lines = [header, "|" + "---|" * 10]
    for entry in plan.entries:
        runs = results.get(entry.name)
        if not runs:  # --finished-only: nothing of this entry has finished yet
            continue
        seeds = [r["signature"]["seed"] for r in runs]
        dominant = [r["dominant_support"] for r in runs if "dominant_support" in r]
        if dominant:
            d = dominant[0]
            same = sum(x["index"] == d["index"] for x in dominant)
            where = "/".join(map(str, d["position"]))
            support = (f"{where}: {d['dominant_on']}/{d['images']} images, "
                       f"{100 * d['mean_share']:.1f} % (seed {seeds[0]}; same capsule in "
                       f"{same}/{len(dominant)} seeds)")
        else:
            support = "n/a (matrix capsules)"
        lines.append(
            f"| {entry.title} | {', '.join(map(str, seeds))} "
            f"| {_cell([r['test_accuracy'] for r in runs])} "
            f"| {_cell([r['rotation'][str(angle)] for r in runs])} "
            f"| {_cell([statistics.mean(r['rotation'].values()) for r in runs])} "
            f"| {_cell([r['affine'] for r in runs])} "
            f"| {_cell([r['entropy'] for r in runs], 1.0, 3)} "
            f"| {runs[0]['parameters']:,} "
            f"| {_cell([r['images_per_second'] for r in runs], 1.0, 0)} | {support} |")
    return "\n".join(lines)


def figure_png(plan: Plan, results: dict[str, list[dict]]) -> bytes:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    rotation, affine, entropy = figure.subplots(1, 3, gridspec_kw={"width_ratios": [1.4, 1, 1]})
    entries = [e for e in plan.entries if results.get(e.name)]
    names = [e.name for e in entries]
    for entry in entries:
        runs = results[entry.name]
        curve = [statistics.mean(r["rotation"][str(a)] for r in runs) for a in plan.angles]
        rotation.plot(plan.angles, [100 * c for c in curve], marker="o", markersize=3,
                      linewidth=1.3, label=f"{entry.name} ({len(runs)})",
                      linestyle="-" if entry.shares_backbone else "--")
    rotation.set_title("Rotation (mean over seeds)", fontsize=9)
    rotation.set_xlabel("angle (°)", fontsize=8)
    rotation.set_ylabel("test accuracy (%)", fontsize=8)
    rotation.legend(fontsize=6.5, title="entry (seeds)", title_fontsize=6.5)
    # A dot per seed and a bar at the mean, on an axis fitted to the values: the differences
    # between entries are a few tenths of a percent, which bars from zero would hide.
    for axes, key, scale, title in ((affine, "affine", 100, "Random affine (%)"),
                                    (entropy, "entropy", 1, "Entropy of assignments / log J")):
        every = []
        for row, name in enumerate(names):
            values = [r[key] * scale for r in results[name]]
            every += values
            axes.plot(values, [row] * len(values), "o", color="#0072B2", markersize=4,
                      alpha=0.8)
            axes.plot([statistics.mean(values)], [row], "|", color="black", markersize=12,
                      markeredgewidth=1.5)
        pad = max(0.08 * (max(every) - min(every)), 0.002 * max(abs(v) for v in every) or 0.01)
        axes.set_xlim(min(every) - pad, max(every) + pad)
        axes.set_ylim(len(names) - 0.5, -0.5)
        axes.set_yticks(range(len(names)), names, fontsize=7)
        axes.grid(axis="x", alpha=0.3)
        axes.set_title(title, fontsize=9)
        axes.set_xlabel("dot: a seed; bar: the mean", fontsize=7)
    for axes in (rotation, affine, entropy):
        axes.tick_params(labelsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def replace_between_markers(text: str, content: str) -> str | None:
    spec = importlib.util.spec_from_file_location("docs_robustness", REPO / "docs" / "robustness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.replace_between_markers(text, content, START, END)


def write_outputs(plan: Plan, results, args, command: str) -> tuple[Path, Path, Path]:
    args.out.mkdir(parents=True, exist_ok=True)
    figure = write_file(args.out / "routing-comparison.png", figure_png(plan, results))
    document = {
        "command": command,
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "rule": plan.rule, "epochs": plan.epochs, "seeds": list(plan.seeds),
        "batch_size": plan.batch_size, "train_images": plan.subset or TRAIN_IMAGES,
        "augmentation": "random shifts of up to 2 px (the trainer's)",
        "runs": results,
    }
    raw = write_file(args.out / "routing-comparison.json",
                     (json.dumps(document, indent=2) + "\n").encode())
    doc = args.doc or args.out / "routing-comparison.md"
    epochs = f"{plan.epochs} epoch{'s' * (plan.epochs != 1)}"
    missing = [f"{e.name} (seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))})"
               for e in plan.entries
               if (seeds := sorted(set(plan.seeds) - {r["signature"]["seed"]
                                                      for r in results.get(e.name, [])}))]
    partial = (f"**Partial: the runs finished so far.** Not finished yet: {'; '.join(missing)}. "
               if missing else "")
    section = (f"Made by `{command}` ({document['created'][:10]}): {epochs} of "
               f"{plan.subset or TRAIN_IMAGES:,} training images, seeds "
               f"{', '.join(map(str, plan.seeds))}, batch {plan.batch_size}; rule: {plan.rule}. "
               f"{partial}Cells: mean over seeds (range). Raw figures: "
               f"[{raw.name}]({raw.name}).\n\n{markdown_table(plan, results)}\n\n"
               f"![Accuracy under rotation, random affine accuracy, entropy]({figure.name})\n")
    if doc.exists():
        updated = replace_between_markers(doc.read_text(encoding="utf-8"), section)
        if updated is None:
            raise CommandError(f"{doc} has no {START} … {END} markers; add them where the "
                               "table should go")
    else:
        updated = f"# Routing comparison\n\n{START}\n{section}{END}\n"
    write_file(doc, updated.encode("utf-8"))
    return doc, figure, raw


# -- the command ------------------------------------------------------------------------------------

def run(args) -> int:
    import torch

    from capsviewer.data import load_dataset
    from capsviewer.training import describe_device, select_device

    if args.finished_only and (args.budget or args.estimate):
        raise CommandError("--finished-only tabulates the runs of a fixed number of epochs: "
                           "give --epochs, not --budget or --estimate")
    if args.threads or args.dry_run:  # tiny sizes gain nothing from threads on a busy machine
        torch.set_num_threads(args.threads or 1)
    if args.work is None:
        args.work = Path("runs/routing-comparison" + ("-dry-run" if args.dry_run else ""))
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="routing-comparison-")) if args.dry_run \
            else Path("docs")
    device = select_device(args.device)
    plan = make_plan(args, args.epochs or 10)
    print(f"rule (fixed before training): {plan.rule}")
    if args.estimate or args.budget:
        speeds = step_speeds(plan, device)
        if args.budget:
            plan = dataclasses.replace(plan, epochs=epochs_for_budget(plan, speeds, args.budget))
            print(f"{args.budget:g} hours on {describe_device(device)}: {plan.epochs} epochs")
        table, _ = estimate_table(plan, speeds, plan.epochs)
        print(table)
        if args.estimate:
            return 0
    command = " ".join([PROG, *args.argv])
    if args.finished_only:
        results = {e.name: kept for e in plan.entries
                   if (kept := [r for seed in plan.seeds
                                if (r := finished_result(plan, e, seed, args.work))])}
        if not results:
            raise CommandError(f"no run of this plan ({plan.epochs} epochs, seeds "
                               f"{', '.join(map(str, plan.seeds))}) has finished in {args.work}")
    else:
        train_set = load_dataset("mnist", True, args.data_root)
        test_set = load_dataset("mnist", False, args.data_root)
        results = {e.name: [run_one(plan, e, seed, args, train_set, test_set)
                            for seed in plan.seeds] for e in plan.entries}
    doc, figure, raw = write_outputs(plan, results, args, command)
    print()
    print(markdown_table(plan, results))
    print(f"wrote {doc}, {figure}, {raw}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    return common.run_command(args)


if __name__ == "__main__":
    raise SystemExit(main())

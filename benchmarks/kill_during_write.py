"""Kill `capsviewer train` inside its save step with SIGKILL, resume it, and check that every
resumed run ends bit-identical to an uninterrupted one, with no temp file left behind.

    python benchmarks/kill_during_write.py --data-root PATH [--trials 24] [--seed 0]

Each trial runs a short CNN training (3 epochs on a subset, the state and the checkpoint
written after every epoch, and each epoch's copy with --keep-epochs) in a subprocess and kills
it in the write window, one of two ways:

- aimed: the child kills itself (SIGKILL, nothing runs after it) at a chosen point of a chosen
  write: before the write starts, halfway through the bytes of its temp file, after the fsync
  and before the rename, or just after the rename; of the training state, the checkpoint or
  the epoch's copy, after epoch 1, 2 or 3;
- timed: the parent sends SIGKILL at a random moment between the start and the end of a save
  step (from its duration in the uninterrupted run).

Then `capsviewer train --resume` runs to the end, and the script compares its weights and
training history with the uninterrupted run's, and looks for temp files. It prints one line per
trial and the counts.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EPOCHS = 3
WRITES = ("state", "checkpoint", "copy")
POINTS = ("before-write", "mid-write", "before-rename", "after-rename")


def train_args(out: Path, data_root: str) -> list[str]:
    return ["train", "--model", "cnn", "--epochs", str(EPOCHS), "--subset", "512",
            "--test-subset", "200", "--batch-size", "64", "--device", "cpu", "--seed", "7",
            "--data-root", data_root, "--output", str(out), "--keep-epochs", "--resume",
            "--no-progress"]


# -- the child: capsviewer train, with hooks --------------------------------------------------

def child(argv: list[str], kill_at: str | None) -> int:
    import torch

    torch.set_num_threads(1)  # the same arithmetic in every process
    from capsviewer.cli import main
    from capsviewer.training import checkpoints, trainer

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    original_save = trainer.Trainer.save

    def announced_save(self, run, result):
        print(f"SAVING {result.epoch}", flush=True)
        start = time.perf_counter()
        saved = original_save(self, run, result)
        print(f"SAVED {time.perf_counter() - start:.4f}", flush=True)
        return saved

    trainer.Trainer.save = announced_save
    if kill_at:
        kind, epoch, point = kill_at.split(":")
        counts = dict.fromkeys(WRITES, 0)
        armed = {"now": False}
        write = checkpoints.atomic_write_bytes
        fdopen, replace = os.fdopen, os.replace

        def aimed_write(path, data):
            path = Path(path)
            which = ("state" if path.name.endswith(".state.safetensors") else
                     "copy" if path.parent.name.endswith(".epochs") else "checkpoint")
            counts[which] += 1
            if which != kind or counts[which] != int(epoch):
                return write(path, data)
            if point == "before-write":
                die()
            armed["now"] = True
            result = write(path, data)
            die()  # after-rename
            return result

        class HalfWritten:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return self.f.__exit__(*exc)

            def write(self, data):
                self.f.write(data[: len(data) // 2])
                self.f.flush()
                die()

            def __getattr__(self, name):
                return getattr(self.f, name)

        def aimed_fdopen(fd, *args, **kwargs):
            f = fdopen(fd, *args, **kwargs)
            return HalfWritten(f) if armed["now"] and point == "mid-write" else f

        def aimed_replace(src, dst, *args, **kwargs):
            if armed["now"] and point == "before-rename":
                die()
            return replace(src, dst, *args, **kwargs)

        trainer.atomic_write_bytes = aimed_write  # the checkpoint and the epoch's copy
        checkpoints.atomic_write_bytes = aimed_write  # the state (through save_tensors)
        checkpoints.os.fdopen = aimed_fdopen
        checkpoints.os.replace = aimed_replace
    return main(argv)


# -- the parent -------------------------------------------------------------------------------

def run(argv: list[str], kill_at: str | None = None, kill_after: float | None = None,
        kill_in_save: int | None = None) -> tuple[int, list[str]]:
    """Run a child; with ``kill_after``, SIGKILL it that many seconds into save step
    ``kill_in_save`` (1-based). Returns the exit status and its stdout lines."""
    command = [sys.executable, __file__, "--child", *(["--kill-at", kill_at] if kill_at else []),
               "--", *argv]
    child_process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
    lines, saves = [], 0
    for line in child_process.stdout:
        lines.append(line.rstrip())
        if kill_after is not None and line.startswith("SAVING"):
            saves += 1
            if saves == kill_in_save:
                time.sleep(kill_after)
                child_process.send_signal(signal.SIGKILL)
                lines.append("KILLED")
    child_process.wait()
    child_process.stderr.close()
    child_process.stdout.close()
    return child_process.returncode, lines


def outcome(out: Path) -> tuple[dict, list]:
    from capsviewer.training import load_checkpoint

    checkpoint = load_checkpoint(out)
    history = [(h["epoch"], h["train_loss"], h["test_loss"], h["test_accuracy"])
               for h in checkpoint.metadata["history"]]
    return checkpoint.model.state_dict(), history


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("CAPSVIEWER_DATA"))
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kill-at", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        return child(rest[1:] if rest[:1] == ["--"] else rest, args.kill_at)
    if not args.data_root:
        parser.error("give --data-root (or set CAPSVIEWER_DATA)")

    import torch

    work = Path(tempfile.mkdtemp(prefix="capsviewer-kills-"))
    reference = work / "reference" / "cnn.safetensors"
    code, lines = run(train_args(reference, args.data_root))
    assert code == 0, f"the uninterrupted run failed ({code})"
    save_seconds = max(float(line.split()[1]) for line in lines if line.startswith("SAVED"))
    expected_weights, expected_history = outcome(reference)
    print(f"uninterrupted run: {EPOCHS} epochs, longest save step {1000 * save_seconds:.0f} ms")

    rng = random.Random(args.seed)
    tally = {"trials": 0, "killed": 0, "timed kills inside the save step": 0,
             "resumed identical": 0, "temp files left": 0, "failed": 0}
    for trial in range(args.trials):
        out = work / f"trial-{trial:02d}" / "cnn.safetensors"
        if trial % 3 == 2:  # every third: killed at a random time inside a save step
            save, delay = rng.randint(1, EPOCHS), rng.uniform(0, save_seconds)
            code, lines = run(train_args(out, args.data_root), kill_after=delay,
                              kill_in_save=save)
            # The step had not ended when the kill came unless it printed SAVED (read by now).
            last_save = max(i for i, line in enumerate(lines) if line.startswith("SAVING"))
            inside = not any(line.startswith("SAVED") for line in lines[last_save:])
            tally["timed kills inside the save step"] += inside
            how = f"timed: {1000 * delay:.0f} ms into save {save}" + ("" if inside else " (after it)")
        else:
            aim = f"{rng.choice(WRITES)}:{rng.randint(1, EPOCHS)}:{rng.choice(POINTS)}"
            how = f"aimed: {aim}"
            code, _ = run(train_args(out, args.data_root), kill_at=aim)
        killed = code == -signal.SIGKILL
        temps_after_kill = sorted(p.name for p in out.parent.rglob("*.tmp"))
        resumed, _ = run(train_args(out, args.data_root))
        weights, history = outcome(out)
        identical = (resumed == 0 and history == expected_history and weights.keys() ==
                     expected_weights.keys() and all(torch.equal(weights[k], expected_weights[k])
                                                     for k in weights))
        copies_identical = all(
            torch.equal(outcome(out.parent / "cnn.epochs" / f"epoch-{e:03d}.safetensors")[0][k],
                        outcome(reference.parent / "cnn.epochs" / f"epoch-{e:03d}.safetensors")[0][k])
            for e in range(1, EPOCHS + 1) for k in expected_weights)
        left = sorted(p.name for p in out.parent.rglob("*.tmp"))
        tally["trials"] += 1
        tally["killed"] += killed
        tally["resumed identical"] += identical and copies_identical
        tally["temp files left"] += len(left)
        tally["failed"] += not (identical and copies_identical) or bool(left)
        print(f"trial {trial:2d} {how:44s} killed={killed!s:5} temp files after the kill "
              f"{len(temps_after_kill)}, after the resume {len(left)}; resumed identical "
              f"{identical and copies_identical}")
    print(", ".join(f"{name}: {count}" for name, count in tally.items()))
    return 1 if tally["failed"] or tally["killed"] < tally["trials"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""Bad arguments to every sub-command: a usage error or one line, exit 2, no traceback, and the
checkpoint a training run would replace left as it was."""

from pathlib import Path

import pytest

from capsviewer.cli import main
from capsviewer.training import save_checkpoint

from fuzz_cases import tiny_cnn

HUGE = str(2**70)
# (arguments, what the message says); {out} is a good checkpoint the command must not touch,
# {dir} a folder, {file} a plain file.
TRAIN = [
    (["--lr", "nan"], "argument --lr: must be a finite number, got nan"),
    (["--lr", "inf"], "argument --lr: must be a finite number, got inf"),
    (["--lr", "-1"], "argument --lr: must be between 0 and 1"),
    (["--lr", "1e9"], "argument --lr: must be between 0 and 1"),
    (["--lr", "fast"], "argument --lr: a number is needed, got 'fast'"),
    (["--seed", HUGE], "argument --seed: must be between 0 and"),
    (["--seed", "-1"], "argument --seed: must be between 0 and"),
    (["--epochs", "0"], "argument --epochs: must be between 1 and 1,000"),
    (["--epochs", HUGE], "argument --epochs: must be between 1 and 1,000"),
    (["--epochs", "2.5"], "argument --epochs: a whole number is needed"),
    (["--batch-size", "0"], "argument --batch-size: must be between 1 and 65,536"),
    (["--batch-size", HUGE], "argument --batch-size: must be between 1 and 65,536"),
    (["--lr-decay", "-1"], "argument --lr-decay: must be between 0.001 and 1"),
    (["--lr-decay", "nan"], "argument --lr-decay: must be a finite number"),
    (["--decay-steps", "0"], "argument --decay-steps: must be between 1 and"),
    (["--subset", "0"], "argument --subset: must be between 1 and 60,000"),
    (["--test-subset", "-5"], "argument --test-subset: must be between 1 and 10,000"),
    (["--iterations", "0"], "argument --iterations: must be between 1 and 10"),
    (["--iterations", HUGE], "argument --iterations: must be between 1 and 10"),
    (["--model", "resnet"], "argument --model: invalid choice: 'resnet'"),
    (["--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar'"),
    (["--precision", "fp8"], "argument --precision: invalid choice: 'fp8'"),
    (["--device", "meta"], "unknown device 'meta'"),
    (["--device", "xla"], "unknown device 'xla'"),
    (["--device", "cuda:-1"], "unknown device 'cuda:-1'"),
    (["--device", "\x1b[31m"], "unknown device '\\x1b[31m'"),
    (["--model", "cnn", "--iterations", "3"], "routing iterations apply to capsnet"),
    (["--output", "{dir}"], "is a folder; give a file name"),
    (["--output", "{file}/model.safetensors"], "cannot create the folder"),
    (["--init-from", "{file}"], "is truncated or not a safetensors file"),
    (["--resume", "--output", "{out}"], "has no training state beside it"),
]
OTHERS = [
    (["eval", "{out}", "--batch-size", "0"], "argument --batch-size: must be between 1"),
    (["eval", "{out}", "--batch-size", HUGE], "argument --batch-size: must be between 1"),
    (["eval", "{out}", "--iterations", "11"], "argument --iterations: must be between 1 and 10"),
    (["eval", "{out}", "--iterations", "3"], "--iterations applies to capsule networks"),
    (["eval", "{out}", "--subset", "0"], "argument --subset: must be a positive integer"),
    (["eval", "{out}", "--device", "meta"], "unknown device 'meta'"),
    (["eval", "{out}", "--precision", "fp8"], "argument --precision: invalid choice"),
    (["eval", "{dir}/missing.safetensors"], "no checkpoint file at"),
    (["eval", "{dir}"], "is not a file (a folder or a device)"),
    (["info", "{dir}"], "is not a file (a folder or a device)"),
    (["info", "{file}"], "is truncated or not a safetensors file"),
    (["export", "--index", "-1", "--model", "{out}", "--out", "{dir}/x"], "--index -1"),
    (["export", "--iterations", "0"], "argument --iterations: must be between 1 and 10"),
    (["export", "--model", "{out}", "--out", "{file}"], "cannot export to"),
    (["export", "--model", "{file}", "--out", "{dir}/x"], "is truncated or not a safetensors"),
    (["ablation", "--seed", "-3"], "argument --seed: must be 0 or more"),
    (["ablation", "--batch-size", HUGE], "argument --batch-size: must be between 1"),
    (["report", "--batch-size", "0"], "argument --batch-size: must be between 1"),
    (["average", "{out}", "--batch-size", "-1"], "argument --batch-size: must be between 1"),
    (["average", "{out}", "{file}", "--output", "{dir}/avg.safetensors"],
     "is truncated or not a safetensors file"),
]


@pytest.fixture
def places(tmp_path):
    out = save_checkpoint(tmp_path / "good.safetensors", tiny_cnn(), {"epoch": 1})
    (tmp_path / "folder").mkdir()
    (tmp_path / "plain.txt").write_text("not a checkpoint")
    return {"out": str(out), "dir": str(tmp_path / "folder"), "file": str(tmp_path / "plain.txt")}


def run(argv, places, capsys) -> tuple[int, str]:
    argv = [a.format(**places) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse: usage, then one "error:" line
        code = exit.code
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err
    return code, err


def assert_one_error(err: str, phrase: str) -> None:
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and phrase in errors[0], err
    assert "\x1b" not in err


@pytest.mark.parametrize("argv, phrase", TRAIN, ids=[" ".join(a) for a, _ in TRAIN])
def test_bad_training_arguments(argv, phrase, places, capsys, tmp_path, offline):
    before = Path(places["out"]).read_bytes()
    argv = ["train", "--output", places["out"], "--device", "cpu", "--no-progress",
            "--data-root", str(tmp_path / "no-data"), *argv]
    code, err = run(argv, places, capsys)
    assert code == 2
    assert_one_error(err, phrase)
    assert Path(places["out"]).read_bytes() == before  # the checkpoint it would replace
    assert not [p for p in tmp_path.rglob("*.tmp")]


@pytest.mark.parametrize("argv, phrase", OTHERS, ids=[" ".join(a) for a, _ in OTHERS])
def test_bad_arguments_to_the_other_commands(argv, phrase, places, capsys, offline):
    before = Path(places["out"]).read_bytes()
    code, err = run(argv, places, capsys)
    assert code == 2
    assert_one_error(err, phrase)
    assert Path(places["out"]).read_bytes() == before

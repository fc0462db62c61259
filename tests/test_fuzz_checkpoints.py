"""Crafted checkpoints (fuzz_cases): every bad file gets one line and exit 2 from ``info`` and
``eval``, is skipped and named by model discovery, and leaves a good checkpoint beside it
untouched; nothing unpickles, nothing prints a traceback or a terminal escape sequence."""

import json
import os
import subprocess
import sys

import pytest
import torch

from capsviewer.cli import main
from capsviewer.training import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from capsviewer.training.model_files import find_models, skipped_note

from fuzz_cases import (
    ACCEPTED_TENSOR_CASES,
    ESCAPE,
    FILE_CASES,
    METADATA_CASES,
    TENSOR_CASES,
    good_metadata,
    tiny_cnn,
    with_header,
    write_special,
)

REFUSED_ON_READ = {**METADATA_CASES, **FILE_CASES}


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """Every crafted file in one folder (what a model search folder might hold), with a good
    checkpoint, older than all of them, whose bytes the tests compare before and after."""
    folder = tmp_path_factory.mktemp("crafted")
    good = save_checkpoint(folder / "good.safetensors", tiny_cnn(), {"epoch": 2, "dataset":
                                                                     {"name": "mnist"}})
    os.utime(good, (1_000_000, 1_000_000))
    files = {}
    for name, make in {**REFUSED_ON_READ, **TENSOR_CASES, **ACCEPTED_TENSOR_CASES}.items():
        files[name] = folder / f"{name}.safetensors"
        files[name].write_bytes(make())
    special = write_special(folder)
    return folder, good, good.read_bytes(), files, special


def one_error_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"capsviewer {command}: error: ") and "Traceback" not in err
    assert "internal error" not in err and "\x1b" not in err
    return lines[0]


@pytest.mark.parametrize("name", sorted(REFUSED_ON_READ))
def test_info_and_eval_refuse_a_bad_file_in_one_line(name, crafted, capsys, monkeypatch):
    folder, good, before, files, _ = crafted
    monkeypatch.chdir(folder)
    path = files[name]
    with pytest.raises(CheckpointError):
        read_metadata(path)
    assert main(["info", str(path)]) == 2
    line = one_error_line(capsys.readouterr().err, "info")
    assert path.name in line
    assert main(["eval", str(path), "--device", "cpu"]) == 2
    one_error_line(capsys.readouterr().err, "eval")
    assert not (folder / "EXPLOITED").exists()  # pickles are refused, never run
    assert good.read_bytes() == before


@pytest.mark.parametrize("name", sorted(TENSOR_CASES))
def test_bad_weights_are_refused_when_loaded(name, crafted, capsys):
    folder, good, before, files, _ = crafted
    message = refused(load_checkpoint, files[name])
    assert "\n" not in message and files[name].name in message
    assert main(["eval", str(files[name]), "--device", "cpu"]) == 2
    one_error_line(capsys.readouterr().err, "eval")
    assert good.read_bytes() == before


def refused(read, path) -> str:
    """The sentence ``read(path)`` refuses the file with."""
    with pytest.raises(CheckpointError) as refusal:
        read(path)
    return str(refusal.value)


def test_what_each_bad_weight_is_told(crafted):
    files = crafted[3]

    def refusal(name):
        return refused(load_checkpoint, files[name])

    for name in ("weight-nan", "weight-inf"):
        assert "not finite numbers (NaN or infinity) in classifier.weight" in refusal(name)
    for name, dtype in (("weight-bool", "bool"), ("weight-int8", "int8"),
                        ("weight-fp8-e4m3", "float8_e4m3fn"), ("weight-complex", "complex64")):
        assert f"stores classifier.weight as {dtype}, not as float32 or" in refusal(name)
    assert "classifier.weight: file has (3, 3), model needs (10, 16)" in refusal("weight-wrong-shape")
    assert "missing classifier.weight" in refusal("weight-missing")
    assert "unexpected evil" in refusal("weight-extra")


def test_smaller_float_storage_is_accepted(crafted):
    files = crafted[3]
    reference = tiny_cnn().state_dict()["classifier.weight"]
    for name, dtype in (("weights-fp16", torch.float16), ("weights-bf16", torch.bfloat16)):
        loaded = load_checkpoint(files[name]).model.state_dict()["classifier.weight"]
        assert loaded.dtype == torch.float32
        assert torch.equal(loaded, reference.to(dtype).float())


def test_metadata_refusals_say_what_is_wrong(crafted):
    files = crafted[3]

    def refusal(name):
        return refused(read_metadata, files[name])

    expected = {
        "json-null": "is JSON NoneType, not a mapping",
        "json-list": "is JSON list, not a mapping",
        "nested-100000": "nested too deeply",
        "nested-50": "nested more than 16 levels deep",
        "int-5000-digits": "is not valid JSON",
        "nan-literal": "NaN is not a number JSON allows",
        "float-overflow": "too large",
        "architecture-number": "unknown architecture 5",
        "architecture-unknown": "unknown architecture 'resnet'",
        "config-list": "config must be a mapping",
        "config-negative": "hidden must be between 1 and 4,096, got -16",
        "config-huge": "hidden must be between 1 and 4,096, got 1000000000000",
        "config-text-number": "hidden must be a number, got '16'",
        "config-bool-number": "hidden must be a number, got True",
        "config-unknown-key": "unknown fields: evil",
        "config-dropout-2": "dropout must be between 0 and 0.99, got 2.0",
        "config-layers-do-not-fit": "its layers do not fit a 8×8 image",
        "config-even-kernels": "kernel_sizes must be odd",
        "dataset-string": "dataset must be a mapping",
        "epoch-negative": "epoch must be between 0 and 1,000,000,000, got -1",
        "epoch-text": "epoch must be a number",
        "epoch-fraction": "epoch must be a whole number",
        "epoch-bool": "epoch must be a number",
        "metrics-accuracy-2": "test_accuracy must be between 0 and 1",
        "metrics-null": "test_loss must be a number",
        "history-numbers": "history entry 0 must be a mapping",
        "seed-2-to-70": "seed must be between 0 and",
        "train-config-negative-lr": "learning rate must be between 0 and 1, got -1",
        "train-config-huge-epochs": "epochs must be between 1 and 1,000",
        "format-version-bool": "unknown format",
        "format-version-99": "written by a newer capsviewer",
        "training-state-kind": "is the training state of an interrupted run",
        "precision-fp8": "precision must be one of fp32, bf16",
        "no-capsviewer-metadata": "not a capsviewer checkpoint",
        "pickle": "is a pickle",
        "torch-save-zip": "is a pickle",
        "empty": "truncated or not a safetensors file (0 bytes)",
        "header-size-huge": "its header claims",
    }
    for name, phrase in expected.items():
        assert phrase in refusal(name), name
    assert "\x1b" not in refusal("architecture-escape")


def test_discovery_skips_every_bad_file_and_names_it(crafted):
    folder, good, before, files, special = crafted
    found = find_models("mnist", [folder])
    # The crafted files are newer, but only the good checkpoint and the ones whose header is
    # fine (bad weights are found when loaded) can be models.
    readable = {folder / f"{n}.safetensors" for n in (*TENSOR_CASES, *ACCEPTED_TENSOR_CASES)}
    assert found["cnn"] in readable | {good}
    skipped = {path for path, _ in found.skipped}
    assert skipped == {files[n] for n in REFUSED_ON_READ} | set(special)
    assert all(reason and "\n" not in reason for _, reason in found.skipped)
    note = skipped_note(found)
    assert note.startswith(f"Skipped {len(skipped)} model file(s) that cannot be used: ")
    assert "\x1b" not in note and good.read_bytes() == before


def test_info_prints_no_escape_sequences_from_metadata(tmp_path, capsys):
    path = tmp_path / "escape.safetensors"
    meta = good_metadata(device=ESCAPE, saved=ESCAPE, dataset={"name": ESCAPE, "note": ESCAPE},
                         metrics={ESCAPE: 0.5})
    path.write_bytes(with_header(json.dumps(meta)))
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "\\x1b[31mred" in out  # shown, escaped
    assert main(["info", str(path), "--json"]) == 0
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and json.loads(printed)["device"] == ESCAPE


def test_the_real_command_exits_2_without_a_traceback(crafted):
    """A process, as a user runs it (the other tests call main())."""
    done = subprocess.run([sys.executable, "-m", "capsviewer", "eval",
                           str(crafted[3]["weight-nan"]), "--device", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.startswith("capsviewer eval: error: ")
    assert len(done.stderr.strip().splitlines()) == 1

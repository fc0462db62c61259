import pickle

import pytest
import safetensors.torch
import torch

from capsviewer.models import CapsNet, CapsNetConfig, build_model
from capsviewer.training import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from capsviewer.training import checkpoints as ckpt

SMALL = {"conv_channels": 16, "primary_maps": 4, "decoder_hidden": [32, 64]}


def test_round_trip_is_bit_identical(tmp_path):
    torch.manual_seed(0)
    model = build_model("capsnet", SMALL)
    path = save_checkpoint(tmp_path / "m.safetensors", model, {"epoch": 3, "metrics": {"test_accuracy": 0.5}})
    loaded = load_checkpoint(path)
    assert loaded.metadata["epoch"] == 3 and loaded.metadata["architecture"] == "capsnet"
    assert loaded.model.config == model.config
    original, restored = model.state_dict(), loaded.model.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(model.eval()(x).scores, loaded.model(x).scores)
    assert read_metadata(path) == loaded.metadata


def test_half_precision_storage_is_cast_back(tmp_path):
    model = build_model("cnn")
    path = save_checkpoint(tmp_path / "m.safetensors", model, dtype=torch.float16)
    loaded = load_checkpoint(path).model
    w = loaded.classifier.weight
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, model.classifier.weight.half().float(), rtol=0, atol=0)


def test_truncated_file_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", build_model("cnn"))
    data = path.read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated|damaged"):
            load_checkpoint(bad)


class Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch EXPLOITED",))


def test_pickle_is_refused_and_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, writer in {
        "raw.pkl": lambda p: p.write_bytes(pickle.dumps(Exploit())),
        "torch.pt": lambda p: torch.save({"x": Exploit()}, p),
    }.items():
        path = tmp_path / name
        writer(path)
        with pytest.raises(CheckpointError, match="pickle"):
            load_checkpoint(path)
    assert not (tmp_path / "EXPLOITED").exists()


def test_foreign_and_mismatched_files_are_refused(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a capsviewer checkpoint"):
        load_checkpoint(foreign)
    # weights that do not fit the architecture the metadata names
    model = build_model("capsnet", SMALL)
    tensors = dict(model.state_dict())
    tensors["digit_weights"] = torch.zeros(1, 2, 3, 4)
    meta = {"format": ckpt.FORMAT, "format_version": 1, "architecture": "capsnet", "config": model.config.to_dict()}
    bad = ckpt.save_tensors(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match="digit_weights: file has"):
        load_checkpoint(bad)
    ckpt.save_tensors(bad, tensors, {**meta, "architecture": "resnet"})
    with pytest.raises(CheckpointError, match="unknown architecture 'resnet'"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_crash_while_saving_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    first = build_model("cnn")
    save_checkpoint(path, first, {"epoch": 1})
    before = path.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, build_model("cnn"), {"epoch": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left
    assert load_checkpoint(path).metadata["epoch"] == 1


def test_capsnet_config_survives_json():
    config = CapsNetConfig(routing_iterations=5, decoder_hidden=(8, 16))
    assert CapsNet(build_model("capsnet", config.to_dict()).config).config == config


def test_a_header_size_ending_in_0x80_is_not_mistaken_for_a_pickle(tmp_path):
    """safetensors starts with the header size; its low byte may equal pickle's 0x80 opcode."""
    model = build_model("cnn")
    for pad in range(256):
        path = save_checkpoint(tmp_path / "m.safetensors", model, {"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header size ending in 0x80")
    assert load_checkpoint(path).metadata["pad"] == "x" * pad


def test_a_torn_temp_file_is_removed_by_the_next_write_but_a_live_one_is_not(tmp_path):
    """A kill inside a write leaves `.NAME.XXXX.tmp`; the next write of NAME removes it. A temp
    file another writer still holds (locked) stays: that write is under way."""
    fcntl = pytest.importorskip("fcntl")
    path = tmp_path / "m.safetensors"
    torn = tmp_path / ".m.safetensors.killed.tmp"
    torn.write_bytes(b"half a checkpoint")
    live = tmp_path / ".m.safetensors.writing.tmp"
    other = tmp_path / ".other.safetensors.x.tmp"  # another file's temp file: not ours
    other.write_bytes(b"x")
    with open(live, "wb") as writer:
        fcntl.flock(writer.fileno(), fcntl.LOCK_EX)
        save_checkpoint(path, build_model("cnn"), {"epoch": 1})
        assert not torn.exists() and live.exists() and other.exists()
    assert ckpt.remove_stale_temp_files(path) == [live]  # its writer is gone now
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.safetensors.x.tmp",
                                                          "m.safetensors"]

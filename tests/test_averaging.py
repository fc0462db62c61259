"""Checkpoint averaging and the epoch snapshots it averages."""

import pytest
import torch

from capsviewer.cli import main
from capsviewer.models import build_model
from capsviewer.training import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from capsviewer.training.averaging import average_checkpoints, round_trip
from capsviewer.training.checkpoints import epochs_trained
from capsviewer.training.model_files import find_models
from capsviewer.training.trainer import epoch_checkpoint

SMALL = {"conv_channels": 16, "primary_maps": 4, "decoder_hidden": [32, 64]}


def _snapshots(tmp_path, count=3, architecture="capsnet", config=SMALL):
    paths, models = [], []
    for epoch in range(1, count + 1):
        torch.manual_seed(epoch)
        model = build_model(architecture, config)
        models.append(model)
        paths.append(save_checkpoint(
            tmp_path / f"e{epoch}.safetensors", model,
            {"epoch": epoch, "dataset": {"name": "mnist"},
             "metrics": {"test_accuracy": 0.9 + epoch / 100}}))
    return paths, models


def test_average_is_the_mean_of_the_weights_with_the_last_metadata(tmp_path):
    paths, models = _snapshots(tmp_path)
    averaged = average_checkpoints(paths)
    for key, value in averaged.model.state_dict().items():
        expected = sum(m.state_dict()[key].double() for m in models) / 3
        torch.testing.assert_close(value.double(), expected, rtol=1e-6, atol=1e-7)
    assert averaged.metadata["epoch"] == 3
    assert [a["epoch"] for a in averaged.metadata["averaged"]] == [1, 2, 3]
    assert averaged.metadata["averaged"][0]["test_accuracy"] == pytest.approx(0.91)
    assert "metrics" not in averaged.metadata  # the sources' figures do not describe the mean


def test_averaging_refuses_mixed_models(tmp_path):
    capsnets, _ = _snapshots(tmp_path / "a", 1)
    (tmp_path / "b").mkdir()
    cnn = save_checkpoint(tmp_path / "b" / "cnn.safetensors", build_model("cnn"))
    other = save_checkpoint(tmp_path / "b" / "wide.safetensors",
                            build_model("capsnet", {**SMALL, "conv_channels": 32}))
    with pytest.raises(CheckpointError, match="another architecture"):
        average_checkpoints([capsnets[0], cnn])
    with pytest.raises(CheckpointError, match="another config"):
        average_checkpoints([capsnets[0], other])
    with pytest.raises(CheckpointError, match="two checkpoints or more"):
        average_checkpoints(capsnets)


def test_round_trip_rounds_weights_as_storage_does(tmp_path):
    model = build_model("cnn")
    stored = load_checkpoint(save_checkpoint(tmp_path / "h.safetensors", model,
                                             dtype=torch.float16)).model
    round_trip(model, torch.float16)
    for key, value in model.state_dict().items():
        assert torch.equal(value, stored.state_dict()[key]), key


def test_kept_epochs_average_into_a_checkpoint_eval_reproduces(data_root, tmp_path, capsys):
    out = tmp_path / "cnn.safetensors"
    assert main(["train", "--model", "cnn", "--epochs", "2", "--data-root", str(data_root),
                 "--output", str(out), "--no-progress", "--keep-epochs", "--subset", "256",
                 "--test-subset", "64", "--batch-size", "64", "--device", "cpu"]) == 0
    kept = [epoch_checkpoint(out, n) for n in (1, 2)]
    assert [read_metadata(p)["epoch"] for p in kept] == [1, 2]
    assert find_models(dirs=[tmp_path])["cnn"] == out  # the copies stay out of the app's way
    averaged = tmp_path / "averaged.safetensors"
    capsys.readouterr()
    assert main(["average", *map(str, kept), "--output", str(averaged), "--dtype", "fp16",
                 "--data-root", str(data_root), "--test-subset", "64", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "averaging 2 checkpoints of cnn on mnist (epochs 1, 2)" in printed
    assert "predictions differ from the unrounded average" in printed
    meta = read_metadata(averaged)
    assert meta["precision"] == "fp32" and meta["dataset"]["test_images"] == 64
    assert main(["eval", str(averaged), "--data-root", str(data_root), "--subset", "64"]) == 0
    assert f"accuracy {meta['metrics']['test_accuracy']:.2%}" in capsys.readouterr().out
    assert main(["average", str(kept[0]), "--output", str(averaged)]) == 2
    assert "two checkpoints or more" in capsys.readouterr().err
    assert main(["info", str(averaged)]) == 0
    assert "averaged         2 checkpoints, epochs 1, 2" in capsys.readouterr().out


def test_fine_tuning_starts_from_the_checkpoint_weights(data_root, tmp_path, capsys):
    """--init-from loads the weights: with a zero learning rate they come out unchanged."""
    first, tuned = tmp_path / "first.safetensors", tmp_path / "tuned.safetensors"
    common = ["--model", "cnn", "--epochs", "1", "--data-root", str(data_root), "--no-progress",
              "--subset", "128", "--test-subset", "64", "--batch-size", "64", "--device", "cpu",
              "--precision", "fp32"]
    assert main(["train", *common, "--output", str(first)]) == 0
    assert main(["train", *common, "--output", str(tuned), "--init-from", str(first),
                 "--lr", "0", "--seed", "5", "--lr-decay", "0.9", "--decay-steps", "2"]) == 0
    before, after = load_checkpoint(first), load_checkpoint(tuned)
    for key, value in before.model.state_dict().items():
        assert torch.equal(value, after.model.state_dict()[key]), key
    assert after.metadata["initialised_from"]["file"] == "first.safetensors"
    assert after.metadata["initialised_from"]["epoch"] == 1
    assert epochs_trained(after.metadata) == 2 and epochs_trained(before.metadata) == 1
    assert after.metadata["train_config"]["lr_decay"] == 0.9
    seconds = before.metadata["training_seconds"]
    capsys.readouterr()
    assert main(["info", str(tuned)]) == 0
    assert (f"initialised from first.safetensors (epoch 1; {seconds} s of training before this "
            "run)") in capsys.readouterr().out
    capsys.readouterr()
    assert main(["train", *common, "--model", "capsnet", "--output", str(tmp_path / "x.safetensors"),
                 "--init-from", str(first)]) == 2
    assert "holds a cnn, not a capsnet" in capsys.readouterr().err

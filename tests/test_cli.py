import json

import pytest

from capsviewer.cli import main
from capsviewer.training import load_checkpoint

TINY = ["--subset", "64", "--test-subset", "64", "--batch-size", "32", "--device", "cpu"]


def test_train_eval_info(data_root, tmp_path, capsys):
    out = tmp_path / "cnn.safetensors"
    assert main(["train", "--model", "cnn", "--epochs", "1", "--data-root", str(data_root),
                 "--output", str(out), "--no-progress", *TINY]) == 0
    printed = capsys.readouterr().out
    assert "epoch 1/1" in printed and "test loss" in printed
    stored = load_checkpoint(out).metadata["metrics"]["test_accuracy"]
    assert main(["eval", str(out), "--data-root", str(data_root), "--subset", "64",
                 "--batch-size", "32"]) == 0
    printed, bar = capsys.readouterr()
    assert f"accuracy {stored:.2%}" in printed  # same 64 images as training's test subset
    assert "cnn.safetensors" in bar and "32/64" in bar and "64/64" in bar  # tqdm, per batch
    assert main(["info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["architecture"] == "cnn"
    assert main(["info", str(out)]) == 0
    assert "architecture" in capsys.readouterr().out


def test_errors_are_messages_not_tracebacks(tmp_path, capsys, offline):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    assert main(["info", str(bad)]) == 2
    assert "truncated or not a safetensors file" in capsys.readouterr().err
    assert main(["train", "--data-root", str(tmp_path / "none"), "--epochs", "1", *TINY,
                 "--output", str(tmp_path / "x.safetensors")]) == 2
    assert "The MNIST training set is not available" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--epochs", "0"])


def test_cuda_request_without_gpu_is_explained(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["train", "--device", "cuda", "--output", str(tmp_path / "x.safetensors")]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_help_documents_the_app_options(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for option in ("--model PATH", "--data-root PATH", "--device DEVICE", "--theme"):
        assert option in text

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
    assert "capsviewer info: error: " in (err := capsys.readouterr().err)
    assert "truncated or not a safetensors file" in err and "Traceback" not in err
    assert main(["train", "--data-root", str(tmp_path / "none"), "--epochs", "1", *TINY,
                 "--output", str(tmp_path / "x.safetensors")]) == 2
    assert "The MNIST training set is not available" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--epochs", "0"])
    assert "argument --epochs: must be between 1 and 1,000, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "--lr", "nan"], "argument --lr: must be a finite number, got nan"),
    (["train", "--lr", "-1"], "argument --lr: must be between 0 and 1, got -1"),
    (["train", "--seed", str(2**70)], "argument --seed: must be between 0 and"),
    (["train", "--lr-decay", "-1"], "argument --lr-decay: must be between 0.001 and 1"),
    (["train", "--batch-size", "x"], "argument --batch-size: a whole number is needed, got 'x'"),
    (["eval", "m.safetensors", "--subset", "0"], "argument --subset: must be a positive integer"),
    (["ablation", "--seed", "-3"], "argument --seed: must be 0 or more, got -3"),
])
def test_out_of_range_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2 and message in capsys.readouterr().err


def test_iterations_for_a_model_without_routing_is_a_message(capsys, tmp_path):
    assert main(["train", "--model", "cnn", "--iterations", "3", "--device", "cpu",
                 "--output", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "capsviewer train: error: routing iterations apply to capsnet, matrix-capsnet and " \
           "em-capsnet, not to cnn" in err and not (tmp_path / "x.safetensors").exists()


def test_train_with_self_attention_routing_records_it(data_root, tmp_path, capsys):
    out = tmp_path / "capsnet-selfatt.safetensors"
    assert main(["train", "--routing", "self-attention", "--epochs", "1", "--subset", "32",
                 "--test-subset", "32", "--batch-size", "16", "--device", "cpu",
                 "--data-root", str(data_root), "--output", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    loaded = load_checkpoint(out)
    assert loaded.metadata["config"]["routing"] == "self-attention"
    assert loaded.model.config.routing == "self-attention"
    assert loaded.model.log_priors is not None  # β_ij: the self-attention model's own weights
    assert main(["info", str(out)]) == 0
    assert any(line.split() == ["routing", "self-attention"]
               for line in capsys.readouterr().out.splitlines())


def test_routing_for_a_model_that_does_not_choose_it_is_a_message(capsys, tmp_path):
    assert main(["train", "--model", "cnn", "--routing", "uniform", "--device", "cpu",
                 "--output", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "capsviewer train: error: routing applies to capsnet, not to cnn" in err
    assert "Traceback" not in err and not (tmp_path / "x.safetensors").exists()
    with pytest.raises(SystemExit) as exit:
        main(["train", "--routing", "em"])
    assert exit.value.code == 2 and "argument --routing: invalid choice: 'em'" in \
        capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "eval", "info", "export", "report", "ablation",
                                     "average"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit:
        main([command, "--help"])
    text = capsys.readouterr().out
    assert exit.value.code == 0 and text.startswith(f"usage: capsviewer {command} ")
    assert "(default: None)" not in text and "(default: False)" not in text


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

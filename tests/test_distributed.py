"""Data-parallel training: ``capsviewer train`` under torchrun with 2 CPU processes (gloo on
localhost) takes the same steps as one process on the same global batches."""

import os
import subprocess
import sys

import pytest
import torch

from capsviewer.cli import main
from capsviewer.data.batches import shard
from capsviewer.training import load_checkpoint

# 62 images in global batches of 31: the processes get 16 and 15 images per step, so the
# shares must be weighed by their size to average to the single-process gradient.
ARGS = ["train", "--epochs", "1", "--subset", "62", "--test-subset", "40", "--batch-size", "31",
        "--device", "cpu", "--precision", "fp32", "--no-progress"]


def test_shards_are_disjoint_and_cover_the_batch():
    batch = torch.randperm(31)
    shares = [shard(batch, rank, 2) for rank in range(2)]
    assert [len(s) for s in shares] == [16, 15]
    assert sorted(torch.cat(shares).tolist()) == list(range(31))


@pytest.mark.slow  # about 12 s: three processes start torch
def test_slow_two_gloo_processes_match_one_process(data_root, tmp_path, capsys):
    single, parallel = tmp_path / "single.safetensors", tmp_path / "parallel.safetensors"
    assert main([*ARGS, "--data-root", str(data_root), "--output", str(single)]) == 0
    capsys.readouterr()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "capsviewer", *ARGS, "--data-root", str(data_root), "--output", str(parallel)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("training capsnet") == 1  # rank 0 alone reports
    assert "2 processes" in run.stdout

    one, two = load_checkpoint(single), load_checkpoint(parallel)
    assert two.metadata["processes"] == 2 and one.metadata["processes"] == 1
    for key, value in one.model.state_dict().items():
        torch.testing.assert_close(two.model.state_dict()[key], value, rtol=1e-4, atol=2e-5)
    for metric in ("train_loss", "test_loss", "test_accuracy"):
        assert abs(one.metadata["metrics"][metric] - two.metadata["metrics"][metric]) < 1e-4

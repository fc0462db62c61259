"""benchmarks/gpu_run.py, the one-call GPU run of issue 27, kept from rotting: its dry run (CPU,
tiny sizes, every step) runs where the GPU machine's Python would, without the GUI packages
and platformdirs, and writes every figure the real run reports."""

import gzip
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from capsviewer.training import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
ABSENT_ON_THE_GPU_MACHINE = ("platformdirs", "PySide6", "shiboken6", "pyqtgraph", "superqt")


@pytest.fixture(scope="module")
def gpu_run():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        yield importlib.import_module("gpu_run")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def without_gui_packages(folder: Path) -> dict:
    """An environment whose Python cannot import the packages the GPU machine lacks."""
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(f"""import sys

class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {ABSENT_ON_THE_GPU_MACHINE!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, Absent())
""")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(REPO)])}


def figures(node):
    """Every {"value", "unit"} in the report."""
    if isinstance(node, dict):
        if "value" in node:
            yield node
        for value in node.values():
            yield from figures(value)
    elif isinstance(node, list):
        for value in node:
            yield from figures(value)


def test_dry_run_exercises_every_step_without_the_gui_packages(tmp_path, data_root):
    env = without_gui_packages(tmp_path / "site")
    blocked = subprocess.run([sys.executable, "-c", "import platformdirs"], env=env,
                             capture_output=True, text=True)
    assert blocked.returncode != 0 and "platformdirs" in blocked.stderr
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "benchmarks/gpu_run.py", "--dry-run", "--data-root",
                          str(data_root), "--out", str(out)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((out / "gpu-run.json").read_text())
    assert report["dry_run"] and report["finished"] and report["steps_run"] == [1, 2, 3, 4]
    env_info = report["environment"]
    assert env_info["device"] == "cpu" and env_info["gpu"] is None and env_info["torch"]
    assert {"cuda", "cudnn", "precision", "capsviewer"} <= env_info.keys()
    for figure in figures(report):
        assert isinstance(figure["unit"], str) and figure["unit"], figure

    # 1: the CUDA tests ran through pytest (skipped here), and a training run learned
    correctness = report["correctness"]
    assert correctness["status"] == "ok"
    assert correctness["pytest"]["exit_status"] == 0
    assert correctness["pytest"]["counts"].get("skipped", 0) > 0
    assert "failed" not in correctness["pytest"]["counts"]
    assert "tests/test_cuda.py" in (out / "pytest.txt").read_text()
    check = correctness["training_check"]
    assert check["batches"] == 20 and check["loss_fell"] and check["finite"]
    assert sum(check["last_losses"]) < sum(check["first_losses"])

    # 2: throughput per batch size, eager measured, compile skipped with its reason
    speed = report["speed"]
    rows = {(r["mode"], r["batch_size"]): r for r in speed["training"]}
    assert set(rows) == {(m, b) for m in ("eager", "compile") for b in (16, 32, 64)}
    for batch in (16, 32, 64):
        eager = rows["eager", batch]
        assert eager["status"] == "measured", eager
        assert eager["images_per_second"]["value"] > 0
        assert eager["images_per_second"]["unit"] == "images/s"
        assert eager["peak_memory"]["unit"] == "MiB"
        assert rows["compile", batch]["status"] == "skipped"
        assert "no CUDA GPU" in rows["compile", batch]["reason"]
    epochs = [e for e in speed["full_epoch"] if e["status"] == "measured"]
    assert epochs and all(e["images"] == 256 and e["seconds"]["value"] > 0 for e in epochs)
    assert speed["evaluation"][0]["images"] == 200
    assert speed["evaluation"][0]["images_per_second"]["value"] > 0

    # 3: time to the (dry run's) target accuracy
    to_target = report["time_to_accuracy"]
    assert to_target["target"] == {"value": 30.0, "unit": "%"}
    history = to_target["history"]
    assert history and all(0 <= e["test_accuracy"]["value"] <= 100 for e in history)
    if to_target["reached"]:
        reached = history[to_target["epoch"] - 1]["test_accuracy"]["value"]
        assert reached >= 30 and to_target["training_seconds"]["value"] > 0

    # 4: the rule's plan, three complete runs averaged over their last epochs, a verdict
    long = report["long_schedule"]
    assert long["rule"]["bar_accuracy"] == 0.9962 and long["bar_applied"]["value"] == 0
    assert [p["name"] for p in long["plan"]] == ["paper", "reconstruction-x20", "bias-on-s_j"]
    assert all(p["epochs"] == 3 and p["averaged_epochs"] == [2, 3] for p in long["plan"])
    runs = {r["name"]: r for r in long["runs"]}
    assert runs["bias-on-s_j"]["model_config"]["routing_bias"] == 0.1
    assert runs["reconstruction-x20"]["model_config"]["reconstruction_weight"] == 0.01
    for run in runs.values():
        assert run["status"] == "complete" and len(run["history"]) == 3
        averaged = run["averaged"]
        assert averaged["images"] == 200 and 0 <= averaged["correct"] <= 200
        assert averaged["test_accuracy"]["value"] == pytest.approx(averaged["correct"] / 2)
    assert long["ship"] == "paper" and runs["paper"]["meets_bar"]
    assert [r["candidate"] for r in long["runs"]] == ["candidate-capsnet-paper.safetensors",
                                                      None, None]
    candidate = load_checkpoint(out / runs["paper"]["candidate"])
    assert candidate.metadata["gpu_run"]["variant"] == "paper"
    assert [a["epoch"] for a in candidate.metadata["averaged"]] == [2, 3]
    assert candidate.model.config.conv_channels == 16


def test_averaged_window_is_the_last_fifth_of_the_schedule(gpu_run):
    assert gpu_run.averaged_window(3) == [2, 3]
    assert gpu_run.averaged_window(10) == [9, 10]
    assert gpu_run.averaged_window(50) == list(range(41, 51))
    assert gpu_run.averaged_window(52) == list(range(42, 53))


def test_packed_mnist_files_are_unpacked_once(gpu_run, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for index, name in enumerate(gpu_run.MNIST_FILES):
        (raw / f"{name}.gz").write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 1, index])))
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"already here")
    gpu_run.unpack_mnist(tmp_path)
    assert (raw / "train-images-idx3-ubyte").read_bytes()[-1] == 0
    assert (raw / "t10k-images-idx3-ubyte").read_bytes()[-1] == 2
    assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == b"already here"
    assert not list(raw.glob("*.part"))

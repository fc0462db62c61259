"""Robustness report: its perturbations, accuracies on hand-made models with known answers, the
real models, `capsviewer report` end to end, and the development script that puts the report
into README (docs/robustness.py)."""

import importlib.util
import struct
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from capsviewer.analysis.robustness import (
    AffineParameters,
    RobustnessCancelled,
    affine_accuracy,
    clean_accuracy,
    condition_seed,
    draw_affine,
    from_json,
    robustness_report,
    rotation_accuracy,
    shift_offsets,
    to_json,
    translation_accuracy,
)
from capsviewer.cli import main
from capsviewer.report.text import to_markdown

from conftest import REPO


def docs_script():
    """docs/robustness.py, the development script, as a module."""
    spec = importlib.util.spec_from_file_location("docs_robustness", REPO / "docs" / "robustness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BrightestColumn:
    """Predicts the column of the brightest pixel, mod 10 (a model with known answers)."""

    def __call__(self, images):
        column = images.flatten(1).argmax(dim=1) % images.shape[-1]
        return SimpleNamespace(scores=F.one_hot(column % 10, 10).float())


class Constant:
    """Predicts one class whatever it sees: invariant to everything by construction."""

    def __init__(self, digit: int):
        self.digit = digit

    def __call__(self, images):
        digits = torch.full((len(images),), self.digit)
        return SimpleNamespace(scores=F.one_hot(digits, 10).float())


def dots(count: int = 120, seed: int = 0):
    """One bright pixel per image, 6 px or more from the border; label = its column mod 10."""
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(6, 22, count), rng.integers(6, 22, count)
    images = np.zeros((count, 28, 28), np.uint8)
    images[np.arange(count), rows, cols] = 255
    return torch.from_numpy(images)[:, None], torch.from_numpy(cols % 10)


# -- perturbations ---------------------------------------------------------------------------

def test_affine_draws_are_seeded_and_within_range():
    params = AffineParameters()
    draw = draw_affine(2000, params, seed=7)
    again = draw_affine(2000, params, seed=7)
    other = draw_affine(2000, params, seed=8)
    for name in ("rotation_deg", "shear_deg", "scale", "translation_px"):
        assert torch.equal(getattr(draw, name), getattr(again, name))
        assert not torch.equal(getattr(draw, name), getattr(other, name))
    assert draw.rotation_deg.abs().max() <= 20 and draw.rotation_deg.abs().max() > 19
    assert draw.shear_deg.abs().max() <= 15
    assert 0.8 <= draw.scale.min() and draw.scale.max() <= 1.2
    assert draw.translation_px.abs().max() <= 2 and draw.translation_px.shape == (2000, 2)


def test_shifts_move_exactly_k_pixels_along_one_axis():
    dy, dx = shift_offsets(400, 3, seed=1)
    assert torch.all((dy.abs() == 3) ^ (dx.abs() == 3)) and torch.all((dy == 0) ^ (dx == 0))
    assert {(int(a), int(b)) for a, b in zip(dy, dx)} == {(0, 3), (0, -3), (3, 0), (-3, 0)}


def test_condition_seeds_differ_by_condition_and_repeat_by_seed():
    seeds = {condition_seed(0, "affine")} | {condition_seed(0, "shift", k) for k in range(7)}
    assert len(seeds) == 8
    assert condition_seed(3, "shift", 2) == condition_seed(3, "shift", 2)
    assert condition_seed(3, "shift", 2) != condition_seed(4, "shift", 2)


# -- accuracies with known answers --------------------------------------------------------

def test_shift_accuracy_is_the_share_of_vertical_shifts_for_a_column_reader():
    images, labels = dots()
    model = BrightestColumn()
    assert clean_accuracy(model, images, labels).accuracy["model"] == 1.0
    assert translation_accuracy(model, images, labels, 0, seed=5).accuracy["model"] == 1.0
    for k in (1, 4, 6):
        _, dx = shift_offsets(len(labels), k, condition_seed(5, "shift", k))
        result = translation_accuracy(model, images, labels, k, seed=5, batch_size=17)
        assert result.correct["model"] == int((dx == 0).sum())  # a sideways shift is always wrong
        assert result.count == len(labels) and result.value == k and result.seed == 5


def test_rotation_accuracy_turns_counter_clockwise():
    images, labels = dots()
    model = BrightestColumn()
    assert rotation_accuracy(model, images, labels, 0).accuracy["model"] == 1.0
    for quarter_turns, angle in ((1, 90), (2, 180), (3, 270)):
        turned = torch.from_numpy(np.rot90(images.numpy(), quarter_turns, axes=(2, 3)).copy())
        expected = clean_accuracy(model, turned, labels).correct["model"]
        assert rotation_accuracy(model, images, labels, angle).correct["model"] == expected
    assert rotation_accuracy(model, images, labels, 90).accuracy["model"] < 0.5


def test_an_invariant_model_scores_its_clean_accuracy_everywhere():
    images, labels = dots(200, seed=3)
    models = {"three": Constant(3), "seven": Constant(7)}
    share = {name: float(np.mean(labels.numpy() == m.digit)) for name, m in models.items()}
    report = robustness_report(models, images, labels, angles=(0, 15, 90, 180), shifts=(0, 6),
                               seed=2, batch_size=64)
    assert report.images == 200 and len(report.conditions) == 1 + 4 + 1 + 2
    for condition in report.conditions:
        assert condition.accuracy == pytest.approx(share)


def test_progress_and_cancel():
    images, labels = dots(50)
    calls = []
    robustness_report(Constant(0), images, labels, angles=(0, 30), shifts=(0,), batch_size=20,
                      progress=lambda done, total, label: calls.append((done, total, label)))
    assert calls[-1][:2] == (250, 250)  # 5 conditions × 50 images
    assert [d for d, _, _ in calls] == sorted(d for d, _, _ in calls)
    assert {label for _, _, label in calls} == {"clean", "rotation 0°", "rotation 30°",
                                                "random affine", "shift 0 px"}
    with pytest.raises(RobustnessCancelled):
        affine_accuracy(Constant(0), images, labels, should_stop=lambda: True)


# -- the real architectures (untrained, seeded) -------------------------------------------

@pytest.fixture(scope="module")
def real_models(model_files):
    from capsviewer.training import load_checkpoint

    return {name: load_checkpoint(path).model for name, path in model_files.items()}


def test_real_models_identity_conditions_equal_clean(real_models, mnist_test):
    test = mnist_test.subset(40, seed=1)
    real_models["capsnet"].train()  # left as found afterwards, evaluated in eval mode
    report = robustness_report(real_models, test.images, test.labels, angles=(0, 45),
                               shifts=(0, 2), batch_size=16)
    assert real_models["capsnet"].training and not real_models["cnn"].training
    clean = report.condition("clean")
    assert report.condition("rotation", 0).correct == clean.correct
    assert report.condition("shift", 0).correct == clean.correct
    assert set(clean.accuracy) == {"capsnet", "cnn"}
    assert {m.architecture for m in report.models} == {"capsnet", "cnn"}
    assert from_json(to_json(report)) == report
    text = to_markdown(report)
    for piece in ("| CapsNet |", "| CNN |", "random affine", "Gu & Tresp", "28×28"):
        assert piece in text


def test_same_seed_same_numbers(real_models, mnist_test):
    test = mnist_test.subset(30, seed=2)
    cnn = {"cnn": real_models["cnn"]}
    runs = [robustness_report(cnn, test.images, test.labels, angles=(30,), shifts=(5,), seed=4,
                              batch_size=7) for _ in range(2)]
    assert runs[0].conditions == runs[1].conditions


# -- the command and the README script ------------------------------------------------------

def png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_report_command_end_to_end(model_files, data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "figures"
    assert main(["report", "--model", str(model_files["capsnet"]), "--model",
                 str(model_files["cnn"]), "--data-root", str(data_root), "--subset", "50",
                 "--device", "cpu", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| CapsNet |" in printed and "| CNN |" in printed

    report = from_json((out / "robustness.json").read_text())
    assert report.images == 50 and len(report.conditions) == 1 + 13 + 1 + 7
    assert [c.value for c in report.conditions if c.kind == "rotation"] == list(range(0, 181, 15))
    assert report.command.startswith("capsviewer report --model ")
    assert "--subset 50" in report.command and f"--out {out}" in report.command

    markdown = (out / "robustness.md").read_text()
    assert report.command in markdown and "![" in markdown and "(robustness.png)" in markdown
    assert png_size(out / "robustness.png") == (900, 300)
    assert (out / "robustness.png").stat().st_size < 100_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures"]  # nothing else written


def test_report_writes_into_a_folder_of_its_own_by_default(model_files, data_root, tmp_path,
                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--model", str(model_files["cnn"]), "--data-root", str(data_root),
                 "--subset", "10", "--device", "cpu", "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "capsviewer-report").iterdir()) == [
        "robustness.json", "robustness.md", "robustness.png"]
    assert not (tmp_path / "docs").exists()


def test_report_command_explains_what_is_missing(model_files, data_root, tmp_path, capsys,
                                                 monkeypatch, offline):
    missing = tmp_path / "nope.safetensors"
    assert main(["report", "--model", str(missing), "--data-root", str(data_root)]) == 2
    assert f"no checkpoint file at {missing}" in capsys.readouterr().err

    assert main(["report", "--model", str(model_files["cnn"]), "--data-root",
                 str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "The MNIST test set is not available" in error and "train-" not in error
    assert offline and all("t10k" in url for url in offline)  # it tried the test set alone
    assert not (tmp_path / "out").exists()

    import capsviewer.training.model_files as model_files_module

    monkeypatch.setattr(model_files_module, "find_models", lambda dataset="mnist", dirs=None: {})
    assert main(["report", "--data-root", str(data_root)]) == 2
    assert "capsviewer report: error: no mnist models found" in capsys.readouterr().err


def test_replace_between_markers():
    script = docs_script()
    start, end = script.README_START, script.README_END
    text = f"# T\n\nintro\n{start}\nold table\n{end}\nrest\n"
    replaced = script.replace_between_markers(text, "| new |\n")
    assert replaced == f"# T\n\nintro\n{start}\n| new |\n{end}\nrest\n"
    assert script.replace_between_markers(replaced, "| new |") == replaced  # idempotent
    assert script.replace_between_markers("no markers", "x") is None
    assert script.replace_between_markers(f"{end} then {start}", "x") is None


def test_readme_script_end_to_end(model_files, data_root, tmp_path, capsys):
    script = docs_script()
    readme = tmp_path / "README.md"
    readme.write_text(f"# Project\n\n{script.README_START}\nplaceholder\n{script.README_END}"
                      "\n\nmore\n")
    out = tmp_path / "docs"
    args = script.build_parser().parse_args([
        "--model", str(model_files["cnn"]), "--data-root", str(data_root), "--subset", "20",
        "--device", "cpu", "--out", str(out), "--readme", str(readme), "--no-progress"])
    assert script.run_command(args) == 0
    assert "updated the robustness section" in capsys.readouterr().out
    text = readme.read_text()
    assert "placeholder" not in text and text.endswith(f"{script.README_END}\n\nmore\n")
    assert "(docs/robustness.png)" in text and "(docs/robustness.md)" in text
    assert "| CNN |" in text and "`python docs/robustness.py --model " in text
    assert from_json((out / "robustness.json").read_text()).images == 20

    bare = tmp_path / "BARE.md"
    bare.write_text("no markers here\n")
    args = script.build_parser().parse_args(["--model", str(model_files["cnn"]), "--readme",
                                             str(bare), "--out", str(tmp_path / "other")])
    assert script.run_command(args) == 2  # refused before measuring anything
    assert "has no <!-- robustness:start -->" in capsys.readouterr().err
    assert bare.read_text() == "no markers here\n" and not (tmp_path / "other").exists()

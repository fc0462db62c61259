"""Robustness report: perturbations, accuracies on hand-made models with known answers, the
real models, the README markers and `capsviewer report` end to end."""

import argparse
import json
import math
import struct
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from capsviewer.analysis.robustness import (
    AffineDraw,
    AffineParameters,
    RobustnessCancelled,
    affine_accuracy,
    affine_images,
    clean_accuracy,
    condition_seed,
    draw_affine,
    from_json,
    robustness_report,
    rotation_accuracy,
    shift_images,
    shift_offsets,
    to_json,
    to_markdown,
    translation_accuracy,
)
from capsviewer.analysis.rotation import rotate_images
from capsviewer.report_cli import (
    README_END,
    README_START,
    add_report_parser,
    replace_between_markers,
    run_report,
    update_readme,
)


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


def single_pixel(row: int, col: int) -> torch.Tensor:
    image = torch.zeros(1, 1, 28, 28)
    image[0, 0, row, col] = 1.0
    return image


def centre_of_mass(image: torch.Tensor) -> tuple[float, float]:
    pixels = image.squeeze().double()
    rows, cols = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    total = pixels.sum()
    return float((pixels * rows).sum() / total), float((pixels * cols).sum() / total)


def identity_draw(count: int, **changes) -> AffineDraw:
    fields = dict(rotation_deg=torch.zeros(count), shear_deg=torch.zeros(count),
                  scale=torch.ones(count), translation_px=torch.zeros(count, 2))
    fields.update(changes)
    return AffineDraw(**fields)


# -- perturbations ---------------------------------------------------------------------------

def test_affine_identity_rotation_and_translation_match_the_simple_operations():
    images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(affine_images(images, identity_draw(4)), images, atol=1e-5, rtol=0)
    angles = torch.tensor([0.0, 30.0, -45.0, 90.0])
    turned = affine_images(images, identity_draw(4, rotation_deg=angles))[:, 0]
    torch.testing.assert_close(turned, rotate_images(images[:, 0], angles.numpy()),
                               atol=1e-5, rtol=0)
    shifts = torch.tensor([[3.0, 0.0], [0.0, 2.0], [-1.0, 0.0], [0.0, -4.0]])  # (x right, y down)
    moved = affine_images(images, identity_draw(4, translation_px=shifts))
    expected = shift_images(images, shifts[:, 1].long(), shifts[:, 0].long())
    torch.testing.assert_close(moved, expected, atol=1e-5, rtol=0)


def test_shear_and_scale_act_about_the_centre():
    # Pixel (row 16, col 13) sits at x = −0.5, y = +2.5 from the centre (13.5, 13.5).
    shear = math.degrees(math.atan(2.0))  # x' = x + 2y = 4.5 → column 18
    sheared = affine_images(single_pixel(16, 13), identity_draw(1, shear_deg=torch.tensor([shear])))
    assert sheared[0, 0, 16, 18] == pytest.approx(1.0, abs=1e-4)
    scaled = affine_images(single_pixel(16, 13), identity_draw(1, scale=torch.tensor([3.0])))
    row, col = centre_of_mass(scaled)  # (x, y) · 3 = (−1.5, 7.5) → (row 21, col 12)
    assert (row, col) == (pytest.approx(21.0, abs=1e-3), pytest.approx(12.0, abs=1e-3))


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
    image = single_pixel(10, 12)
    moved = shift_images(image, torch.tensor([2]), torch.tensor([-5]))  # 2 down, 5 left
    assert moved[0, 0, 12, 7] == 1.0 and moved.sum() == 1.0
    assert shift_images(image, torch.tensor([0]), torch.tensor([0])) is image


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


# -- README markers and the command ---------------------------------------------------------

def test_replace_between_markers():
    text = f"# T\n\nintro\n{README_START}\nold table\n{README_END}\nrest\n"
    replaced = replace_between_markers(text, "| new |\n")
    assert replaced == f"# T\n\nintro\n{README_START}\n| new |\n{README_END}\nrest\n"
    assert replace_between_markers(replaced, "| new |") == replaced  # idempotent
    assert replace_between_markers("no markers", "x") is None
    assert replace_between_markers(f"{README_END} then {README_START}", "x") is None


def test_update_readme_leaves_a_file_without_markers_alone(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# nothing to replace\n")
    assert update_readme(readme, "table") is False
    assert readme.read_text() == "# nothing to replace\n"


def report_args(*argv):
    parser = argparse.ArgumentParser(prog="capsviewer")
    add_report_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["report", *argv])


def png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_report_command_end_to_end(model_files, data_root, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Project\n\n{README_START}\nplaceholder\n{README_END}\n\nmore\n")
    out = tmp_path / "docs"
    args = report_args("--model", str(model_files["capsnet"]), "--model", str(model_files["cnn"]),
                       "--data-root", str(data_root), "--subset", "50", "--device", "cpu",
                       "--out", str(out), "--readme", str(readme), "--no-progress")
    assert run_report(args) == 0
    printed = capsys.readouterr().out
    assert "| CapsNet |" in printed and "| CNN |" in printed

    report = from_json((out / "robustness.json").read_text())
    assert report.images == 50 and len(report.conditions) == 1 + 13 + 1 + 7
    assert [c.value for c in report.conditions if c.kind == "rotation"] == list(range(0, 181, 15))
    assert report.command.startswith("capsviewer report --model ")
    assert "--subset 50" in report.command

    markdown = (out / "robustness.md").read_text()
    assert report.command in markdown and "![" in markdown and "(robustness.png)" in markdown
    assert png_size(out / "robustness.png") == (900, 300)
    assert (out / "robustness.png").stat().st_size < 100_000

    text = readme.read_text()
    assert "placeholder" not in text and text.endswith(f"{README_END}\n\nmore\n")
    assert "(docs/robustness.png)" in text and "(docs/robustness.md)" in text
    assert "| CapsNet |" in text


def test_report_command_explains_what_is_missing(model_files, data_root, tmp_path, capsys,
                                                 monkeypatch, offline):
    missing = tmp_path / "nope.safetensors"
    assert run_report(report_args("--model", str(missing), "--data-root", str(data_root))) == 2
    assert f"no checkpoint file at {missing}" in capsys.readouterr().err

    args = report_args("--model", str(model_files["cnn"]), "--data-root", str(tmp_path / "none"),
                       "--out", str(tmp_path / "docs"))
    assert run_report(args) == 2
    error = capsys.readouterr().err
    assert "The MNIST test set is not available" in error and "train-" not in error
    assert offline and all("t10k" in url for url in offline)  # it tried the test set alone
    assert not (tmp_path / "docs").exists()

    import capsviewer.training.model_files as model_files_module

    monkeypatch.setattr(model_files_module, "find_models", lambda dataset="mnist", dirs=None: {})
    assert run_report(report_args("--data-root", str(data_root))) == 2
    assert "no mnist models found" in capsys.readouterr().err

    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    args = report_args("--model", str(model_files["cnn"]), "--data-root", str(data_root),
                       "--subset", "10", "--out", str(tmp_path / "docs"), "--readme", str(readme),
                       "--no-progress")
    assert run_report(args) == 0
    assert "markers" in capsys.readouterr().err
    assert readme.read_text() == "no markers here\n"
    assert json.loads((tmp_path / "docs" / "robustness.json").read_text())["images"] == 10

"""The fair-comparison machinery: the support and entropy measurements, the budget arithmetic,
and benchmarks/routing_comparison.py end to end at tiny sizes (--dry-run)."""

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch

from capsviewer.analysis.inspection import inspect_capsnet
from capsviewer.analysis.routing_comparison import (
    CHECKPOINT_RULE,
    ENTRIES,
    assignment_entropy,
    dominant_support,
    winning_support_shares,
)
from capsviewer.models import CapsNet, CapsNetConfig

from conftest import REPO

TINY = CapsNetConfig(conv_channels=16, primary_maps=4, decoder_hidden=(32, 64))


def comparison_script():
    spec = importlib.util.spec_from_file_location(
        "routing_comparison", REPO / "benchmarks" / "routing_comparison.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def images(count=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (255 * torch.rand(count, 1, 28, 28, generator=g)).to(torch.uint8)


def test_support_shares_are_the_routing_tabs_contributions_normalised():
    torch.manual_seed(0)
    model = CapsNet(TINY).eval()
    x = images(3)
    shares, predictions = winning_support_shares(model, x, batch_size=2)
    assert shares.shape == (3, TINY.num_primary)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-5)
    for n in range(3):
        capsules = inspect_capsnet(model, x[n])
        assert predictions[n] == capsules.prediction
        contributions = capsules.contributions(capsules.prediction).reshape(-1)
        np.testing.assert_allclose(shares[n], contributions / contributions.sum(), rtol=1e-4,
                                   atol=1e-7)


def test_dominant_support_finds_a_capsule_made_to_dominate():
    torch.manual_seed(0)
    model = CapsNet(TINY).eval()
    with torch.no_grad():  # capsule (map 2, row 3, col 1) votes 50× louder for every digit
        index = 2 * 36 + 3 * 6 + 1
        model.digit_weights[index] *= 50
    found = dominant_support(model, images(8))
    assert found.position == (2, 3, 1) and found.index == index
    assert found.dominant_on == 8 and found.mean_share > 0.2 > found.uniform_share
    assert "map 2, row 3, col 1: largest on 8/8" in found.describe()


def test_uniform_couplings_have_entropy_one_and_em_less():
    torch.manual_seed(0)
    uniform = CapsNet(CapsNetConfig(**{**TINY.to_dict(), "routing": "uniform"}))
    assert assignment_entropy(uniform, images(4)) == pytest.approx(1.0)
    from capsviewer.models import build_model

    em = build_model("matrix-capsnet")
    assert 0 < assignment_entropy(em, images(4)) < 1


def test_budget_hours_become_one_number_of_epochs():
    script = comparison_script()
    args = script.build_parser().parse_args(["--subset", "1000", "--entries", "dynamic",
                                             "uniform"])
    plan = script.make_plan(args, 1)
    speeds = {"dynamic": script.Speed(100.0, 1000.0, 1.0, 1.0),
              "uniform": script.Speed(200.0, 1000.0, 1.0, 1.0)}
    fixed = script.evaluated_images(plan) / 1000.0 * 2 * 2  # two entries, two seeds
    per_epoch = (1000 / 100 + 1000 / 200 + 2 * plan.monitor_images / 1000) * 2
    hours = (fixed + 7.5 * per_epoch) / 3600
    assert script.epochs_for_budget(plan, speeds, hours) == 7
    _, total = script.estimate_table(plan, speeds, 7)
    assert total == pytest.approx(fixed + 7 * per_epoch)
    with pytest.raises(script.CommandError, match="do not fit one epoch"):
        script.epochs_for_budget(plan, speeds, fixed / 3600)


def test_dry_run_trains_measures_and_writes_the_table(data_root, tmp_path, capsys):
    script = comparison_script()
    argv = ["--dry-run", "--data-root", str(data_root), "--out", str(tmp_path / "docs"),
            "--work", str(tmp_path / "work")]
    assert script.main(argv) == 0
    raw = json.loads((tmp_path / "docs" / "routing-comparison.json").read_text())
    assert raw["rule"] == CHECKPOINT_RULE and raw["epochs"] == 1
    assert set(raw["runs"]) == {e.name for e in ENTRIES}
    for name, (run,) in raw["runs"].items():
        assert 0 <= run["test_accuracy"] <= 1 and set(run["rotation"]) == {"0", "45"}
        assert 0 <= run["entropy"] <= 1 + 1e-6 and run["parameters"] > 0
        assert ("dominant_support" in run) == (name != "em")
    assert raw["runs"]["efficient-capsnet"][0]["parameters"] == 161_824
    doc = (tmp_path / "docs" / "routing-comparison.md").read_text()
    assert CHECKPOINT_RULE in doc
    for entry in ENTRIES:
        assert f"| {entry.title} |" in doc
    assert (tmp_path / "docs" / "routing-comparison.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()

    # A second call reuses every finished run, and refreshes only the marked section.
    doc_path = tmp_path / "docs" / "routing-comparison.md"
    doc_path.write_text("# Notes kept\n\n" + doc + "\nafter\n")
    assert script.main(argv) == 0
    assert capsys.readouterr().out.count("finished before, reused") == len(ENTRIES)
    text = doc_path.read_text()
    assert text.startswith("# Notes kept") and text.endswith("after\n")
    assert text.count("<!-- routing-comparison:start -->") == 1


def test_finished_only_tabulates_the_finished_runs_and_names_the_missing(data_root, tmp_path,
                                                                          capsys):
    script = comparison_script()
    common = ["--dry-run", "--data-root", str(data_root), "--work", str(tmp_path / "work")]
    code = script.main([*common, "--finished-only", "--out", str(tmp_path / "none")])
    assert code == 2 and "has finished in" in capsys.readouterr().err
    assert script.main([*common, "--entries", "uniform", "em", "--out", str(tmp_path / "a")]) == 0
    trained = json.loads((tmp_path / "a" / "routing-comparison.json").read_text())["runs"]
    capsys.readouterr()

    assert script.main([*common, "--finished-only", "--out", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    assert "epoch 1/1" not in printed and "finished before" not in printed  # nothing trained
    raw = json.loads((tmp_path / "b" / "routing-comparison.json").read_text())
    assert raw["runs"] == trained  # the kept results, unchanged
    doc = (tmp_path / "b" / "routing-comparison.md").read_text()
    titles = {e.name: e.title for e in ENTRIES}
    assert f"| {titles['uniform']} | 0 |" in doc and f"| {titles['em']} | 0 |" in doc
    assert f"| {titles['dynamic']} |" not in doc
    missing = doc.split("Not finished yet: ")[1].split(". ")[0]
    assert missing == "; ".join(f"{e.name} (seed 0)" for e in ENTRIES
                                if e.name not in ("uniform", "em"))
    assert script.main([*common, "--finished-only", "--estimate"]) == 2
    assert "give --epochs" in capsys.readouterr().err


def test_a_doc_without_markers_is_refused(data_root, tmp_path, capsys):
    doc = tmp_path / "plain.md"
    doc.write_text("no markers here\n")
    script = comparison_script()
    code = script.main(["--dry-run", "--entries", "uniform", "--data-root", str(data_root),
                        "--out", str(tmp_path), "--work", str(tmp_path / "work"),
                        "--doc", str(doc)])
    assert code == 2
    assert "has no <!-- routing-comparison:start -->" in capsys.readouterr().err
    assert doc.read_text() == "no markers here\n"


@pytest.mark.slow
def test_slow_the_shipped_capsnet_leans_on_one_primary_capsule(mnist_test):
    """docs/routing-comparison.md: map 15, row 5, col 2 (bottom row of the grid; its receptive
    field holds ink, so not the "blank-border" capsule it was first called) has the largest
    share of the winner's support on 299 of the first 300 test images, ≈ 20 %."""
    from capsviewer.training import load_checkpoint
    from capsviewer.training.model_files import SHIPPED_MODELS

    model = load_checkpoint(SHIPPED_MODELS / "capsnet-mnist.safetensors").model
    found = dominant_support(model, mnist_test.images[:300])
    assert found.position == (15, 5, 2)
    assert found.dominant_on == 299
    assert 0.19 < found.mean_share < 0.22

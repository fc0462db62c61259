"""``capsviewer ablation``: the accuracy table against agreement updates k."""

import json

import numpy as np
import pytest

from capsviewer.analysis.routing_diagnostics import accuracy_by_updates
from capsviewer.cli import main
from capsviewer.training import load_checkpoint


def test_table_and_json_match_the_core(model_files, data_root, mnist_test, tmp_path, capsys):
    out = tmp_path / "ablation.json"
    args = ["ablation", "--model", str(model_files["capsnet"]), "--data-root", str(data_root),
            "--test-subset", "40", "--updates", "3", "0", "2", "--batch-size", "16",
            "--device", "cpu", "--json", str(out), "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "on 40 mnist test images" in printed
    for label in ("0 updates (uniform, r = 1)", "2 updates (r = 3, as trained)", "3 updates (r = 4)"):
        assert label in printed
    assert "differ from 2 updates (r = 3, as trained)" in printed
    document = json.loads(out.read_text())
    assert document["test_images"] == 40 and document["trained_iterations"] == 3
    assert [row["updates"] for row in document["rows"]] == [0, 2, 3]  # sorted
    subset = mnist_test.subset(40, seed=0)
    model = load_checkpoint(model_files["capsnet"]).model
    expected = accuracy_by_updates(model, subset.images, subset.labels, (0, 2, 3))
    for n, row in enumerate(document["rows"]):
        assert row["correct"] == int(expected.correct[n]) and row["count"] == 40
        assert row["accuracy"] == pytest.approx(expected.accuracy[n])
        assert row["changed_vs_reference"] == int(expected.changed[n])
        assert f"{100 * row['accuracy']:.2f}%" in printed
    assert np.all(expected.correct <= 40)


def test_without_a_capsnet_it_says_how_to_get_one(monkeypatch, tmp_path, capsys):
    from capsviewer.training import model_files

    monkeypatch.setattr(model_files, "model_dirs", lambda: [tmp_path])
    assert main(["ablation", "--data-root", str(tmp_path)]) == 2
    message = capsys.readouterr().err
    assert "no MNIST CapsNet found" in message and "--model PATH" in message


def test_a_cnn_is_refused(model_files, data_root, capsys):
    assert main(["ablation", "--model", str(model_files["cnn"]), "--data-root", str(data_root)]) == 2
    assert "routing needs a CapsNet" in capsys.readouterr().err


def test_negative_updates_are_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        main(["ablation", "--updates", "-1"])
    assert "must be 0 or more" in capsys.readouterr().err

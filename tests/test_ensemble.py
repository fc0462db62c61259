from types import SimpleNamespace

import pytest
import torch
from torch import nn

from capsviewer.cli import main
from capsviewer.data import ImageSet
from capsviewer.training import evaluate, load_checkpoint
from capsviewer.training.ensemble import evaluate_ensemble


class TableModel(nn.Module):
    """Scores looked up by the image's first pixel, which holds the image's index."""

    def __init__(self, table):
        super().__init__()
        self.register_buffer("table", torch.tensor(table, dtype=torch.float32))

    def forward(self, x):
        index = (x[:, 0, 0, 0] * 255).round().long()
        return SimpleNamespace(scores=self.table[index])


def indexed_images(labels):
    images = torch.zeros(len(labels), 1, 28, 28, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(len(labels), dtype=torch.uint8)
    return ImageSet("mnist", False, images, torch.tensor(labels), tuple("0123456789"[:3]))


def test_ensemble_votes_with_the_mean_score():
    data = indexed_images([0, 1, 2, 0])
    # a: right on 0, 1 (confident), wrong on 2 (weakly), wrong on 3 (confident)
    a = TableModel([[.9, .1, 0], [0, .9, .1], [.4, 0, .3], [0, .9, 0]])
    # b: wrong on 0 (weakly), wrong on 1 (confident), right on 2 (confident), wrong on 3
    b = TableModel([[.4, .5, 0], [0, .2, .8], [0, 0, .9], [0, 0, .8]])
    result = evaluate_ensemble([a, b], data, batch_size=3)
    # means: [.65 .3 0] right; [0 .55 .45] right; [.2 0 .6] right; [0 .45 .4] wrong
    assert (result.correct, result.count) == (3, 4)
    assert result.wrong == (3,)
    assert result.disagreements == 4  # a votes 0, 1, 0, 1; b votes 1, 2, 2, 2
    assert result.error_percent == pytest.approx(25.0)


def test_identical_models_agree_everywhere(model_files, mnist_test):
    data = mnist_test.subset(40)
    models = [load_checkpoint(model_files["cnn"]).model for _ in range(2)]
    result = evaluate_ensemble(models, data, batch_size=16)
    assert result.disagreements == 0
    assert result.correct == evaluate(models[0], data, batch_size=16).correct


def test_ensemble_rejects_one_model_and_mismatched_classes():
    data = indexed_images([0, 1])
    with pytest.raises(ValueError, match="at least two"):
        evaluate_ensemble([TableModel([[1, 0, 0]] * 2)], data)
    with pytest.raises(ValueError, match="same classes"):
        evaluate_ensemble([TableModel([[1, 0, 0]] * 2), TableModel([[1, 0]] * 2)], data)


def test_eval_prints_each_model_then_the_ensemble(model_files, data_root, capsys):
    caps, cnn = str(model_files["capsnet"]), str(model_files["cnn"])
    assert main(["eval", caps, cnn, "--data-root", str(data_root), "--subset", "32",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert printed.index(caps) < printed.index(cnn) < printed.index("ensemble of 2")
    assert "the models disagree on" in printed and "wrong (indices into the subset):" in printed
    assert main(["eval", caps, cnn, "--iterations", "1", "--data-root", str(data_root),
                 "--subset", "8", "--device", "cpu"]) == 2
    assert "not to an ensemble" in capsys.readouterr().err
    assert main(["eval", cnn, "--iterations", "1", "--data-root", str(data_root),
                 "--subset", "8", "--device", "cpu"]) == 2
    assert "applies to capsule networks" in capsys.readouterr().err

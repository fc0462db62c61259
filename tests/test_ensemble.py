import pytest
import torch

from capsviewer.cli import main
from capsviewer.training import evaluate, load_checkpoint
from capsviewer.training.ensemble import evaluate_ensemble


def table(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_ensemble_votes_with_the_mean_score():
    labels = torch.tensor([0, 1, 2, 0])
    # a: right on 0, 1 (confident), wrong on 2 (weakly), wrong on 3 (confident)
    a = table([[.9, .1, 0], [0, .9, .1], [.4, 0, .3], [0, .9, 0]])
    # b: wrong on 0 (weakly), wrong on 1 (confident), right on 2 (confident), wrong on 3
    b = table([[.4, .5, 0], [0, .2, .8], [0, 0, .9], [0, 0, .8]])
    result = evaluate_ensemble([a, b], labels)
    # means: [.65 .3 0] right; [0 .55 .45] right; [.2 0 .6] right; [0 .45 .4] wrong
    assert (result.correct, result.count) == (3, 4)
    assert result.wrong == (3,)
    assert result.disagreements == 4  # a votes 0, 1, 0, 1; b votes 1, 2, 2, 2
    assert result.error_percent == pytest.approx(25.0)


def test_identical_models_agree_everywhere(model_files, mnist_test):
    data = mnist_test.subset(40)
    alone = evaluate(load_checkpoint(model_files["cnn"]).model, data, batch_size=16,
                     keep_scores=True)
    assert alone.scores.shape == (40, 10)
    result = evaluate_ensemble([alone.scores, alone.scores.clone()], data.labels)
    assert result.disagreements == 0
    assert result.correct == alone.correct


def test_ensemble_rejects_one_model_and_mismatched_classes():
    labels = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="at least two"):
        evaluate_ensemble([table([[1, 0, 0]] * 2)], labels)
    with pytest.raises(ValueError, match="same classes"):
        evaluate_ensemble([table([[1, 0, 0]] * 2), table([[1, 0]] * 2)], labels)


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

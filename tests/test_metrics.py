import torch

from capsviewer.training.metrics import correct, count_correct, label_hits

SCORES = torch.tensor([
    [0.1, 0.0, 0.2, 0.9, 0.0, 0.3, 0.0, 0.8, 0.0, 0.0],  # two highest: 3, 7; third: 5
    [0.1, 0.0, 0.2, 0.9, 0.0, 0.3, 0.0, 0.8, 0.0, 0.0],
    [0.1, 0.0, 0.2, 0.9, 0.0, 0.3, 0.0, 0.8, 0.0, 0.0],
    [0.0, 0.6, 0.7, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1],  # two highest: 2, 1
])


def test_both_labels_must_be_the_two_highest_scores():
    labels = torch.tensor([[7, 3], [3, 5], [0, 4], [1, 2]])
    assert label_hits(SCORES, labels).tolist() == [
        [True, True], [True, False], [False, False], [True, True]]
    assert correct(SCORES, labels).tolist() == [True, False, False, True]
    assert count_correct(SCORES, labels).item() == 2
    assert label_hits(SCORES, labels).float().mean().item() == 5 / 8  # per-digit accuracy


def test_one_label_per_image_is_the_highest_score():
    assert correct(SCORES, torch.tensor([3, 7, 3, 2])).tolist() == [True, False, True, True]
    assert count_correct(SCORES, torch.tensor([3, 7, 3, 2])).item() == 3

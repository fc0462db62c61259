import pytest
import torch

from capsviewer.maths.losses import (
    capsule_loss,
    class_targets,
    margin_loss,
    reconstruction_error,
)


def test_margin_loss_hand_computed():
    lengths = torch.tensor([[0.95, 0.05, 0.5], [0.2, 0.3, 0.09]])
    labels = torch.tensor([0, 1])
    # sample 0: true 0.95 ≥ 0.9 → 0; 0.05 ≤ 0.1 → 0; 0.5 → 0.5·0.4² = 0.08
    # sample 1: true 0.3 → 0.6² = 0.36; 0.2 → 0.5·0.1² = 0.005; 0.09 → 0
    expected = (0.08 + 0.365) / 2
    assert margin_loss(lengths, labels).item() == pytest.approx(expected, abs=1e-7)


def test_margin_loss_zero_when_all_margins_met():
    lengths = torch.full((3, 10), 0.1)
    labels = torch.tensor([2, 5, 9])
    lengths[torch.arange(3), labels] = 0.9
    assert margin_loss(lengths, labels).item() == 0.0


def test_total_loss_adds_weighted_summed_squared_error():
    images = torch.zeros(2, 1, 28, 28)
    recon = torch.full((2, 1, 28, 28), 0.5)
    lengths = torch.tensor([[0.9] + [0.1] * 9, [0.1] * 9 + [0.9]])
    out = capsule_loss(lengths, torch.tensor([0, 9]), recon, images)
    assert reconstruction_error(recon, images).item() == pytest.approx(784 * 0.25)
    assert out.margin.item() == pytest.approx(0.0, abs=1e-7)
    assert out.total.item() == pytest.approx(0.0005 * 196.0, rel=1e-6)


def test_margin_loss_with_two_digits_per_image_hand_computed():
    lengths = torch.tensor([[0.95, 0.3, 0.5, 0.05], [0.2, 0.8, 0.9, 0.6]])
    labels = torch.tensor([[0, 1], [2, 3]])
    # sample 0: T = (1, 1, 0, 0): 0.95 → 0; 0.3 → 0.6² = 0.36; 0.5 → 0.5·0.4² = 0.08; 0.05 → 0
    # sample 1: T = (0, 0, 1, 1): 0.2 → 0.5·0.1² = 0.005; 0.8 → 0.5·0.7² = 0.245; 0.9 → 0;
    #           0.6 → 0.3² = 0.09
    expected = (0.36 + 0.08 + 0.005 + 0.245 + 0.09) / 2
    assert margin_loss(lengths, labels).item() == pytest.approx(expected, abs=1e-7)
    assert class_targets(labels, 4).tolist() == [[1, 1, 0, 0], [0, 0, 1, 1]]
    # the order of the two labels does not matter
    assert margin_loss(lengths, labels.flip(1)).item() == pytest.approx(expected, abs=1e-7)


def test_two_digit_reconstruction_errors_add_up():
    recon = torch.zeros(2, 2, 1, 36, 36)
    targets = torch.zeros(2, 2, 1, 36, 36)
    targets[:, 0] = 0.5  # digit 1 missed everywhere: 1296 · 0.25 per image
    targets[0, 1, 0, :2, :] = 1.0  # digit 2 of image 0 missed on 72 pixels
    lengths = torch.tensor([[0.9, 0.9, 0.1], [0.1, 0.9, 0.9]])
    out = capsule_loss(lengths, torch.tensor([[0, 1], [1, 2]]), recon, targets)
    assert out.margin.item() == pytest.approx(0.0, abs=1e-7)
    assert out.reconstruction.item() == pytest.approx(1296 * 0.25 + 72 / 2)
    assert out.total.item() == pytest.approx(0.0005 * (324 + 36), rel=1e-6)
    with pytest.raises(ValueError, match="differ in shape"):
        reconstruction_error(recon, targets[:, 0])

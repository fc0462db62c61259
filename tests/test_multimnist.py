"""MultiMNIST (paper Section 6): the pair generator, the 36×36 models, their two-digit losses,
and a short training run that must beat chance-level pairing."""

import math

import pytest
import torch

from capsviewer.data import ImageSet, to_float
from capsviewer.data.multimnist import (
    IMAGE_SIZE,
    MAX_SHIFT,
    PAD,
    PairIndex,
    compose_pairs,
    draw_pairs,
    draw_partners,
    fixed_test_pairs,
)
from capsviewer.models import MULTIMNIST_MODELS, build_model
from capsviewer.training.metrics import correct, label_hits

# sha256 of fixed_test_pairs(MNIST test split): same seed, same bytes on any machine. If a
# torch release changes its CPU random numbers this fails: the test set would have changed.
TEST_SET_SHA256 = "6305d47a820a8d46d1bed3155dfe20a13e47dc4fd7e1bbc8d8c1c94b70086e62"


def multimnist(name, **overrides):
    architecture, config = MULTIMNIST_MODELS[name]
    return build_model(architecture, {**config, **overrides})


def test_pairs_are_two_digits_of_different_classes_each_shifted_at_most_four_pixels(mnist_test):
    pairs = fixed_test_pairs(mnist_test, size=400, seed=5)
    assert pairs.images.shape == (400, 1, 36, 36) and pairs.images.dtype == torch.uint8
    assert pairs.digits.shape == (400, 2, 1, 36, 36) and pairs.labels.shape == (400, 2)
    assert IMAGE_SIZE == 36
    assert torch.equal(pairs.pairs.digits[:, 0], torch.arange(400))  # test digit n in pair n
    assert torch.equal(pairs.labels, mnist_test.labels[pairs.pairs.digits])
    assert (pairs.labels[:, 0] != pairs.labels[:, 1]).all()
    shifts = pairs.pairs.shifts
    assert shifts.abs().max() == MAX_SHIFT and set(shifts.unique().tolist()) == set(range(-4, 5))
    # Each digit alone is its 28×28 source pasted at (4 + dy, 4 + dx) on a blank 36×36 canvas.
    for n in (0, 1, 57, 399):
        for k in (0, 1):
            (dy, dx), source = shifts[n, k].tolist(), mnist_test.images[pairs.pairs.digits[n, k]]
            canvas = torch.zeros(1, 36, 36, dtype=torch.uint8)
            canvas[:, PAD + dy:PAD + dy + 28, PAD + dx:PAD + dx + 28] = source
            assert torch.equal(pairs.digits[n, k], canvas)
    # Overlaid as the authors' generator does: the pixel-wise sum, clipped at 255.
    total = pairs.digits.sum(dim=1, dtype=torch.int32)
    assert torch.equal(pairs.images, total.clamp(max=255).to(torch.uint8))
    assert (total > 255).any()  # the digits overlap: clipping happens
    maxed = compose_pairs(mnist_test.images, mnist_test.labels, pairs.pairs, overlay="max")
    assert torch.equal(maxed.images, pairs.digits.amax(dim=1))
    assert torch.equal(maxed.digits, pairs.digits)


def test_partners_are_uniform_over_the_images_of_other_classes():
    labels = torch.tensor([0] * 10 + [1] * 30 + [2] * 60)
    first = torch.zeros(60_000, dtype=torch.long)  # always image 0, of class 0
    partners = draw_partners(labels, first, torch.Generator().manual_seed(1))
    counts = torch.bincount(partners, minlength=100)
    assert counts[:10].sum() == 0  # never its own class
    # 90 eligible images, each drawn 1/90 of the time: 666.7 ± 25.6
    assert (counts[10:] - 60_000 / 90).abs().max() < 6 * math.sqrt(60_000 / 90)
    with pytest.raises(ValueError, match="same class"):
        draw_partners(torch.zeros(5, dtype=torch.long), first[:3])


def test_the_test_set_is_fixed_by_its_seed(mnist_test):
    first, again = fixed_test_pairs(mnist_test), fixed_test_pairs(mnist_test)
    assert len(first) == 10_000 and first.checksum() == TEST_SET_SHA256
    assert torch.equal(first.images, again.images) and torch.equal(first.digits, again.digits)
    other = fixed_test_pairs(mnist_test, seed=1)
    assert other.checksum() != first.checksum()
    assert (other.images != first.images).flatten(1).any(1).float().mean() > 0.9


def test_training_pairs_drawn_a_whole_epoch_at_once_compose_batch_by_batch(mnist_test):
    generator = torch.Generator().manual_seed(0)
    plan = draw_pairs(mnist_test.labels, torch.randperm(10_000, generator=generator), generator)
    whole = compose_pairs(mnist_test.images, mnist_test.labels, plan[:96])
    parts = [compose_pairs(mnist_test.images, mnist_test.labels, plan[i:i + 32])
             for i in range(0, 96, 32)]
    assert torch.equal(whole.images, torch.cat([p.images for p in parts]))
    assert torch.equal(whole[40:50].labels, parts[1][8:18].labels)
    single = PairIndex(torch.tensor([[3, 4]]), torch.tensor([[[0, 0], [4, -4]]]))
    one = compose_pairs(mnist_test.images, mnist_test.labels, single)
    assert one.labels.tolist() == [mnist_test.labels[[3, 4]].tolist()]
    with pytest.raises(ValueError, match="overlay"):
        compose_pairs(mnist_test.images, mnist_test.labels, single, overlay="mean")


def test_models_take_36_pixel_inputs_at_the_papers_sizes():
    capsnet = multimnist("capsnet")
    assert capsnet.config.primary_grid == (32, 10, 10) and capsnet.config.num_primary == 3200
    assert sum(p.numel() for p in capsnet.parameters()) == 11_361_808  # the paper: 11.36M
    assert sum(p.numel() for p in multimnist("cnn").parameters()) == 24_535_306  # 24.56M
    assert capsnet.receptive_field(9, 9) == (18, 18, 35, 35)


def test_capsnet_reconstructs_each_digit_from_its_own_capsule(mnist_test):
    torch.manual_seed(0)
    model = multimnist("capsnet", conv_channels=16, primary_maps=4, decoder_hidden=(32, 64))
    batch = fixed_test_pairs(mnist_test, size=6)
    x, y, targets = to_float(batch.images), batch.labels, to_float(batch.digits)
    out = model(x, y)
    assert out.scores.shape == (6, 10) and out.reconstruction.shape == (6, 2, 1, 36, 36)
    for k in (0, 1):
        torch.testing.assert_close(out.reconstruction[:, k], model.decode(out.digit_capsules, y[:, k]))
    loss = model.loss(out, targets, y)
    errors = [(out.reconstruction[:, k] - targets[:, k]).pow(2).sum((1, 2, 3)).mean() for k in (0, 1)]
    torch.testing.assert_close(loss.reconstruction, errors[0] + errors[1])
    torch.testing.assert_close(loss.total, loss.margin + 0.0005 * loss.reconstruction)
    loss.total.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        assert torch.isfinite(parameter.grad).all(), name
    model.eval()
    with torch.no_grad():
        inferred = model(x)
    longest = inferred.scores.topk(2, dim=1).indices
    torch.testing.assert_close(inferred.reconstruction, model.decode(inferred.digit_capsules, longest))
    with pytest.raises(ValueError, match=r"expected \(6, 2\)"):
        model(x, y[:, 0])
    with pytest.raises(ValueError, match="differ in shape"):
        model.loss(out, x, y)  # the overlay is not a per-digit target


def test_cnn_baseline_is_a_two_label_classifier():
    torch.manual_seed(0)
    model = multimnist("cnn-small")
    torch.nn.init.zeros_(model.classifier.weight)
    torch.nn.init.zeros_(model.classifier.bias)
    x, y = torch.rand(3, 1, 36, 36), torch.tensor([[1, 2], [3, 4], [0, 9]])
    out = model(x, y)
    # zero logits: every sigmoid is 1/2 and each of the 10 classes costs ln 2
    torch.testing.assert_close(out.scores, torch.full((3, 10), 0.5))
    loss = model.loss(out, x, y)
    torch.testing.assert_close(loss.total, torch.tensor(10 * math.log(2)))
    loss.total.backward()
    # ∂L/∂bias_k = Σ_b (σ(0) − T_bk) / B: 1/2 − 1/3 for the six classes present once, else 1/2
    expected = torch.full((10,), 0.5)
    expected[[0, 1, 2, 3, 4, 9]] = 0.5 - 1 / 3
    torch.testing.assert_close(model.classifier.bias.grad, expected)


@pytest.mark.slow
def test_a_short_training_run_pairs_digits_far_better_than_chance(mnist_train, mnist_test):
    """Without the trainer: 60 steps of 64 pairs drawn afresh from 300 training digits, a small
    CapsNet; on 300 test pairs both digits must be the two longest capsules far more often
    than the 1 in 45 of a random pair of classes."""
    torch.manual_seed(0)
    model = multimnist("capsnet", conv_channels=16, primary_maps=4, decoder_hidden=(32, 64),
                       vote_init_std=0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    train = mnist_train.subset(300, seed=0)
    generator = torch.Generator().manual_seed(0)
    for step in range(60):
        if step % 4 == 0:  # a new epoch: new order, partners and shifts
            plan = draw_pairs(train.labels, torch.randperm(300, generator=generator), generator)
        batch = compose_pairs(train.images, train.labels, plan[step % 4 * 64:(step % 4 + 1) * 64])
        out = model(to_float(batch.images), batch.labels)
        loss = model.loss(out, to_float(batch.digits), batch.labels).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test = fixed_test_pairs(mnist_test, size=300)
    model.eval()
    with torch.no_grad():
        scores = model(to_float(test.images)).scores
    assert correct(scores, test.labels).float().mean() > 4 / 45
    assert label_hits(scores, test.labels).float().mean() > 0.3  # chance: 2 in 10


def test_a_test_set_larger_than_its_split_reuses_its_digits_in_order(mnist_test):
    small = ImageSet("mnist", False, mnist_test.images[:12], mnist_test.labels[:12],
                     mnist_test.classes)
    pairs = fixed_test_pairs(small, size=30)
    assert torch.equal(pairs.pairs.digits[:, 0], torch.arange(30) % 12)
    assert pairs.pairs.digits.max() < 12

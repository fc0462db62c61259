"""Efficient-CapsNet's augmentation recipe (capsviewer.data.augmentation) and its use in training."""

import pytest
import torch

from capsviewer.data.augmentation import (
    ANGLE,
    DOWN,
    EFFICIENT_CAPSNET,
    ERASE_COL,
    ERASE_ROW,
    OFFSET,
    RIGHT,
    SHIFT_COL,
    SHIFT_ROW,
    SQUEEZE,
    apply_recipe,
    draw_recipe,
    erase_patches,
    ink_margins,
    shifts_within_margins,
    squeeze_images,
)
from capsviewer.data.tasks import get_task
from capsviewer.data.transforms import affine_images, shift_images
from capsviewer.training import TrainConfig, Trainer, TrainingError


TINY = {"conv_channels": 16, "primary_maps": 4, "decoder_hidden": [32, 64]}


def box(rows: slice, cols: slice, count: int = 1) -> torch.Tensor:
    images = torch.zeros(count, 1, 28, 28)
    images[:, 0, rows, cols] = 1.0
    return images


def test_draws_follow_the_authors_ranges_and_repeat_with_the_seed():
    draws = draw_recipe(20_000, generator=torch.Generator().manual_seed(1))
    again = draw_recipe(20_000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(draws, again)
    angles = draws[ANGLE]
    assert torch.equal(angles, angles.round()) and angles.abs().max() == 29  # int(±29.997)
    rotated = (angles != 0).double().mean()
    assert 0.40 < rotated < 0.50  # half the images, less those whose angle truncates to 0
    assert set(draws[SQUEEZE].unique().tolist()) == set(range(1, 8))
    assert draws[SQUEEZE].mean() < 3  # |N(0, 0.33)|: small squeezes are the common ones
    assert set(draws[OFFSET].unique().tolist()) == {0, 1}
    for row in (ERASE_ROW, ERASE_COL):
        assert set(draws[row].unique().tolist()) == set(range(4, 23))
    for row in (SHIFT_ROW, SHIFT_COL):
        assert 0 <= draws[row].min() and draws[row].max() < 1
    for row in (DOWN, RIGHT):
        assert set(draws[row].unique().tolist()) == {0, 1}


def test_margins_count_blank_lines_around_the_ink():
    images = torch.cat([box(slice(5, 10), slice(3, 21)), torch.zeros(1, 1, 28, 28)])
    assert ink_margins(images).tolist() == [[5, 0], [18, 0], [3, 0], [7, 0]]


def test_shifts_are_the_authors_fractions_of_the_margin_on_the_drawn_side():
    images = box(slice(5, 10), slice(3, 21), count=2)  # margins: top 5, bottom 18, left 3, right 7
    draws = torch.zeros(9, 2)
    draws[SHIFT_ROW], draws[SHIFT_COL] = torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.9])
    draws[DOWN], draws[RIGHT] = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0])
    shifts = shifts_within_margins(images, draws)
    # up: floor(−0.5·5) = −3; down: floor(0.5·19) = 9; right: floor(0.5·8) = 4; left: floor(−0.9·3) = −3
    assert shifts.tolist() == [[-3, 9], [4, -3]]


def test_shifts_never_push_ink_out_of_the_frame(mnist_test):
    images = mnist_test.images[:500].float().div(255)
    draws = draw_recipe(500, generator=torch.Generator().manual_seed(2))
    draws[SHIFT_ROW] = draws[SHIFT_COL] = 0.9999  # the largest moves the recipe draws
    shifts = shifts_within_margins(images, draws)
    moved = shift_images(images, shifts, max_shift=27)
    torch.testing.assert_close(moved.sum((1, 2, 3)), images.sum((1, 2, 3)))
    top, bottom, left, right = ink_margins(images)
    assert torch.equal(shifts[0], torch.where(draws[DOWN] > 0, bottom, -top))
    assert torch.equal(shifts[1], torch.where(draws[RIGHT] > 0, right, -left))


def test_a_squeeze_narrows_the_image_and_places_it_at_its_offset():
    images = box(slice(0, 28), slice(0, 28), count=3)
    widths, offsets = torch.tensor([1.0, 4.0, 7.0]), torch.tensor([0.0, 1.0, 1.0])
    squeezed = squeeze_images(images, widths, offsets)
    for b, (w, o) in enumerate([(1, 0), (4, 1), (7, 1)]):
        inked = (squeezed[b, 0, 14] > 0.5).nonzero().flatten()
        start = w // 2 + o
        assert inked.tolist() == list(range(start, start + 28 - w)), (w, o)
    one_stroke = box(slice(4, 24), slice(10, 18))  # 8 px wide: 7 px less of the width → 6 px
    narrowed = squeeze_images(one_stroke, torch.tensor([7.0]), torch.tensor([0.0]))
    assert (narrowed[0, 0, 14] > 0.5).sum() == 6


def test_erasing_zeroes_exactly_the_4x4_patch():
    images = torch.ones(2, 1, 28, 28)
    erased = erase_patches(images, torch.tensor([4.0, 22.0]), torch.tensor([10.0, 22.0]))
    assert (erased == 0).sum((1, 2, 3)).tolist() == [16, 16]
    assert (erased[0, 0, 4:8, 10:14] == 0).all() and (erased[1, 0, 22:26, 22:26] == 0).all()


def test_the_recipe_rotates_only_the_images_drawn_for_it(mnist_test):
    images = mnist_test.images[:2].float().div(255)
    draws = torch.zeros(9, 2)
    draws[ANGLE] = torch.tensor([0.0, 20.0])
    draws[SQUEEZE], draws[ERASE_ROW], draws[ERASE_COL] = 1.0, 4.0, 4.0  # the mildest others
    out = apply_recipe(images, draws)
    expected = torch.cat([images[:1], affine_images(images[1:], 20.0)])
    margins = shifts_within_margins(expected, draws)  # zero amounts: no shift
    assert not margins.any()
    expected = erase_patches(squeeze_images(expected, draws[SQUEEZE], draws[OFFSET]),
                             draws[ERASE_ROW], draws[ERASE_COL])
    torch.testing.assert_close(out, expected)
    assert (out[1] - out[0]).abs().sum() > 0


def test_the_task_augments_each_epoch_afresh_and_only_with_the_recipe(mnist_test):
    task = get_task("mnist", augmentation=EFFICIENT_CAPSNET)
    images, labels = mnist_test.images[:64], mnist_test.labels[:64]
    generator = torch.Generator().manual_seed(0)
    first, second = (task.draw_epoch(labels, generator, torch.device("cpu")) for _ in range(2))
    positions = torch.arange(64)
    a, b = task.batch(images, labels, first, positions), task.batch(images, labels, second, positions)
    assert not torch.equal(a.images, b.images)
    assert torch.equal(a.labels, labels[first.order]) and a.targets is a.images
    plain = images[first.order].float().div(255)
    changed = (a.images - plain).abs().sum((1, 2, 3)) > 0
    assert changed.all()  # every image loses a patch and is squeezed
    with pytest.raises(KeyError, match="unknown augmentation 'flip'"):
        get_task("mnist", augmentation="flip")


def test_training_with_the_recipe_runs_resumes_exactly_and_is_refused_for_pairs(
        mnist_train, mnist_test, tmp_path):
    values = dict(model_config=TINY, augmentation=EFFICIENT_CAPSNET, epochs=2, batch_size=16,
                  subset=48, test_subset=32, device="cpu", seed=3)
    straight = Trainer(TrainConfig(**values, output=str(tmp_path / "s.safetensors")),
                       mnist_train, mnist_test)
    straight.run()
    out = str(tmp_path / "m.safetensors")
    for event in Trainer(TrainConfig(**values, output=out), mnist_train, mnist_test).events():
        if type(event).__name__ == "EpochResult":
            break  # interrupted after epoch 1
    resumed = Trainer(TrainConfig(**values, output=out, resume=True), mnist_train, mnist_test)
    resumed.run()
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)
    with pytest.raises(TrainingError, match="efficient-capsnet augmentation is for single images"):
        Trainer(TrainConfig(model="capsnet", dataset="multimnist", augmentation=EFFICIENT_CAPSNET))


def test_the_robustness_report_says_which_models_saw_rotations_in_training():
    from capsviewer.analysis.robustness import ModelInfo, trained_augmentation
    from capsviewer.report.text import caveats

    assert trained_augmentation({"max_shift": 2}) == {  # a run from before the option
        "training_shift_px": 2, "training_augmentation": "shift"}
    assert trained_augmentation({"max_shift": 2, "augmentation": EFFICIENT_CAPSNET}) == {
        "training_shift_px": None, "training_augmentation": EFFICIENT_CAPSNET}
    assert trained_augmentation(None)["training_augmentation"] is None

    class Report:
        models = [ModelInfo("capsnet", "capsnet", **trained_augmentation({"max_shift": 2})),
                  ModelInfo("efficient-capsnet", "efficient-capsnet", **trained_augmentation(
                      {"augmentation": EFFICIENT_CAPSNET}))]

    said = " ".join(caveats(Report))
    assert "Efficient-CapsNet (self-attention routing) was trained with Efficient-CapsNet's " \
           "augmentation" in said and "rotations of up to 30° are within what it saw" in said
    assert "the others were trained with random shifts of up to 2 px and without rotation" in said
    Report.models = Report.models[:1]
    assert "The models were trained with random shifts of up to 2 px and without rotation" \
           in " ".join(caveats(Report))

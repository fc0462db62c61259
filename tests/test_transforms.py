"""The image-batch transforms (capsviewer.data.transforms): uint8 → float, batch shapes, a
model's device, integer shifts, rotation and affine warps, each checked on images whose answer
is known, and rotation against torchvision."""

import math

import numpy as np
import pytest
import torch

from capsviewer.analysis.rotation import DEFAULT_ANGLES
from capsviewer.data.transforms import (
    affine_images,
    as_batch,
    model_device,
    placement,
    random_shift,
    rotate_images,
    shift_images,
    to_float,
)
from capsviewer.models import build_model

from test_rotation import seven


def single_pixel(row: int, col: int) -> torch.Tensor:
    image = torch.zeros(1, 1, 28, 28)
    image[0, 0, row, col] = 1.0
    return image


def centre_of_mass(image: torch.Tensor) -> tuple[float, float]:
    pixels = image.squeeze().double()
    rows, cols = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    total = pixels.sum()
    return float((pixels * rows).sum() / total), float((pixels * cols).sum() / total)


def centred_square() -> np.ndarray:
    image = np.zeros((28, 28), np.float32)
    image[9:19, 9:19] = 1.0  # symmetric about the centre (13.5, 13.5)
    return image


# -- pixels, shapes and devices ------------------------------------------------------------------

def test_to_float_scales_uint8_and_keeps_floats():
    pixels = np.array([[0, 51, 255]], np.uint8)
    np.testing.assert_allclose(to_float(pixels).numpy(), [[0.0, 0.2, 1.0]], atol=1e-7)
    assert to_float(torch.from_numpy(pixels)).dtype == torch.float32
    floats = torch.tensor([0.25, 0.5], dtype=torch.float64)
    assert torch.equal(to_float(floats), floats.float())  # already in [0, 1]: not divided


def test_as_batch_shapes():
    image = np.full((28, 28), 255, np.uint8)
    assert as_batch(image).shape == (1, 1, 28, 28) and as_batch(image).max() == 1.0
    assert as_batch(np.stack([image] * 3)).shape == (3, 1, 28, 28)
    assert as_batch(torch.zeros(2, 1, 28, 28)).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="images must be"):
        as_batch(np.zeros((1, 1, 1, 28, 28)))


def test_placement_of_a_model():
    model = build_model("cnn").to(torch.float64)
    assert placement(model) == (torch.device("cpu"), torch.float64)
    assert model_device(model) == torch.device("cpu")
    assert placement(object()) == (torch.device("cpu"), torch.float32)  # no parameters


# -- shifts --------------------------------------------------------------------------------------

def test_shift_moves_whole_pixels_with_zero_fill():
    image = single_pixel(10, 12)
    moved = shift_images(image, torch.tensor([[2], [-5]]))  # 2 down, 5 left
    assert moved[0, 0, 12, 7] == 1.0 and moved.sum() == 1.0
    assert shift_images(image, torch.tensor([[0], [0]])) is image
    bounded = shift_images(image, torch.tensor([[2], [-5]]), max_shift=5)
    assert torch.equal(bounded, moved)


def test_random_shift_moves_each_image_by_at_most_two_pixels():
    g = torch.Generator().manual_seed(0)
    images = torch.zeros(500, 1, 28, 28, dtype=torch.uint8)
    images[:, 0, 14, 14] = 255  # one bright pixel in the centre
    shifted = random_shift(images, 2, g)
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    position = shifted[:, 0].flatten(1).argmax(1)
    dy, dx = position // 28 - 14, position % 28 - 14
    assert dy.abs().max() == 2 and dx.abs().max() == 2
    assert (shifted.flatten(1).sum(1) == 255).all()  # nothing lost, nothing duplicated
    assert len(set(zip(dy.tolist(), dx.tolist()))) == 25  # every offset occurs
    # zero padding: shifting a full image by (dy, dx) blanks 28|dy| + 28|dx| − |dy||dx| pixels
    full = torch.full((200, 1, 28, 28), 7, dtype=torch.uint8)
    blank = (random_shift(full, 2, g) == 0).sum(dim=(1, 2, 3))
    allowed = {28 * a + 28 * b - a * b for a in range(3) for b in range(3)}
    assert set(blank.tolist()) == allowed


# -- rotation and affine warps ---------------------------------------------------------------

def test_rotate_zero_is_identity():
    image = seven()
    np.testing.assert_allclose(rotate_images(image, [0.0])[0], image, atol=1e-5)


def test_rotate_quarter_turns():
    square = centred_square()
    np.testing.assert_allclose(rotate_images(square, [90.0])[0], square, atol=1e-5)
    image = seven()
    turned = image
    for _ in range(4):
        turned = rotate_images(turned, [90.0])[0]
    np.testing.assert_allclose(turned, image, atol=1e-4)
    np.testing.assert_allclose(rotate_images(image, [90.0])[0], np.rot90(image), atol=1e-4)


def test_positive_angle_is_counter_clockwise():
    image = np.zeros((28, 28), np.float32)
    image[13, 24] = 1.0  # right of the centre
    turned = rotate_images(image, [90.0])[0]
    row, col = np.unravel_index(np.argmax(turned), turned.shape)
    assert row < 13 and col == 13  # now above the centre (row 0 is the top)


def test_rotate_kinds_and_pairs():
    image = seven()
    many = rotate_images(image, DEFAULT_ANGLES)
    assert isinstance(many, np.ndarray) and many.shape == (72, 28, 28)
    tensor = rotate_images(torch.from_numpy(image), [30.0, 60.0])
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (2, 28, 28)
    pairs = rotate_images(np.stack([image, image.T]), [10.0, -20.0])
    np.testing.assert_allclose(pairs[1], rotate_images(image.T, [-20.0])[0])
    with pytest.raises(ValueError):
        rotate_images(np.stack([image] * 3), [1.0, 2.0])
    # one angle for a batch (one sampling grid) = that angle repeated per image
    batch = np.stack([image, image.T, centred_square()])
    np.testing.assert_allclose(rotate_images(batch, [25.0]), rotate_images(batch, [25.0] * 3),
                               atol=1e-7)


def test_rotation_matches_torchvision(mnist_test):
    import torchvision.transforms.v2.functional as TF

    images = mnist_test.images[:4, 0].float() / 255
    for angle in (15.0, 45.0, 90.0, -120.0, 180.0):
        ours = rotate_images(images, [angle] * 4)
        reference = torch.stack([
            TF.rotate(image[None], angle, interpolation=TF.InterpolationMode.BILINEAR, fill=0.0)[0]
            for image in images
        ])
        assert (ours - reference).abs().max() < 1e-5


def test_affine_identity_rotation_and_translation_match_the_simple_operations():
    images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(affine_images(images, 0.0), images, atol=1e-5, rtol=0)
    angles = torch.tensor([0.0, 30.0, -45.0, 90.0])
    turned = affine_images(images, angles)[:, 0]
    torch.testing.assert_close(turned, rotate_images(images[:, 0], angles.numpy()),
                               atol=1e-5, rtol=0)
    shifts = torch.tensor([[3.0, 0.0], [0.0, 2.0], [-1.0, 0.0], [0.0, -4.0]])  # (x right, y down)
    moved = affine_images(images, 0.0, translation_px=shifts)
    expected = shift_images(images, shifts.flip(1).T.long())  # (dy, dx) rows
    torch.testing.assert_close(moved, expected, atol=1e-5, rtol=0)


def test_shear_and_scale_act_about_the_centre():
    # Pixel (row 16, col 13) sits at x = −0.5, y = +2.5 from the centre (13.5, 13.5).
    shear = math.degrees(math.atan(2.0))  # x' = x + 2y = 4.5 → column 18
    sheared = affine_images(single_pixel(16, 13), 0.0, shear_deg=shear)
    assert sheared[0, 0, 16, 18] == pytest.approx(1.0, abs=1e-4)
    scaled = affine_images(single_pixel(16, 13), 0.0, scale=3.0)
    row, col = centre_of_mass(scaled)  # (x, y) · 3 = (−1.5, 7.5) → (row 21, col 12)
    assert (row, col) == (pytest.approx(21.0, abs=1e-3), pytest.approx(12.0, abs=1e-3))

"""MNIST preprocessing of drawings and image files (capsviewer.analysis.preprocess)."""

import numpy as np
import pytest
from PIL import Image

from capsviewer.analysis.preprocess import ImageError, is_blank, load_image_file, to_mnist


def centre_of_mass(image: np.ndarray) -> np.ndarray:
    ys, xs = np.indices(image.shape)
    weights = image.astype(np.float64)
    return np.array([(ys * weights).sum(), (xs * weights).sum()]) / weights.sum()


def box_size(image: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


@pytest.fixture(scope="module")
def digits(mnist_test) -> np.ndarray:
    return mnist_test.images[:300, 0].numpy()


def test_an_mnist_digit_comes_back_as_itself(digits):
    # MNIST boxes are 20 px on the longer side with the centre of mass at (14, 14) ± 0.5, so the
    # recipe is nearly the identity: the contrast stretch (peak 254 → 255) and, for 6 % of
    # digits, fringes fainter than 5 % left out of the box. Measured on these 300: correlation
    # ≥ 0.9999, mean |difference| 0.03 grey levels. (A few MNIST digits cut off by the field's
    # edge do not come back: their box was never 20 px.)
    outs = np.stack([to_mnist(digit) for digit in digits])
    assert outs.dtype == np.uint8 and outs.shape == digits.shape
    assert min(correlation(out, digit) for out, digit in zip(outs, digits)) > 0.999
    assert np.abs(outs.astype(int) - digits).mean() < 0.5


def test_a_dark_enlarged_off_centre_digit_is_normalised(digits):
    correlations = []
    for digit in digits[:30]:
        enlarged = np.asarray(Image.fromarray(digit).resize((140, 140), Image.Resampling.NEAREST))
        page = np.full((200, 300), 255, np.uint8)  # black ink on white paper, in a corner
        page[3:143, 157:297] = 255 - enlarged
        out = to_mnist(page)
        assert max(box_size(out)) <= 20
        assert np.abs(centre_of_mass(out) - 14.0).max() <= 1.0  # measured ≤ 0.5
        assert out.max() == 255 and out[0].max() == out[:, 0].max() == 0  # ink bright on dark
        correlations.append(correlation(out, digit))
    assert np.mean(correlations) > 0.95  # measured 0.997 (a rounded 1 px shift costs a few)


def test_float_and_uint8_canvases_give_the_same_digit(digits):
    canvas = np.zeros((280, 280), np.uint8)
    canvas[40:240, 60:260] = np.asarray(Image.fromarray(digits[0]).resize((200, 200)))
    assert np.array_equal(to_mnist(canvas), to_mnist(canvas / 255.0))
    assert np.array_equal(to_mnist(canvas), to_mnist(canvas.astype(np.float32)))  # 0–255 floats
    assert np.array_equal(to_mnist(canvas), to_mnist(canvas.astype(np.int64)))
    assert np.array_equal(to_mnist(canvas), to_mnist(canvas.astype(np.uint16) * 257))  # 16-bit


def test_invert_can_be_forced(digits):
    dark_on_light = 255 - digits[1]
    assert np.array_equal(to_mnist(dark_on_light, invert=True), to_mnist(digits[1], invert=False))
    assert np.array_equal(to_mnist(dark_on_light), to_mnist(digits[1]))  # decided from the border
    assert is_blank(dark_on_light, invert=False)  # nothing is brighter than its background


@pytest.mark.parametrize("blank", [np.zeros((28, 28)), np.full((50, 80), 255, np.uint8),
                                   np.full((10, 10), 0.4), np.random.default_rng(0).integers(0, 4, (90, 90))])
def test_blank_images_give_zeros(blank):
    assert is_blank(blank)
    assert not to_mnist(blank).any()


def test_wrong_shapes_are_refused():
    with pytest.raises(ImageError, match="2-D"):
        to_mnist(np.zeros((28, 28, 3)))
    with pytest.raises(ImageError):
        to_mnist(np.zeros((0, 5)))


def test_png_round_trip(tmp_path, digits):
    path = tmp_path / "digit.png"
    Image.fromarray(digits[2]).save(path)
    assert np.array_equal(load_image_file(path), to_mnist(digits[2]))


def test_jpeg_of_dark_ink_on_paper(tmp_path, digits):
    correlations = []
    for digit in digits[:20]:
        page = Image.fromarray(255 - digit).resize((300, 300), Image.Resampling.BICUBIC)
        page.convert("RGB").save(tmp_path / "photo.jpg", quality=70)
        out = load_image_file(tmp_path / "photo.jpg")
        assert np.abs(centre_of_mass(out) - 14.0).max() <= 1.0
        correlations.append(correlation(out, digit))
    assert np.mean(correlations) > 0.9  # measured 0.94: blur and JPEG fringes, 1 px shifts


def test_transparent_png_dark_or_light_ink(tmp_path, digits):
    digit = digits[4]
    for ink in (0, 255):  # black digit on transparency, and white digit on transparency
        rgba = np.zeros((28, 28, 4), np.uint8)
        rgba[..., :3] = ink
        rgba[..., 3] = digit
        Image.fromarray(rgba).save(tmp_path / f"ink{ink}.png")
        assert correlation(load_image_file(tmp_path / f"ink{ink}.png"), digit) > 0.99


def test_other_formats(tmp_path, digits):
    for suffix in ("bmp", "gif", "tiff", "webp"):
        Image.fromarray(digits[5]).save(tmp_path / f"digit.{suffix}", **({"lossless": True} if suffix == "webp" else {}))
        assert correlation(load_image_file(tmp_path / f"digit.{suffix}"), digits[5]) > 0.99, suffix


def _png_bytes(tmp_path, digit) -> bytes:
    Image.fromarray(digit).save(tmp_path / "whole.png")
    return (tmp_path / "whole.png").read_bytes()


@pytest.mark.parametrize("case", ["missing", "empty", "text", "random", "truncated", "folder", "blank"])
def test_unusable_files_raise_image_error_naming_the_file(tmp_path, digits, case):
    path = tmp_path / f"bad-{case}.png"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path = tmp_path / "notes.txt"
        path.write_text("not an image\n")
    elif case == "random":
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif case == "truncated":
        path.write_bytes(_png_bytes(tmp_path, digits[0])[:120])
    elif case == "folder":
        path.mkdir()
    elif case == "blank":
        Image.new("L", (40, 40), 255).save(path)
    with pytest.raises(ImageError) as caught:
        load_image_file(path)
    assert path.name in str(caught.value)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    Image.new("L", (100, 100)).save(tmp_path / "bomb.png")
    for limit in (6000, 1000):  # Pillow warns above the limit and refuses above twice it
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(ImageError, match=r"bomb\.png.*too large"):
            load_image_file(tmp_path / "bomb.png")

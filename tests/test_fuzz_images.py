"""Generated image files (fuzz_cases.image_cases: every format and mode, some damaged) and a
few crafted ones: each gives a 28×28 digit or one sentence naming the file, never another
exception; huge images are refused from their header, before any pixel is decoded."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from capsviewer.analysis import preprocess
from capsviewer.analysis.preprocess import ImageError, load_image_file

from fuzz_cases import image_cases


def outcome(path) -> str:
    """"ok" or the refusal, checking either is well formed."""
    try:
        pixels = load_image_file(path)
    except ImageError as refused:
        message = str(refused)
        assert message.startswith(f"Cannot open {path.name}: ") and "\n" not in message
        assert message.endswith(".")
        return message
    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8 and pixels.max() > 0
    return "ok"


def test_generated_files_give_a_digit_or_a_sentence(tmp_path):
    results = {}
    for name, data in image_cases(300):
        path = tmp_path / name
        path.write_bytes(data)
        results[name] = outcome(path)
    opened = [name for name, result in results.items() if result == "ok"]
    refused = {result.split(": ", 1)[1] for result in results.values() if result != "ok"}
    # Both kinds occur: undamaged digits open, damaged and blank files are refused.
    assert len(opened) > 30 and len(results) - len(opened) > 30
    assert any("blank" in reason for reason in refused)
    assert any("damaged or truncated" in reason or "not an image" in reason for reason in refused)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height pixels, with a few bytes of data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("width, height", [(9000, 9000), (50_000, 50_000), (2**31 - 1, 1)])
def test_huge_images_are_refused_from_their_header(tmp_path, width, height, monkeypatch):
    path = tmp_path / "huge.png"
    path.write_bytes(png_claiming(width, height))
    loads = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(self) or None)
    with pytest.raises(ImageError, match="too large"):
        load_image_file(path)
    assert loads == []  # refused before decoding


def test_an_81_megapixel_png_is_refused_before_decoding(tmp_path):
    """The issue's file: 9,000 × 9,000 zeros, 79 KB on disk."""
    path = tmp_path / "81mp.png"
    Image.new("L", (9000, 9000)).save(path, optimize=False)
    assert path.stat().st_size < 200_000
    assert "too large (9,000 × 9,000 pixels" in outcome(path)


def test_a_large_image_is_reduced_before_it_becomes_an_array(tmp_path, monkeypatch):
    digit = np.zeros((4000, 3000), np.uint8)
    digit[1000:3000, 1300:1700] = 255
    path = tmp_path / "large.png"
    Image.fromarray(digit).save(path)
    shapes = []
    grayscale = preprocess._grayscale
    monkeypatch.setattr(preprocess, "_grayscale",
                        lambda image: shapes.append(image.size) or grayscale(image))
    small = np.zeros((400, 300), np.uint8)
    small[100:300, 130:170] = 255
    assert np.array_equal(load_image_file(path), preprocess.to_mnist(small))
    assert shapes == [(1500, 2000)]  # reduced by 2 (longer side ≤ 2,048) before any float array


def test_a_float_tiff_with_a_nan_pixel_is_not_called_blank(tmp_path):
    pixels = np.zeros((60, 60), np.float32)
    pixels[15:45, 28:32] = 1.0
    pixels[3, 3] = np.nan
    path = tmp_path / "nan.tif"
    Image.fromarray(pixels).save(path)
    assert outcome(path).endswith("it holds pixels that are not numbers (NaN or infinity).")
    pixels[3, 3] = 0.0
    Image.fromarray(pixels).save(path)
    assert outcome(path) == "ok"

"""Any picture of a digit → a 28×28 MNIST-style image, the way MNIST itself was made.

LeCun's recipe: bright ink on a dark background, the digit's bounding box scaled (aspect ratio
kept, anti-aliased) so its longer side is 20 px, then placed in a 28×28 field with its centre
of mass at the centre. MNIST digits' bounding boxes are 20 px on the longer side (but for a
few cut off by the field's edge) with the centre of mass within half a pixel of (14, 14), so an
MNIST image comes back essentially unchanged.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SIZE = 28  # MNIST field
BOX = 20  # longer side of the digit's bounding box
CENTRE = 14.0  # where MNIST puts the centre of mass (row, column in pixel indices)
MIN_CONTRAST = 0.05  # ink must differ from the background by 5 % of the full range
BOX_THRESHOLD = 0.05  # the bounding box ignores fainter fringes (JPEG ringing, blur)
MAX_PIXELS = 30_000_000  # larger image files are refused from their header (6000 × 5000)
WORKING_SIDE = 2048  # longer side that larger images are reduced to before preprocessing
REDUCIBLE = ("L", "LA", "RGB", "RGBA", "I", "F")  # modes Image.reduce averages correctly
DESCRIPTION = (
    "MNIST preprocessing: ink bright on dark, crop to the ink, scale the longer side to "
    f"{BOX} px, centre of mass at the centre of {SIZE}×{SIZE}"
)


class ImageError(ValueError):
    """An image that cannot be used; the message is meant for the user."""


@dataclass(frozen=True, eq=False)
class InputImage:
    """An image chosen for the models, with where it came from."""

    pixels: np.ndarray  # uint8 (28, 28), ink bright on dark, as in MNIST
    label: int | None  # true class when known (test set)
    source: str  # "test #12", "drawing", "file digit.png"
    index: int | None = None  # test-set index


def _as_unit_gray(gray) -> np.ndarray:
    """A 2-D float array in [0, 1] from uint8/uint16/bool/float (0–1 or 0–255) input."""
    array = np.asarray(gray)
    if array.ndim > 2:
        array = array.squeeze()
    if array.ndim != 2 or array.size == 0:
        raise ImageError(f"expected a 2-D grayscale image, got shape {np.shape(gray)}")
    if np.issubdtype(array.dtype, np.integer):
        scale = 255.0 if array.max() <= 255 else 65535.0  # 8- or 16-bit grey levels
        return np.clip(array / scale, 0.0, 1.0)
    array = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(array / 255.0 if array.max() > 1.0 else array, 0.0, 1.0)


def _ink(gray, invert: bool | None) -> np.ndarray | None:
    """Ink in [0, 1] on a zero background with peak 1; None when there is no ink."""
    g = _as_unit_gray(gray)
    border = np.concatenate([g[0], g[-1], g[1:-1, 0], g[1:-1, -1]])
    if invert is None:
        invert = bool(np.median(border) > 0.5)  # a light background: dark ink on paper
    if invert:
        g, border = 1.0 - g, 1.0 - border
    background = np.median(border)
    noise = 1.4826 * np.median(np.abs(border - background))  # robust σ of the background
    ink = g - background
    peak = ink.max()
    if peak < max(MIN_CONTRAST, 6 * noise):
        return None
    ink[ink <= 3 * noise + 0.5 / 255] = 0.0  # background noise (JPEG, scans) is not ink
    return np.clip(ink / peak, 0.0, 1.0)


def is_blank(gray, invert: bool | None = None) -> bool:
    """True when the image holds no ink distinguishable from its background."""
    return _ink(gray, invert) is None


def to_mnist(gray, invert: bool | None = None) -> np.ndarray:
    """MNIST's preprocessing of a grayscale image of any size: uint8 (28, 28), ink bright.

    ``invert`` None decides from the border (a bright background means dark ink). A blank image
    gives all zeros.
    """
    ink = _ink(gray, invert)
    out = np.zeros((SIZE, SIZE), np.uint8)
    if ink is None:
        return out
    solid = ink > BOX_THRESHOLD
    rows, cols = np.flatnonzero(solid.any(axis=1)), np.flatnonzero(solid.any(axis=0))
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = ink.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL wants (width, height)
    if size != (w, h):
        resized = Image.fromarray(ink.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
        ink = np.clip(np.asarray(resized, np.float64), 0.0, None)
        ink /= max(ink.max(), 1e-12)  # thin strokes scaled down keep full contrast
    h, w = ink.shape
    ys, xs = np.indices(ink.shape)
    mass = ink.sum()
    com = (ys * ink).sum() / mass, (xs * ink).sum() / mass
    top = int(np.clip(np.floor(CENTRE - com[0] + 0.5), 0, SIZE - h))
    left = int(np.clip(np.floor(CENTRE - com[1] + 0.5), 0, SIZE - w))
    out[top:top + h, left:left + w] = np.rint(ink * 255)
    return out


def _grayscale(image: Image.Image) -> np.ndarray:
    """Luminance in [0, 1]; transparent areas become the background that contrasts the ink."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image, np.float64) / 65535.0
    if image.mode in ("I", "F"):
        values = np.asarray(image, np.float64)
        if not np.isfinite(values).all():
            raise ImageError("it holds pixels that are not numbers (NaN or infinity)")
        span = values.max() - values.min()
        return (values - values.min()) / span if span > 0 else np.zeros_like(values)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if not has_alpha:
        return np.asarray(image.convert("L"), np.float64) / 255.0
    rgba = image.convert("RGBA")
    luminance = np.asarray(rgba.convert("L"), np.float64) / 255.0
    alpha = np.asarray(rgba.getchannel("A"), np.float64) / 255.0
    if alpha.sum() == 0:
        return np.ones_like(alpha)
    # Dark ink on transparency is composited on white, light ink on black: the ink stays visible.
    background = 1.0 if (luminance * alpha).sum() / alpha.sum() < 0.5 else 0.0
    return luminance * alpha + background * (1.0 - alpha)


def load_image_file(path: str | os.PathLike) -> np.ndarray:
    """Read any image Pillow can (PNG, JPEG, BMP, GIF, TIFF, WebP…) as a 28×28 MNIST digit.

    Memory and time stay bounded whatever the file claims: images over :data:`MAX_PIXELS`
    are refused from their header, JPEGs are decoded at a reduced scale, and anything larger
    than :data:`WORKING_SIDE` is reduced before it becomes an array. Raises ImageError, naming
    the file, when it is missing, empty, not an image, damaged, too large or blank.
    """
    path = Path(path)

    def fail(reason: str) -> ImageError:
        return ImageError(f"Cannot open {path.name or str(path)}: {reason}.")

    try:
        if not path.exists():
            raise fail("the file does not exist")
        if not path.is_file():
            raise fail("it is not a file")
        if path.stat().st_size == 0:
            raise fail("the file is empty")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                gray = _grayscale(_decoded(image, fail))
    except ImageError as error:
        if str(error).startswith("Cannot open"):
            raise
        raise fail(str(error)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise fail(f"it is too large (more than {MAX_PIXELS:,} pixels)") from None
    except PermissionError:
        raise fail("permission to read it was denied") from None
    except UnidentifiedImageError:
        raise fail("it is not an image in a format Pillow can read") from None
    except MemoryError:
        raise fail("it needs more memory than is available") from None
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError… on damaged files
        raise fail(f"the file is damaged or truncated ({error})") from None
    if is_blank(gray):
        raise fail("the image is blank (no digit found)")
    return to_mnist(gray)


def _decoded(image: Image.Image, fail) -> Image.Image:
    """The first frame, upright, no larger than WORKING_SIDE on its longer side."""
    if image.width == 0 or image.height == 0:
        raise fail("the image has no pixels")
    image.draft("L", (WORKING_SIDE, WORKING_SIDE))  # JPEG: decoded at 1/2, 1/4 or 1/8 scale
    if image.width * image.height > MAX_PIXELS:
        raise fail(f"it is too large ({image.width:,} × {image.height:,} pixels; up to "
                   f"{MAX_PIXELS / 1e6:.0f} megapixels are read)")
    image.load()  # the first frame of an animation
    image = ImageOps.exif_transpose(image)
    factor = -(-max(image.size) // WORKING_SIDE)
    if factor > 1:
        if image.mode.startswith("I;16"):
            image = image.convert("I")
        elif image.mode not in REDUCIBLE:  # palettes, bilevel, CMYK…: grey levels first
            has_alpha = "A" in image.mode or "transparency" in image.info
            image = image.convert("RGBA" if has_alpha else "L")
        image = image.reduce(factor)
    return image


"""Training augmentations of single images: the CapsNet paper's random shifts of up to 2 px,
or Efficient-CapsNet's recipe (Mazzia, Salvetti & Chiaberge 2021, their
``utils/pre_process_mnist.py``), drawn per image and applied to a whole batch at once.

The recipe, in the authors' order, each amount from a clipped normal N(0, 0.33):
1. rotation by up to ±30° (whole degrees, truncated), on half the images;
2. a shift along each axis within the ink's margins (so no ink leaves the frame);
3. a horizontal squeeze by 1–7 px, placed at a small offset;
4. a 4×4 patch of zeros at a uniform position 4–22 px from the top-left corner.

Differences from their code: rotation is bilinear about the image centre (theirs, OpenCV's
about pixel (14, 14)); the squeeze resamples bicubic with antialiasing (theirs, Lanczos-3);
a shift fills with zeros (theirs rolls, which brings in the blank margin it moves over).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from capsviewer.data.transforms import affine_images, shift_images

SHIFT, EFFICIENT_CAPSNET = "shift", "efficient-capsnet"
AUGMENTATIONS = (SHIFT, EFFICIENT_CAPSNET)
AUGMENTATION_TITLES = {SHIFT: "Random shifts (Sabour et al.)",
                       EFFICIENT_CAPSNET: "Efficient-CapsNet's recipe (Mazzia et al.)"}

MAX_ROTATION_DEG = 30
MAX_SQUEEZE_PX = 7  # 28 / 4
ERASED_PX = 4
# Rows of the recipe's per-image draws: angle (0: not rotated), shift fraction and direction
# per axis (row, column), squeeze width and extra offset, erased patch's top row and column.
ANGLE, SHIFT_ROW, SHIFT_COL, DOWN, RIGHT, SQUEEZE, OFFSET, ERASE_ROW, ERASE_COL = range(9)


def _clipped_normal(count: int, generator: torch.Generator | None, absolute: bool) -> torch.Tensor:
    """The recipe's amounts: N(0, 0.33) clipped to (−1, 1), or |N(0, 0.33)| clipped to [0, 1)."""
    x = 0.33 * torch.randn(count, generator=generator, dtype=torch.float64)
    return x.abs().clamp(max=0.9999) if absolute else x.clamp(-0.9999, 0.9999)


def draw_recipe(count: int, image_size: int = 28,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """(9, count) float32 (as the authors' draws; MPS has no float64): each image's draws for
    :func:`apply_recipe` (rows as named above)."""
    angle, rotate = (_clipped_normal(count, generator, False) for _ in range(2))
    angle = torch.where(rotate <= 0, torch.trunc(angle * MAX_ROTATION_DEG), 0.0)
    shift = torch.stack([_clipped_normal(count, generator, True) for _ in range(2)])
    direction = torch.randint(0, 2, (2, count), generator=generator).double()
    squeeze_amount, offset_amount = (_clipped_normal(count, generator, True) for _ in range(2))
    squeeze = torch.floor(squeeze_amount * (image_size / 4) + 1)
    offset = torch.floor(offset_amount * 2)
    room = image_size - 2 * ERASED_PX - 1  # 19 positions on MNIST: rows and columns 4–22
    erase = torch.floor(torch.rand(2, count, generator=generator, dtype=torch.float64) * room)
    return torch.stack([angle, *shift, *direction, squeeze, offset, *(erase + ERASED_PX)]).float()


def ink_margins(images: torch.Tensor) -> torch.Tensor:
    """(4, B) long: blank rows above and below the ink, blank columns left and right of it,
    for images (B, 1, H, W); an image without ink has margins of 0."""
    ink = images[:, 0] > 0
    rows, cols = ink.any(2), ink.any(1)  # (B, H), (B, W)

    def first(lines: torch.Tensor) -> torch.Tensor:
        return torch.where(lines.any(1), lines.int().argmax(1), 0)

    return torch.stack([first(rows), first(rows.flip(1)), first(cols), first(cols.flip(1))])


def shifts_within_margins(images: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """(2, B) long shifts (down, right): per axis a fraction of the margin on the drawn side,
    as the authors' floor(−a·before) or floor(a·(1 + after))."""
    top, bottom, left, right = ink_margins(images).to(draws.dtype)
    moves = []
    for amount, forward, before, after in ((draws[SHIFT_ROW], draws[DOWN], top, bottom),
                                           (draws[SHIFT_COL], draws[RIGHT], left, right)):
        moves.append(torch.where(forward > 0, torch.floor(amount * (1 + after)),
                                 torch.floor(-amount * before)))
    return torch.stack(moves).long()


def squeeze_images(images: torch.Tensor, widths: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Narrow image b by ``widths[b]`` columns (resampled, full height) and place it
    ``widths[b] // 2 + offsets[b]`` columns from the left, zero-filled."""
    height, width = images.shape[-2:]
    out = torch.zeros_like(images)
    widths = widths.long()
    for w in widths.unique().tolist():
        chosen = (widths == w).nonzero().flatten()
        narrow = F.interpolate(images[chosen], size=(height, width - w), mode="bicubic",
                               antialias=True, align_corners=False)
        out[chosen] = F.pad(narrow, (0, w))
    places = widths // 2 + offsets.long()
    shifts = torch.stack([torch.zeros_like(places), places]).to(images.device)
    return shift_images(out, shifts, max_shift=MAX_SQUEEZE_PX // 2 + 1)


def erase_patches(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Zero the ERASED_PX × ERASED_PX patch with its top-left corner at (rows[b], cols[b])."""
    height, width = images.shape[-2:]
    y = torch.arange(height, device=images.device)[None, :]
    x = torch.arange(width, device=images.device)[None, :]
    rows, cols = rows.long().to(images.device)[:, None], cols.long().to(images.device)[:, None]
    inside = (((y >= rows) & (y < rows + ERASED_PX))[:, :, None]
              & ((x >= cols) & (x < cols + ERASED_PX))[:, None, :])
    return images.masked_fill(inside[:, None], 0.0)


def apply_recipe(images: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """Efficient-CapsNet's augmentation of images (B, 1, H, W) float with their ``draws``
    (9, B) from :func:`draw_recipe`: rotate, shift within the margins, squeeze, erase."""
    draws = draws.to(images.device)
    angles = draws[ANGLE].cpu()
    x = images
    if bool((angles != 0).any()):
        turned = affine_images(images, angles)
        x = torch.where((draws[ANGLE] != 0)[:, None, None, None], turned, images)
    shifts = shifts_within_margins(x, draws)
    x = shift_images(x, shifts, max_shift=max(x.shape[-2:]) - 1)
    x = squeeze_images(x, draws[SQUEEZE], draws[OFFSET])
    return erase_patches(x, draws[ERASE_ROW], draws[ERASE_COL])


__all__ = ["AUGMENTATIONS", "AUGMENTATION_TITLES", "EFFICIENT_CAPSNET", "SHIFT", "apply_recipe",
           "draw_recipe", "erase_patches", "ink_margins", "shifts_within_margins",
           "squeeze_images"]

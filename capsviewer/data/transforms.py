"""Image-batch transforms, written once: uint8 → float, batch shapes, the device a model is on,
integer shifts, rotation and affine warps. Images are (B, C, H, W) unless said otherwise.

Why not ``torchvision.transforms.v2.functional``: its functions take one set of parameters per
call, so a per-image shift, angle or affine transform (the trainer's augmentation, the rotation
sweep, the robustness report's random affine set) is a Python loop over the batch, 10–300×
slower; where one call would do (one angle for a whole batch, uint8 → float) it is barely
faster (0.4 against 0.6 ms, 0.02 against 0.03 ms for 500 images: nothing next to a forward
pass), and importing it costs about a second (capsviewer.data avoids torchvision at start-up).
Measured with ``python benchmarks/transforms.py`` (figures in benchmarks/README.md). Rotation
agrees with ``v2.functional.rotate`` to 1e-5 (tests/test_transforms.py).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_float(images) -> torch.Tensor:
    """Pixels as float32: uint8 0–255 → [0, 1]; float images (already in [0, 1]) as they are.
    numpy or torch, any shape; a tensor keeps its device."""
    pixels = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if pixels.dtype == torch.uint8:
        return pixels.float().div_(255)
    return pixels.float()


def as_batch(images, device: torch.device | str | None = None) -> torch.Tensor:
    """One image (H, W) or a batch (N, H, W) or (N, 1, H, W), uint8 or float, numpy or torch
    → float32 (N, 1, H, W) in [0, 1], on ``device`` when given."""
    pixels = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if pixels.ndim == 2:
        pixels = pixels[None, None]
    elif pixels.ndim == 3:
        pixels = pixels[:, None]
    if pixels.ndim != 4:
        raise ValueError(f"images must be (H, W), (N, H, W) or (N, C, H, W), got {tuple(pixels.shape)}")
    if device is not None:
        pixels = pixels.to(device)  # uint8 travels, a quarter of the bytes
    return to_float(pixels)


def placement(model) -> tuple[torch.device, torch.dtype]:
    """The device and dtype of a model's first parameter (CPU and float32 without any)."""
    parameters = getattr(model, "parameters", None)
    first = next(parameters(), None) if callable(parameters) else None
    if first is None:
        return torch.device("cpu"), torch.float32
    return first.device, first.dtype


def model_device(model) -> torch.device:
    """The device a model runs on (that of its parameters)."""
    return placement(model)[0]


# -- shifts ------------------------------------------------------------------------------------

def draw_shifts(count: int, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(2, count) random offsets (dy, dx) in [−max_shift, max_shift], drawn on the CPU."""
    return torch.randint(-max_shift, max_shift + 1, (2, count), generator=generator)


def shift_images(images: torch.Tensor, shifts: torch.Tensor, max_shift: int | None = None,
                 pad: int = 0) -> torch.Tensor:
    """Move image b by (shifts[0, b], shifts[1, b]) whole pixels (down, right), zero-filled:
    one gather for the whole batch, no interpolation.

    ``max_shift`` bounds |shift| (the padding). Give it, with ``shifts`` already on the images'
    device, and nothing here waits for the host (the trainer's batch loop); without it the
    largest offset is read, and shifts of zero return ``images`` itself. ``pad`` > 0 first
    centres each image on a canvas ``pad`` pixels larger on every side (MultiMNIST: 28×28
    digits on 36×36), in the same gather."""
    if max_shift is None:
        max_shift = int(shifts.abs().max()) if shifts.numel() else 0
        if max_shift == 0 and pad == 0:
            return images
    batch, _, height, width = images.shape
    shifts = shifts.to(images.device)
    padded = F.pad(images, (max_shift + pad,) * 4)
    rows = torch.arange(height + 2 * pad, device=images.device) + max_shift - shifts[0, :, None]
    cols = torch.arange(width + 2 * pad, device=images.device) + max_shift - shifts[1, :, None]
    index = torch.arange(batch, device=images.device)[:, None, None]
    # padded[b, :, rows[b, y], cols[b, x]] → (B, H, W, C), back to (B, C, H, W)
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_shift(images: torch.Tensor, max_shift: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image by its own random (dy, dx) in [−max_shift, max_shift], zero-filled: the
    paper's only augmentation ("shifted by up to 2 pixels in each direction with zero padding")."""
    if max_shift <= 0:
        return images
    return shift_images(images, draw_shifts(len(images), max_shift, generator), max_shift)


# -- rotation and affine warps -----------------------------------------------------------------

def affine_images(images: torch.Tensor, rotation_deg, shear_deg=0.0, scale=1.0,
                  translation_px=(0.0, 0.0)) -> torch.Tensor:
    """Warp images (B, C, H, W) float, bilinear with zero fill, by x ↦ s·H(φ)·R(θ)·x + t.

    About the image centre, x right and y down: R turns counter-clockwise on screen by θ
    degrees, H(φ) = [[1, tan φ], [0, 1]] shears horizontally, s scales, t = (t_x, t_y) moves in
    pixels. Each parameter is one value for the whole batch (then one sampling grid serves all
    images) or one per image: θ, φ, s (B,) and t (B, 2).
    """
    batch, channels, height, width = images.shape
    theta, shear_angle, scale = (torch.as_tensor(np.asarray(v, dtype=np.float64)).reshape(-1)
                                 for v in (rotation_deg, shear_deg, scale))
    translation = torch.as_tensor(np.asarray(translation_px, dtype=np.float64)).reshape(-1, 2)
    count = max(len(theta), len(shear_angle), len(scale), len(translation))
    if any(len(v) not in (1, count) for v in (theta, shear_angle, scale, translation)) \
            or count not in (1, batch):
        raise ValueError(f"affine parameters for {count} images, but {batch} images given")
    theta = torch.deg2rad(theta)
    cos, sin = theta.cos(), theta.sin()
    rotation = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    shear = torch.eye(2, dtype=torch.float64).repeat(len(shear_angle), 1, 1)
    shear[:, 0, 1] = torch.tan(torch.deg2rad(shear_angle))
    inverse = torch.linalg.inv(scale[:, None, None] * shear @ rotation)  # A⁻¹, in pixels
    # Sampling grid: input = A⁻¹(output − t), in affine_grid's normalised coordinates
    # (align_corners=False: one pixel is 2/W wide in x, 2/H tall in y).
    to_norm = torch.diag(torch.tensor([2.0 / width, 2.0 / height], dtype=torch.float64))
    linear = (to_norm @ inverse @ torch.linalg.inv(to_norm)).expand(count, 2, 2)
    offset = -(to_norm @ inverse @ translation[..., None]).expand(count, 2, 1)
    matrices = torch.cat([linear, offset], dim=2).to(images.device, images.dtype)
    grid = F.affine_grid(matrices, [count, channels, height, width], align_corners=False)
    return F.grid_sample(images, grid.expand(batch, -1, -1, -1), mode="bilinear",
                         padding_mode="zeros", align_corners=False)


def rotate_images(images, angles_deg) -> np.ndarray | torch.Tensor:
    """Turn images counter-clockwise on screen by ``angles_deg`` (degrees) about the centre,
    bilinear, zero fill (as torchvision's rotate).

    ``images`` is one image (H, W) or (N, H, W), uint8 or float, numpy or torch. One image is
    turned by every angle (a sweep: A results); N images are turned by one angle each, or all
    by a single angle. Returns (max(N, A), H, W) float of the input's kind."""
    as_numpy = not isinstance(images, torch.Tensor)
    pixels = to_float(images)
    if pixels.ndim == 2:
        pixels = pixels[None]
    angles = np.atleast_1d(np.asarray(angles_deg, dtype=np.float64))
    count = max(len(pixels), len(angles))
    if len(pixels) not in (1, count) or len(angles) not in (1, count):
        raise ValueError(f"{len(pixels)} images for {len(angles)} angles")
    source = pixels.expand(count, *pixels.shape[1:])[:, None]
    rotated = affine_images(source, angles)[:, 0]
    return rotated.numpy() if as_numpy else rotated

"""Rotate a digit through a range of angles and watch both models: does the CNN's probability
or the capsule's length for the digit survive, and does the capsule's pose turn with the input?

Angles are in degrees; a positive angle turns the image counter-clockwise as displayed (row 0
at the top), about the image centre, with bilinear interpolation and zero fill.

Equivariance is measured, not assumed. The reference capsule's pose v(θ) (16-D) is projected
onto the 2-D plane that best fits the poses over the sweep (principal components of the centred
poses); φ(θ) is the pose's angle in that plane, unwrapped along the sweep. A pose that turned
exactly with the input in that plane would give φ = ±θ + c, so we report the least-squares slope
k of φ ≈ k·θ + c (±1 is perfect, 0 is invariant), its RMS residual, and the RMS deviation of φ
from the best exactly-equivariant line ±θ + c. The plane is fitted to the poses themselves, so
its share of the pose variance says how much of the pose's change the angle describes at all;
when the first direction alone holds nearly all of it, the pose moves along a line (typically
the capsule switching on and off as the digit turns), and φ mostly flips between two values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from capsviewer.data.transforms import model_device, placement, rotate_images, to_float
from capsviewer.models.precision import native_bf16

DEFAULT_ANGLES = np.arange(-180, 180, 5, dtype=np.float64)  # 72 angles


@dataclass(frozen=True)
class PosePlaneFit:
    """How a pose moves over a rotation sweep, in its best-fitting 2-D plane."""

    plane_angles: np.ndarray  # φ (A,) degrees, unwrapped along the sweep
    plane_variance: float  # share of the pose variance the plane holds, in [0, 1]
    line_variance: float  # share held by its first direction alone (near 1: a line, not a turn)
    basis: np.ndarray  # (2, D) orthonormal plane directions
    mean: np.ndarray  # (D,) mean pose over the sweep (the plane's origin)
    slope: float  # k of the least-squares line φ ≈ k·θ + c (±1: turns with the input)
    intercept: float  # c, degrees
    residual_deg: float  # RMS of φ − (k·θ + c)
    equivariance_error_deg: float  # RMS of φ − (±θ + c), best sign and c: 0 is exact


def fit_pose_plane(poses: np.ndarray, angles_deg: np.ndarray) -> PosePlaneFit:
    """Fit the 2-D plane of ``poses`` (A, D) over the input angles (A,) in degrees; see module.
    Needs at least 3 angles (two points always lie on a line)."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[0] < 3 or poses.shape[1] < 2:
        raise ValueError(f"need poses (A ≥ 3, D ≥ 2), got {poses.shape}")
    theta = np.asarray(angles_deg, dtype=np.float64)
    mean = poses.mean(axis=0)
    centred = poses - mean
    _, singular, rows = np.linalg.svd(centred, full_matrices=False)
    basis = rows[:2]
    total = float(np.sum(singular**2))
    plane_variance = float(np.sum(singular[:2] ** 2) / total) if total > 0 else 0.0
    line_variance = float(singular[0] ** 2 / total) if total > 0 else 0.0
    coords = centred @ basis.T  # (A, 2)
    phi = np.degrees(np.unwrap(np.arctan2(coords[:, 1], coords[:, 0])))
    design = np.stack([theta, np.ones_like(theta)], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(design, phi, rcond=None)
    residual = float(np.sqrt(np.mean((phi - design @ [slope, intercept]) ** 2)))
    # Exactly equivariant: φ = ±θ + c; the best c is the mean difference.
    errors = []
    for sign in (1.0, -1.0):
        deviation = phi - sign * theta
        errors.append(float(np.sqrt(np.mean((deviation - deviation.mean()) ** 2))))
    return PosePlaneFit(phi, plane_variance, line_variance, basis, mean, float(slope),
                        float(intercept), residual, min(errors))


def correct_range(angles: np.ndarray, predictions: np.ndarray, reference: int):
    """The run of consecutive angles around 0° (the angle nearest 0) where the prediction is
    ``reference``: (first, last) in degrees, or None when it is wrong there already."""
    angles = np.asarray(angles)
    correct = np.asarray(predictions) == reference
    start = int(np.argmin(np.abs(angles)))
    if not correct[start]:
        return None
    low = high = start
    while low > 0 and correct[low - 1]:
        low -= 1
    while high < len(angles) - 1 and correct[high + 1]:
        high += 1
    return float(angles[low]), float(angles[high])


@dataclass(frozen=True)
class RotationSweep:
    angles: np.ndarray  # (A,) degrees, increasing
    images: np.ndarray  # (A, H, W) the rotated inputs
    cnn_probabilities: np.ndarray | None  # (A, 10)
    capsule_lengths: np.ndarray | None  # ‖v_j‖ (A, 10)
    poses: np.ndarray | None  # v_j (A, 10, 16)
    true_class: int | None
    reference_class: int  # the class followed: the label, else the capsule prediction at ~0°
    cnn_predictions: np.ndarray | None  # (A,)
    capsule_predictions: np.ndarray | None  # (A,)
    plane: PosePlaneFit | None  # of the reference capsule's pose (None under 3 angles)
    cnn_correct_range: tuple[float, float] | None  # see correct_range
    capsule_correct_range: tuple[float, float] | None
    cnn_correct_fraction: float | None  # share of the sweep's angles predicted as reference
    capsule_correct_fraction: float | None

    @property
    def plane_angles(self) -> np.ndarray | None:
        return None if self.plane is None else self.plane.plane_angles

    @property
    def plane_variance(self) -> float | None:
        return None if self.plane is None else self.plane.plane_variance

    @property
    def equivariance_error(self) -> float | None:
        return None if self.plane is None else self.plane.equivariance_error_deg


@torch.no_grad()
def _forward(model, images: torch.Tensor, batch_size: int, **options) -> list:
    device, dtype = placement(model)
    return [
        model(images[i:i + batch_size, None].to(device, dtype), **options)
        for i in range(0, len(images), batch_size)
    ]


# Largest deviations of bf16 from fp32 over 50 test digits × 72 angles (3,600 sweeps each):
# capsule lengths 0.018, CNN probabilities 0.052. A bf16 answer whose top-two margin is under
# twice that is recomputed in fp32, so the predictions (and correct ranges) are fp32's.
NEAR_TIE = {"capsnet": 0.04, "cnn": 0.10}


def _scores(model, images, batch_size, fast: bool, **options) -> tuple[torch.Tensor, ...]:
    """(scores, digit capsules or None) for every image: fp32, or bf16 convolutions where the
    device has them natively with near-ties redone in fp32 (see NEAR_TIE)."""
    device = model_device(model)
    fast = fast and native_bf16(device)
    with torch.autocast(device.type, torch.bfloat16, enabled=fast):
        outputs = _forward(model, images, batch_size, **options)
    scores = torch.cat([o.scores for o in outputs]).float()
    poses = getattr(outputs[0], "digit_capsules", None)
    poses = torch.cat([o.digit_capsules for o in outputs]).float() if poses is not None else None
    if fast:
        top2 = scores.topk(2, dim=1).values
        ties = torch.nonzero(top2[:, 0] - top2[:, 1] < NEAR_TIE[model.architecture]).flatten()
        if len(ties):
            exact = _forward(model, images[ties.to(images.device)], batch_size, **options)
            scores[ties] = torch.cat([o.scores for o in exact]).float()
            if poses is not None:
                poses[ties] = torch.cat([o.digit_capsules for o in exact]).float()
    return scores, poses


def rotation_sweep(
    capsnet,
    cnn,
    image,
    angles: np.ndarray = DEFAULT_ANGLES,
    label: int | None = None,
    iterations: int | None = None,
    batch_size: int = 72,
    fast: bool = False,
) -> RotationSweep:
    """Rotate ``image`` by every angle and run each model once on the whole batch (split in
    ``batch_size`` chunks). Either model may be None; its fields are then None.

    fast: bf16 convolutions where the device does bf16 natively (1.6× on this CPU); curves
    within 0.02 (lengths) and 0.05 (probabilities) of fp32, predictions exactly fp32's."""
    angles = np.asarray(angles, dtype=np.float64)
    if angles.ndim != 1 or len(angles) == 0 or np.any(np.diff(angles) <= 0):
        raise ValueError("angles must be a non-empty, strictly increasing 1-D array")
    if capsnet is None and cnn is None:
        raise ValueError("rotation_sweep needs at least one model")
    rotated = rotate_images(to_float(image).squeeze(), angles)  # (A, H, W) tensor

    cnn_probabilities = cnn_predictions = None
    if cnn is not None:
        probabilities, _ = _scores(cnn, rotated, batch_size, fast)
        cnn_probabilities = probabilities.cpu().numpy()
        cnn_predictions = cnn_probabilities.argmax(axis=1)
    lengths = poses = capsule_predictions = None
    if capsnet is not None:
        lengths, poses = _scores(capsnet, rotated, batch_size, fast, iterations=iterations)
        lengths, poses = lengths.cpu().numpy(), poses.cpu().numpy()
        capsule_predictions = lengths.argmax(axis=1)

    if label is not None:
        reference = int(label)
    else:
        predictions = capsule_predictions if capsule_predictions is not None else cnn_predictions
        reference = int(predictions[np.argmin(np.abs(angles))])

    def summary(predictions):
        if predictions is None:
            return None, None
        return (correct_range(angles, predictions, reference),
                float(np.mean(predictions == reference)))

    cnn_range, cnn_fraction = summary(cnn_predictions)
    capsule_range, capsule_fraction = summary(capsule_predictions)
    plane = None  # of the reference capsule's pose; needs 3 angles or more
    if poses is not None and len(angles) >= 3:
        plane = fit_pose_plane(poses[:, reference], angles)
    return RotationSweep(
        angles=angles,
        images=rotated.numpy(),
        cnn_probabilities=cnn_probabilities,
        capsule_lengths=lengths,
        poses=poses,
        true_class=None if label is None else int(label),
        reference_class=reference,
        cnn_predictions=cnn_predictions,
        capsule_predictions=capsule_predictions,
        plane=plane,
        cnn_correct_range=cnn_range,
        capsule_correct_range=capsule_range,
        cnn_correct_fraction=cnn_fraction,
        capsule_correct_fraction=capsule_fraction,
    )

"""Rotate a digit through a range of angles and watch both models: does the CNN's probability
or the capsule's length for the digit survive, and does the capsule's pose turn with the input?

Angles are in degrees; a positive angle turns the image counter-clockwise as displayed (row 0
at the top), about the image centre, with bilinear interpolation and zero fill.

Equivariance is measured, not assumed. Where the reference capsule says its digit is there
(‖v‖ ≥ 0.5, the run of angles around 0°), the directions of its pose v(θ)/‖v(θ)‖ (16-D) are
projected onto the plane through the origin that holds them best (their two leading singular
directions), and φ(θ) is the pose's angle in that plane, unwrapped along the run. Outside the
run the capsule is nearly off and its direction is noise, so φ is not measured there. A pose
vector that turned exactly with the input in that plane gives φ = θ + c; the plane's
orientation is arbitrary, so its sign is chosen to make φ rise with θ. We report the
least-squares slope k of φ ≈ k·θ + c (1 is perfect, 0 is invariant), its RMS residual, the RMS
deviation of φ from the best exactly-equivariant line θ + c, and how much of the directions
lies in the plane at all (near 1: φ describes the whole turn).

Measured on the shipped CapsNet (test images 0–39, 5° steps), φ moves at most 10.3° between
neighbouring angles; angles about the pose mean (the first version) jumped by up to 173°
where the pose passed near the mean as the capsule switched on or off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from capsviewer.data.transforms import model_device, placement, rotate_images, to_float
from capsviewer.models.precision import native_bf16

DEFAULT_ANGLES = np.arange(-180, 180, 5, dtype=np.float64)  # 72 angles


PRESENT = 0.5  # ‖v‖ at or above: the capsule says its digit is there (between m⁻ and m⁺)


@dataclass(frozen=True)
class PosePlaneFit:
    """How a pose vector turns over a rotation sweep, in the plane its directions span."""

    plane_angles: np.ndarray  # φ (A,) degrees, unwrapped along the angles given
    in_plane: float  # mean share of ‖direction‖² in the plane, in [0, 1] (1: φ is the whole turn)
    basis: np.ndarray  # (2, D) orthonormal plane directions, through the origin
    slope: float  # k of the least-squares line φ ≈ k·θ + c (1: turns with the input), ≥ 0
    intercept: float  # c, degrees
    residual_deg: float  # RMS of φ − (k·θ + c)
    equivariance_error_deg: float  # RMS of φ − (θ + c), best c: 0 is exact

    @property
    def turned_deg(self) -> float:
        """How far the pose turned in the plane over the angles fitted (max φ − min φ)."""
        return float(np.ptp(self.plane_angles))


def fit_pose_plane(poses: np.ndarray, angles_deg: np.ndarray) -> PosePlaneFit:
    """Fit the plane of the directions of ``poses`` (A, D) over the input angles (A,) in
    degrees; see the module. Needs at least 3 angles (two points always lie on a line)."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[0] < 3 or poses.shape[1] < 2:
        raise ValueError(f"need poses (A ≥ 3, D ≥ 2), got {poses.shape}")
    theta = np.asarray(angles_deg, dtype=np.float64)
    norms = np.linalg.norm(poses, axis=1, keepdims=True)
    directions = np.divide(poses, norms, out=np.zeros_like(poses), where=norms > 0)
    _, _, rows = np.linalg.svd(directions, full_matrices=False)
    basis = rows[:2].copy()
    coords = directions @ basis.T  # (A, 2)
    if coords[:, 0].mean() < 0:  # the first direction points along the poses
        basis[0], coords[:, 0] = -basis[0], -coords[:, 0]
    phi = np.degrees(np.unwrap(np.arctan2(coords[:, 1], coords[:, 0])))
    design = np.stack([theta, np.ones_like(theta)], axis=1)
    (slope, _), *_ = np.linalg.lstsq(design, phi, rcond=None)
    if slope < 0:  # the plane's orientation is arbitrary: make φ rise with θ
        basis[1], phi = -basis[1], -phi
    (slope, intercept), *_ = np.linalg.lstsq(design, phi, rcond=None)
    residual = float(np.sqrt(np.mean((phi - design @ [slope, intercept]) ** 2)))
    deviation = phi - theta  # exactly equivariant: φ = θ + c, the best c the mean
    error = float(np.sqrt(np.mean((deviation - deviation.mean()) ** 2)))
    in_plane = float(np.mean(np.sum(coords**2, axis=1))) if norms.any() else 0.0
    return PosePlaneFit(phi, in_plane, basis, float(slope), float(intercept), residual, error)


def _run_around_zero(angles: np.ndarray, holds: np.ndarray) -> slice | None:
    """The run of consecutive angles around 0° (the angle nearest 0) where ``holds`` is true;
    None when it is false there already."""
    start = int(np.argmin(np.abs(np.asarray(angles))))
    if not holds[start]:
        return None
    low = high = start
    while low > 0 and holds[low - 1]:
        low -= 1
    while high < len(holds) - 1 and holds[high + 1]:
        high += 1
    return slice(low, high + 1)


def present_run(lengths: np.ndarray, angles: np.ndarray) -> slice | None:
    """The angles around 0° where the capsule's length is at least PRESENT (see
    :func:`_run_around_zero`)."""
    return _run_around_zero(angles, np.asarray(lengths) >= PRESENT)


def correct_range(angles: np.ndarray, predictions: np.ndarray, reference: int):
    """The run of consecutive angles around 0° (the angle nearest 0) where the prediction is
    ``reference``: (first, last) in degrees, or None when it is wrong there already."""
    angles = np.asarray(angles)
    run = _run_around_zero(angles, np.asarray(predictions) == reference)
    return None if run is None else (float(angles[run.start]), float(angles[run.stop - 1]))


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
    plane: PosePlaneFit | None  # of the reference capsule's pose where it is present (≥ 3 angles)
    pose_run: slice | None  # the angles the plane was fitted on (present_run); None: no fit
    cnn_correct_range: tuple[float, float] | None  # see correct_range
    capsule_correct_range: tuple[float, float] | None
    cnn_correct_fraction: float | None  # share of the sweep's angles predicted as reference
    capsule_correct_fraction: float | None

    @property
    def plane_angles(self) -> np.ndarray | None:
        """φ at every angle of the sweep (A,), NaN where it was not measured."""
        if self.plane is None:
            return None
        phi = np.full(len(self.angles), np.nan)
        phi[self.pose_run] = self.plane.plane_angles
        return phi

    @property
    def pose_range(self) -> tuple[float, float] | None:
        """First and last angle where φ was measured (degrees)."""
        if self.pose_run is None:
            return None
        measured = self.angles[self.pose_run]
        return float(measured[0]), float(measured[-1])

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
    plane = run = None  # of the reference capsule's pose where present; 3 angles or more
    if poses is not None:
        run = present_run(lengths[:, reference], angles)
        if run is not None and run.stop - run.start >= 3:
            plane = fit_pose_plane(poses[run, reference], angles[run])
        else:
            run = None
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
        pose_run=run,
        cnn_correct_range=cnn_range,
        capsule_correct_range=capsule_range,
        cnn_correct_fraction=cnn_fraction,
        capsule_correct_fraction=capsule_fraction,
    )

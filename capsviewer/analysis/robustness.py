"""Robustness of classifiers to geometric changes of the test set: accuracy against rotation
angle, under random affine transforms and under shifts, with every perturbation seeded.

Every perturbed batch is built once and given to every model, so the models are compared on
the same images. Images stay 28×28 (both architectures are tied to that size: the CapsNet's
32×6×6 primary grid and its W_ij, the CNN's fully connected layer), so a shift or transform
that pushes ink past the border loses it, and the zero fill is MNIST's black background.

Conditions (image coordinates: x right, y down, about the image centre; see AffineParameters):

- rotation by a fixed angle θ, counter-clockwise on screen, bilinear;
- random affine: per image, x' = s·H(φ)·R(θ)·x + t with θ, φ, s and t drawn uniformly;
- shift by exactly k pixels (integer, no interpolation) up, down, left or right, one of the
  four drawn per image.

Angle 0 and shift 0 return the images untouched, so they equal the clean accuracy exactly.
This module returns numbers (a :class:`RobustnessReport`, JSON); :mod:`capsviewer.report`
words them (Markdown tables, findings, caveats) and draws the figure.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch

from capsviewer.data.augmentation import SHIFT
from capsviewer.data.transforms import affine_images, as_batch, placement, shift_images

ROTATION_ANGLES = tuple(range(0, 181, 15))  # degrees: 0, 15, …, 180
SHIFTS = tuple(range(0, 7))  # pixels: 0 … 6
DEFAULT_BATCH_SIZE = 500

# progress(images done, images in total, label of the condition being evaluated)
Progress = Callable[[int, int, str], None]

_SEED_TAGS = {"affine": 1, "shift": 2}


class RobustnessCancelled(Exception):
    """``should_stop`` returned True between batches."""


@dataclass(frozen=True)
class AffineParameters:
    """Ranges of the random affine condition; each image gets its own uniform draw.

    Rotation and scale follow the brief's affNIST-like ranges. Shear is horizontal,
    x' = x + tan φ · y, with |φ| ≤ 15° (tan 15° ≈ 0.27, a slant within the range of MNIST's
    own handwriting). Translation is at most 2 px per axis, the shift the models were
    trained with, so this condition tests rotation, shear and scale rather than position;
    larger positions have the shift condition of their own.
    """

    rotation_deg: float = 20.0  # θ ∈ [−20°, 20°], counter-clockwise positive
    shear_deg: float = 15.0  # φ ∈ [−15°, 15°], horizontal shear
    scale: tuple[float, float] = (0.8, 1.2)  # s, isotropic
    translation_px: float = 2.0  # t_x, t_y ∈ [−2, 2] px, continuous (bilinear)

    def describe(self) -> str:
        low, high = self.scale
        return (f"rotation ±{self.rotation_deg:g}°, shear ±{self.shear_deg:g}°, "
                f"scale {low:g}–{high:g}, translation ±{self.translation_px:g} px")


@dataclass(frozen=True)
class AffineDraw:
    """One affine transform per image (tensors of length N; translation (N, 2) as x, y px)."""

    rotation_deg: torch.Tensor
    shear_deg: torch.Tensor
    scale: torch.Tensor
    translation_px: torch.Tensor

    def __getitem__(self, index) -> AffineDraw:
        return AffineDraw(self.rotation_deg[index], self.shear_deg[index], self.scale[index],
                          self.translation_px[index])

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """Warp images (N, C, H, W) float, image i by transform i (see ``affine_images``)."""
        return affine_images(images, self.rotation_deg, self.shear_deg, self.scale,
                             self.translation_px)


@dataclass(frozen=True)
class ModelInfo:
    """What the report says about a model besides its numbers."""

    name: str
    architecture: str
    checkpoint: str | None = None
    stated_test_accuracy: float | None = None  # as stored in the checkpoint
    stated_on_full_test_set: bool = False
    epoch: int | None = None  # epochs trained, fine-tuning included
    parameters: int | None = None
    training_shift_px: int | None = None  # the random-shift augmentation it was trained with
    training_augmentation: str | None = None  # "shift", "efficient-capsnet"; None: not known


@dataclass(frozen=True)
class Condition:
    """One perturbation of the test images and every model's accuracy on it."""

    kind: str  # "clean", "rotation", "affine", "shift"
    value: float | None  # θ in degrees (rotation), k in pixels (shift), else None
    label: str
    count: int  # images evaluated
    seed: int | None  # the report seed its random draws derive from (None: nothing random)
    correct: dict[str, int]  # model name → images classified correctly
    accuracy: dict[str, float]  # model name → correct / count


@dataclass
class RobustnessReport:
    models: list[ModelInfo]
    conditions: list[Condition]
    affine: AffineParameters
    seed: int
    images: int
    dataset: str = "mnist"
    device: str = "cpu"
    seconds: float = 0.0
    created: str = ""  # ISO 8601, UTC
    command: str | None = None

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def condition(self, kind: str, value: float | None = None) -> Condition:
        for c in self.conditions:
            if c.kind == kind and (value is None or c.value == value):
                return c
        raise KeyError(f"no {kind} condition{'' if value is None else f' at {value:g}'}")

    def series(self, kind: str) -> tuple[list[float], dict[str, list[float]]]:
        """The values of ``kind`` (angles or shifts) and each model's accuracy at them."""
        found = [c for c in self.conditions if c.kind == kind]
        return ([c.value for c in found],
                {name: [c.accuracy[name] for c in found] for name in self.model_names})


# -- perturbations --------------------------------------------------------------------------

def condition_seed(seed: int, kind: str, value: float = 0) -> int:
    """The generator seed of one condition, derived from the report seed (independent draws
    per condition, the same for the same seed)."""
    state = np.random.SeedSequence([int(seed), _SEED_TAGS[kind], int(round(value))])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def draw_affine(count: int, params: AffineParameters, seed: int) -> AffineDraw:
    """``count`` transforms, uniform in the ranges of ``params``, from generator ``seed``."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float, *shape) -> torch.Tensor:
        u = torch.rand(count, *shape, generator=generator, dtype=torch.float64)
        return (low + (high - low) * u).float()

    rotation = uniform(-params.rotation_deg, params.rotation_deg)
    shear = uniform(-params.shear_deg, params.shear_deg)
    scale = uniform(*params.scale)
    translation = uniform(-params.translation_px, params.translation_px, 2)
    return AffineDraw(rotation, shear, scale, translation)


def shift_offsets(count: int, shift_px: int, seed: int) -> torch.Tensor:
    """(2, count) offsets (dy, dx): exactly ``shift_px`` pixels right, left, down or up per
    image, the direction drawn uniformly."""
    generator = torch.Generator().manual_seed(seed)
    direction = torch.randint(0, 4, (count,), generator=generator)
    unit = torch.tensor([[0, 1], [0, -1], [1, 0], [-1, 0]])[direction]
    return unit.T * shift_px


# -- evaluation -----------------------------------------------------------------------------

def _as_models(models) -> dict[str, Any]:
    if isinstance(models, Mapping):
        if not models:
            raise ValueError("no models to evaluate")
        return dict(models)
    return {"model": models}


@dataclass(frozen=True)
class _Spec:
    """One condition to evaluate: what it is and how it changes a batch."""

    kind: str
    value: float | None
    label: str
    seed: int | None
    perturb: Callable[[torch.Tensor, slice], torch.Tensor] | None  # (batch, its index range)


def _clean_spec() -> _Spec:
    return _Spec("clean", None, "clean", None, None)


def _rotation_spec(angle_deg: float) -> _Spec:
    angle = float(angle_deg)

    def perturb(batch: torch.Tensor, index: slice) -> torch.Tensor:
        if angle % 360 == 0:
            return batch
        return affine_images(batch, angle)

    return _Spec("rotation", angle, f"rotation {angle:g}°", None, perturb)


def _affine_spec(count: int, params: AffineParameters, seed: int) -> _Spec:
    draw = draw_affine(count, params, condition_seed(seed, "affine"))
    return _Spec("affine", None, "random affine", seed,
                 lambda batch, index: draw[index].apply(batch))


def _shift_spec(count: int, shift_px: int, seed: int) -> _Spec:
    if int(shift_px) != shift_px or shift_px < 0:
        raise ValueError(f"shift must be a whole number of pixels ≥ 0, got {shift_px}")
    shift_px = int(shift_px)
    shifts = shift_offsets(count, shift_px, condition_seed(seed, "shift", shift_px))
    return _Spec("shift", shift_px, f"shift {shift_px} px", seed,
                 lambda batch, index: shift_images(batch, shifts[:, index]))


@torch.no_grad()
def _evaluate(
    models: dict[str, Any],
    images,
    labels,
    spec: _Spec,
    batch_size: int = DEFAULT_BATCH_SIZE,
    should_stop: Callable[[], bool] | None = None,
    progress: Progress | None = None,
    done: int = 0,
    total: int | None = None,
) -> Condition:
    """Every model on the perturbed images of ``spec``, batch by batch (each batch perturbed
    once and given to all models)."""
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(np.asarray(labels))
    count = len(labels)
    if len(images) != count:
        raise ValueError(f"{len(images)} images but {count} labels")
    total = count if total is None else total
    correct = {name: 0 for name in models}
    modes = {name: getattr(m, "training", False) for name, m in models.items()}
    for model in models.values():
        if hasattr(model, "eval"):
            model.eval()
    where = placement(next(iter(models.values())))[0]
    if progress is not None:
        progress(done, total, spec.label)
    try:
        for start in range(0, count, batch_size):
            if should_stop is not None and should_stop():
                raise RobustnessCancelled
            index = slice(start, min(start + batch_size, count))
            batch = as_batch(images[index], where)  # perturbed where the models run
            if spec.perturb is not None:
                batch = spec.perturb(batch, index)
            truth = labels[index].long()
            for name, model in models.items():
                device, dtype = placement(model)
                scores = model(batch.to(device, dtype)).scores
                correct[name] += int((scores.argmax(dim=1).cpu() == truth).sum())
            if progress is not None:
                progress(done + index.stop, total, spec.label)
    finally:
        for name, model in models.items():
            if hasattr(model, "train"):
                model.train(modes[name])
    accuracy = {name: n / count if count else float("nan") for name, n in correct.items()}
    return Condition(spec.kind, spec.value, spec.label, count, spec.seed, correct, accuracy)


def clean_accuracy(models, images, labels, *, batch_size: int = DEFAULT_BATCH_SIZE,
                   should_stop=None, progress: Progress | None = None) -> Condition:
    """Accuracy of every model on the images as they are. ``models``: a model or a dict of
    named models (anything whose output has ``.scores``, (B, classes))."""
    return _evaluate(_as_models(models), images, labels, _clean_spec(), batch_size,
                     should_stop, progress)


def rotation_accuracy(models, images, labels, angle_deg: float, *,
                      batch_size: int = DEFAULT_BATCH_SIZE, should_stop=None,
                      progress: Progress | None = None) -> Condition:
    """Accuracy with every image turned counter-clockwise by ``angle_deg`` (nothing random)."""
    return _evaluate(_as_models(models), images, labels, _rotation_spec(angle_deg), batch_size,
                     should_stop, progress)


def affine_accuracy(models, images, labels, params: AffineParameters = AffineParameters(),
                    seed: int = 0, *, batch_size: int = DEFAULT_BATCH_SIZE, should_stop=None,
                    progress: Progress | None = None) -> Condition:
    """Accuracy with one random affine transform per image (``params``), drawn from ``seed``."""
    return _evaluate(_as_models(models), images, labels, _affine_spec(len(images), params, seed),
                     batch_size, should_stop, progress)


def translation_accuracy(models, images, labels, shift_px: int, seed: int = 0, *,
                         batch_size: int = DEFAULT_BATCH_SIZE, should_stop=None,
                         progress: Progress | None = None) -> Condition:
    """Accuracy with every image shifted by exactly ``shift_px`` pixels up, down, left or
    right (one direction per image, drawn from ``seed``), within the 28×28 frame."""
    return _evaluate(_as_models(models), images, labels, _shift_spec(len(images), shift_px, seed),
                     batch_size, should_stop, progress)


def trained_augmentation(train_config: dict | None) -> dict:
    """ModelInfo's training fields from a checkpoint's ``train_config``: its augmentation
    (runs before the option existed: shifts) and, for shifts, their range in pixels."""
    if not train_config:
        return {"training_shift_px": None, "training_augmentation": None}
    augmentation = train_config.get("augmentation", SHIFT)
    shift = train_config.get("max_shift") if augmentation == SHIFT else None
    return {"training_shift_px": shift, "training_augmentation": augmentation}


def describe_model(name: str, model) -> ModelInfo:
    """A ModelInfo from the model alone (no checkpoint)."""
    parameters = getattr(model, "parameters", None)
    count = sum(p.numel() for p in parameters()) if callable(parameters) else None
    return ModelInfo(name, getattr(model, "architecture", type(model).__name__),
                     parameters=count or None)


def robustness_report(
    models,
    images,
    labels,
    *,
    angles=ROTATION_ANGLES,
    shifts=SHIFTS,
    affine: AffineParameters = AffineParameters(),
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    should_stop: Callable[[], bool] | None = None,
    progress: Progress | None = None,
    model_info: Mapping[str, ModelInfo] | None = None,
    dataset: str = "mnist",
    device: str = "cpu",
    command: str | None = None,
) -> RobustnessReport:
    """Every model on the clean images, each rotation angle, the random affine set and each
    shift. ``should_stop`` is polled between batches (RobustnessCancelled); ``progress`` gets
    the images done over all conditions."""
    models = _as_models(models)
    count = len(labels)
    specs = ([_clean_spec()] + [_rotation_spec(a) for a in angles]
             + [_affine_spec(count, affine, seed)] + [_shift_spec(count, k, seed) for k in shifts])
    start = time.perf_counter()
    conditions = [
        _evaluate(models, images, labels, spec, batch_size, should_stop, progress,
                  done=i * count, total=len(specs) * count)
        for i, spec in enumerate(specs)
    ]
    info = dict(model_info or {})
    return RobustnessReport(
        models=[info.get(name) or describe_model(name, model) for name, model in models.items()],
        conditions=conditions,
        affine=affine,
        seed=seed,
        images=count,
        dataset=dataset,
        device=device,
        seconds=time.perf_counter() - start,
        created=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        command=command,
    )


# -- serialisation (the prose and figures are in capsviewer.report) ------------------------

def to_json(report: RobustnessReport) -> str:
    return json.dumps(asdict(report), indent=2, ensure_ascii=False) + "\n"


def from_json(text: str) -> RobustnessReport:
    data = json.loads(text)
    affine = data.pop("affine")
    affine["scale"] = tuple(affine["scale"])
    return RobustnessReport(
        models=[ModelInfo(**m) for m in data.pop("models")],
        conditions=[Condition(**c) for c in data.pop("conditions")],
        affine=AffineParameters(**affine),
        **data,
    )


__all__ = [
    "ROTATION_ANGLES",
    "SHIFTS",
    "AffineDraw",
    "AffineParameters",
    "Condition",
    "ModelInfo",
    "RobustnessCancelled",
    "RobustnessReport",
    "affine_accuracy",
    "clean_accuracy",
    "condition_seed",
    "draw_affine",
    "from_json",
    "robustness_report",
    "trained_augmentation",
    "rotation_accuracy",
    "shift_offsets",
    "to_json",
    "translation_accuracy",
]

"""EM routing of a matrix-capsule network on one input, iteration by iteration, as numpy.

``inspect_em`` runs the model with a trace of its class layer's EM (Hinton, Sabour & Frosst
2018, Procedure 1). Iteration t (1-based) holds what its M-step used and made: the
responsibilities R_ij it weighted the votes by (uniform 1/J at t = 1, the E-step of t − 1
after that), and the parents' a_j, σ_j, cost and the inverse temperature λ_t. The children are
the class layer's inputs on their grid (types, rows, cols); their activations a_i do not
change during routing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from capsviewer.analysis.inspection import MNIST_CLASSES, spread_over_fields
from capsviewer.data.transforms import as_batch, model_device

BLANK_INK = 0.05  # a receptive field whose mean ink is below this sees no stroke


@dataclass(frozen=True)
class EMStep:
    """One EM iteration t of the class layer."""

    responsibilities: np.ndarray  # R_ij the M-step weighted the votes by (types, rows, cols, J)
    activations: np.ndarray  # a_j (J,)
    sigma: np.ndarray  # σ_j^h, per pose entry (J, 16)
    cost: np.ndarray  # Σ_h cost_j^h = Σ_h (β_u + log σ_j^h) Σ_i R_ij a_i (J,)
    inverse_temperature: float  # λ_t


@dataclass(frozen=True)
class EMInspection:
    image: np.ndarray  # (28, 28) float32 in [0, 1]
    activations: np.ndarray  # a_j after the last M-step (J,): the class scores
    prediction: int
    child_activations: np.ndarray  # a_i of the class layer's children (types, rows, cols)
    steps: tuple[EMStep, ...]
    final_responsibilities: np.ndarray  # R_ij of the E-step after the last M-step
    receptive_fields: np.ndarray  # (rows, cols, 4) input box (top, left, bottom, right)
    class_names: tuple[str, ...] = MNIST_CLASSES

    def support(self, digit: int, iteration: int = -1) -> np.ndarray:
        """R_ij a_i on the grid (types, rows, cols): how much of each child's activation the
        M-step of ``iteration`` (0-based, −1 the last) gave class capsule j."""
        return self.steps[iteration].responsibilities[..., digit] * self.child_activations

    def part_map(self, digit: int, iteration: int = -1) -> np.ndarray:
        """(28, 28) map of where class capsule j's mass Σ_i R_ij a_i comes from: each grid
        cell's sum over types spread over its receptive field, scaled to a maximum of 1."""
        cells = self.support(digit, iteration).sum(axis=0)
        return spread_over_fields(cells, self.receptive_fields, self.image.shape)

    def entropy(self, iteration: int = -1) -> float:
        """Entropy of R_i· over the parents in units of log J (1: uniform), averaged over the
        children weighted by a_i: how decided the assignment is."""
        r = self.steps[iteration].responsibilities.astype(np.float64)
        h = -(r * np.log(np.clip(r, 1e-300, None))).sum(axis=-1) / np.log(r.shape[-1])
        a = self.child_activations.astype(np.float64)
        return float((h * a).sum() / max(a.sum(), 1e-300))

    def blank_share(self, digit: int, iteration: int = -1, ink: float = BLANK_INK) -> float:
        """The share of class j's mass Σ_i R_ij a_i that comes from children whose receptive
        field is blank (mean ink below ``ink``)."""
        support = self.support(digit, iteration).sum(axis=0)  # per grid cell (rows, cols)
        blank = np.array([[self.image[t:b, l:r].mean() < ink
                           for t, l, b, r in row] for row in self.receptive_fields])
        total = float(support.sum())
        return float(support[blank].sum() / total) if total > 0 else 0.0

    def mass(self, iteration: int = -1) -> np.ndarray:
        """Σ_i R_ij a_i per class (J,) at ``iteration``: the mass each parent's Gaussian fits."""
        weighted = self.steps[iteration].responsibilities * self.child_activations[..., None]
        return weighted.sum(axis=(0, 1, 2))


@torch.no_grad()
def inspect_em(model, image, iterations: int | None = None,
               class_names: tuple[str, ...] = MNIST_CLASSES) -> EMInspection:
    """The class layer's EM routing of ``image`` (28×28) with ``iterations`` (default: the
    model's own), every iteration's R_ij, a_j, σ_j, cost and λ."""
    model.eval()
    x = as_batch(image, model_device(model))
    out = model(x, iterations=iterations, trace=True)
    config = model.config
    types_first = (2, 0, 1, 3)  # (rows, cols, types, J) → (types, rows, cols, J)

    def on_grid(r: torch.Tensor) -> np.ndarray:
        return config.as_class_input_grid(r[0].float(), 0).permute(*types_first).cpu().numpy()

    steps = tuple(
        EMStep(
            responsibilities=on_grid(step.responsibilities),
            activations=step.activations[0].float().cpu().numpy(),
            sigma=step.variance[0].float().sqrt().cpu().numpy(),
            cost=step.cost[0].float().sum(-1).cpu().numpy(),
            inverse_temperature=float(step.inverse_temperature),
        )
        for step in out.routing.trace
    )
    rows, cols, _ = config.class_input_grid
    fields = np.array([[config.receptive_field(r, c) for c in range(cols)] for r in range(rows)])
    return EMInspection(
        image=x[0, 0].float().cpu().numpy(),
        activations=out.scores[0].float().cpu().numpy(),
        prediction=int(out.scores[0].argmax()),
        child_activations=out.class_inputs[0].float().permute(2, 0, 1).cpu().numpy(),
        steps=steps,
        final_responsibilities=on_grid(out.routing.responsibilities),
        receptive_fields=fields,
        class_names=class_names,
    )


__all__ = ["BLANK_INK", "EMInspection", "EMStep", "inspect_em"]

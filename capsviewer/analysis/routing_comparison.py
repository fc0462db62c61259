"""A fair comparison of routing algorithms: what is compared, the rule for which weights count,
and every measurement of one trained model (Qt-free; ``benchmarks/routing_comparison.py``
trains the models, calls :func:`measure_model` and writes the table and figure).

Entries that share the CapsNet backbone (Conv1, PrimaryCaps, W_ij, decoder, margin loss)
differ only in ``CapsNetConfig.routing`` (and the bias b_j); EM routing and Efficient-CapsNet
bring their own networks, so their rows compare whole models, not routings alone.

The support of primary capsule i for the winning digit capsule j is c_ij ‖û_{j|i}‖ (what the
Routing tab draws), its share that over Σ_i c_ij ‖û_{j|i}‖; c_ij are the final assignment
weights (for self-attention the normalised couplings, without the priors β_ij).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from capsviewer.analysis.robustness import (
    AffineParameters,
    affine_accuracy,
    clean_accuracy,
    rotation_accuracy,
)
from capsviewer.analysis.routing_diagnostics import coupling_entropy
from capsviewer.data.transforms import model_device, to_float

# Fixed before any training, and written into every result: which weights count.
CHECKPOINT_RULE = ("the weights after the last epoch of the fixed budget count: no early "
                   "stopping and no choice of epoch by test accuracy; every seed's final model "
                   "is reported, and the table gives the mean over seeds with the range")

ROTATION_ANGLES = (0, 15, 30, 45, 60, 75, 90)  # degrees, the robustness report's rotation
AFFINE_SEED = 0  # the random-affine draw (robustness report protocol, default ranges)


@dataclass(frozen=True)
class Entry:
    """One row of the comparison: a model and the options that make it what it is."""

    name: str
    title: str
    architecture: str
    model_config: dict[str, Any] = field(default_factory=dict)
    shares_backbone: bool = True  # the CapsNet backbone, only the routing differs

    def config(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        return {**self.model_config, **(overrides or {})}


ENTRIES: tuple[Entry, ...] = (
    Entry("dynamic", "Dynamic routing (Sabour et al.), r = 3", "capsnet",
          {"routing": "dynamic"}),
    Entry("dynamic-bias", "Dynamic routing + bias b_j on s_j", "capsnet",
          {"routing": "dynamic", "routing_bias": 0.1}),
    Entry("uniform", "Uniform couplings (no routing)", "capsnet", {"routing": "uniform"}),
    Entry("self-attention", "Self-attention routing (Efficient-CapsNet's)", "capsnet",
          {"routing": "self-attention"}),
    Entry("inverted-attention", "Inverted dot-product attention (Tsai et al.), r = 3",
          "capsnet", {"routing": "inverted-attention"}),
    Entry("efficient-capsnet", "Efficient-CapsNet (own backbone, 162 k)", "efficient-capsnet",
          shares_backbone=False),
    Entry("em", "Matrix capsules, EM routing (own CNN backbone)", "em-capsnet",
          shares_backbone=False),
)


# -- support of the winning capsule -----------------------------------------------------------

@torch.no_grad()
def winning_support_shares(model, images, batch_size: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(shares (N, I), predictions (N,)): each primary capsule's share of the support of the
    winning digit capsule, c_ij ‖û_{j|i}‖ / Σ_i c_ij ‖û_{j|i}‖, for a vector-capsule model."""
    model.eval()
    device = model_device(model)
    shares, predictions = [], []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start:start + batch_size].to(device))
        out = model(x, intermediates=True)
        winner = out.scores.argmax(dim=1)
        support = out.routing.couplings * out.votes.norm(dim=-1)  # (B, I, J)
        own = support[torch.arange(len(x)), :, winner]  # (B, I)
        shares.append((own / own.sum(dim=1, keepdim=True)).float().cpu())
        predictions.append(winner.cpu())
    return torch.cat(shares).numpy(), torch.cat(predictions).numpy()


@dataclass(frozen=True)
class DominantSupport:
    """The primary capsule that most often carries the largest share of the winner's support."""

    images: int
    index: int  # i, flat
    position: tuple[int, int, int]  # (map, row, col) on the primary grid
    dominant_on: int  # images on which capsule i has the largest share
    mean_share: float  # capsule i's share, mean over all images
    uniform_share: float  # 1 / I: what every capsule would carry if all were equal

    def describe(self) -> str:
        m, r, c = self.position
        return (f"map {m}, row {r}, col {c}: largest on {self.dominant_on}/{self.images}, "
                f"{100 * self.mean_share:.1f} % of the support")


def dominant_support(model, images, batch_size: int = 100) -> DominantSupport:
    shares, _ = winning_support_shares(model, images, batch_size)
    largest = shares.argmax(axis=1)
    index, count = Counter(largest.tolist()).most_common(1)[0]
    position = tuple(int(k) for k in np.unravel_index(index, model.config.primary_grid))
    return DominantSupport(len(shares), int(index), position, int(count),
                           float(shares[:, index].mean()), 1.0 / shares.shape[1])


# -- entropy of the assignment weights --------------------------------------------------------

@torch.no_grad()
def assignment_entropy(model, images, batch_size: int = 100) -> float:
    """Mean entropy of the final assignment weights over their parents, in units of log J
    (1: uniform, 0: every child wholly to one parent), each child weighted by how present it
    is (‖u_i‖, or a_i for matrix capsules), averaged over the images."""
    model.eval()
    device = model_device(model)
    totals = []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start:start + batch_size].to(device))
        out = model(x, intermediates=True)
        if hasattr(out, "class_inputs"):  # matrix capsules: the class layer's R_ij and a_i
            weights, presence = out.routing.responsibilities, out.class_inputs.flatten(1)
        else:
            weights, presence = out.routing.couplings, out.primary_capsules.norm(dim=-1)
        entropy = coupling_entropy(weights.double().cpu().numpy())  # (B, I)
        presence = presence.double().cpu().numpy()
        mass = np.maximum(presence.sum(axis=1), np.finfo(np.float64).tiny)
        totals.append((entropy * presence).sum(axis=1) / mass / math.log(weights.shape[-1]))
    return float(np.concatenate(totals).mean())


# -- one trained model --------------------------------------------------------------------------

def parameter_count(model) -> int:
    """Trainable parameters without the decoder (the count the routing papers quote)."""
    return sum(p.numel() for name, p in model.named_parameters()
               if p.requires_grad and not name.startswith("decoder."))


def measure_model(model, test_images, test_labels, *, robustness_images: int | None = None,
                  support_images: int = 300, angles=ROTATION_ANGLES,
                  batch_size: int = 250) -> dict[str, Any]:
    """Every figure of the comparison for one trained model: test accuracy (all of
    ``test_images``), accuracy under each rotation and under the random-affine set (the first
    ``robustness_images``), the assignment entropy and the dominant primary capsule (the first
    ``support_images``; vector capsules only), and the parameter count."""
    count = len(test_labels) if robustness_images is None else min(robustness_images,
                                                                   len(test_labels))
    images, labels = test_images[:count], test_labels[:count]
    support = test_images[:support_images]
    result: dict[str, Any] = {
        "test_accuracy": clean_accuracy(model, test_images, test_labels,
                                        batch_size=batch_size).accuracy["model"],
        "test_images": len(test_labels),
        "robustness_images": count,
        "rotation": {str(a): rotation_accuracy(model, images, labels, a,
                                               batch_size=batch_size).accuracy["model"]
                     for a in angles},
        "affine": affine_accuracy(model, images, labels, AffineParameters(), AFFINE_SEED,
                                  batch_size=batch_size).accuracy["model"],
        "affine_parameters": AffineParameters().describe(),
        "entropy": assignment_entropy(model, support),
        "parameters": parameter_count(model),
        "support_images": len(support),
    }
    if hasattr(model, "votes"):
        result["dominant_support"] = asdict(dominant_support(model, support))
    return result


def summarise(values: list[float]) -> tuple[float, float, float]:
    """(mean, min, max) of one figure over the seeds."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.min()), float(array.max())


__all__ = ["AFFINE_SEED", "CHECKPOINT_RULE", "ENTRIES", "ROTATION_ANGLES", "DominantSupport",
           "Entry", "assignment_entropy", "dominant_support", "measure_model", "parameter_count",
           "summarise", "winning_support_shares"]

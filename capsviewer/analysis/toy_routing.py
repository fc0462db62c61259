"""Small, exactly understood routing set-ups: equivariance and the symmetric ambiguity."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from capsviewer.maths import dynamic_routing


def rotation_matrix(theta: float, dtype=torch.float64) -> torch.Tensor:
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[c, -s], [s, c]], dtype=dtype)


def wrap_angle(angle: torch.Tensor) -> torch.Tensor:
    """Map angles to (−π, π]."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


@dataclass(frozen=True)
class EquivarianceResult:
    thetas: torch.Tensor  # rotation applied to the object (rad)
    routing_error: torch.Tensor  # |angle of v(θ) − angle of v(0) − θ|, wrapped
    invariant_error: torch.Tensor  # the same for the invariant aggregator [Σ‖û_i‖, 0]


def part_votes(theta: float, parts: int = 5, jitter: float = 0.1, seed: int = 0) -> torch.Tensor:
    """Votes (1, parts, 2, 2) of ``parts`` detectors for two wholes in 2-D.

    Whole 0 is the object at pose p(θ) = T(θ)p0: detector i votes T(θ) s_i R(φ_i) p0, i.e. the
    true pose up to a small scale s_i ≈ 1 and misalignment φ_i ≈ 0. Whole 1 gets scattered votes
    (another object the parts disagree about). All votes turn with the object: equivariant.
    """
    g = torch.Generator().manual_seed(seed)
    p0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    scales = 1 + jitter * (2 * torch.rand(parts, generator=g, dtype=torch.float64) - 1)
    misalign = jitter * (2 * torch.rand(parts, generator=g, dtype=torch.float64) - 1)
    scattered = 2 * math.pi * torch.rand(parts, generator=g, dtype=torch.float64)
    turn = rotation_matrix(theta)
    votes = torch.empty(1, parts, 2, 2, dtype=torch.float64)
    for i in range(parts):
        votes[0, i, 0] = turn @ (scales[i] * rotation_matrix(float(misalign[i])) @ p0)
        votes[0, i, 1] = turn @ (0.8 * rotation_matrix(float(scattered[i])) @ p0)
    return votes


def equivariance_experiment(
    thetas: torch.Tensor, iterations: int = 3, **vote_options
) -> EquivarianceResult:
    """How far the object's output pose is from rotating exactly with the input."""

    def routed_angle(theta: float) -> float:
        v = dynamic_routing(part_votes(theta, **vote_options), iterations).outputs[0, 0]
        return math.atan2(v[1], v[0])

    def invariant_angle(theta: float) -> float:
        total = part_votes(theta, **vote_options)[0, :, 0].norm(dim=-1).sum()
        return math.atan2(0.0, float(total))  # [Σ‖û_i‖, 0] never turns

    thetas = torch.as_tensor(thetas, dtype=torch.float64)
    routed = torch.tensor([routed_angle(float(t)) for t in thetas], dtype=torch.float64)
    invariant = torch.tensor([invariant_angle(float(t)) for t in thetas], dtype=torch.float64)
    return EquivarianceResult(
        thetas,
        wrap_angle(routed - routed_angle(0.0) - thetas).abs(),
        wrap_angle(invariant - invariant_angle(0.0) - thetas).abs(),
    )


def symmetric_votes(dtype=torch.float64) -> torch.Tensor:
    """Two parts, two wholes: every part votes (1, 0) for whole 0 and (0, 1) for whole 1."""
    votes = torch.zeros(1, 2, 2, 2, dtype=dtype)
    votes[0, :, 0, 0] = 1.0
    votes[0, :, 1, 1] = 1.0
    return votes

"""Routing theory on small problems, each claim a function the routing lab plots and tests check.

Votes û_{j|i} are float64 arrays (I, J, D) for one example; results are numpy arrays.

- The routing map near the symmetric fixed point: Δ → Δ' of the logit difference b_0 − b_1.
- What routing ascends. With logits accumulating, c ← c·exp(a)/Z is an exponentiated-gradient
  step on F(c) = Σ_j Φ(s_j), s_j = Σ_i c_ij û_{j|i}, whose gradient ∂F/∂c_ij = û_{j|i}·∇Φ(s_j)
  is the agreement when v = ∇Φ(s). F is convex, so F(c') ≥ F(c) + ∇F·(c' − c) ≥ F(c): every
  iteration ascends F. For v = s, Φ = ½‖s‖² and the agreement objective Σ c û·v = 2F is
  monotone; for v = squash(s), Φ = ‖s‖ − arctan‖s‖, while Σ c û·v = Σ ‖s‖³/(1+‖s‖²) is
  another function of the ‖s_j‖ and can go down.
- The linear-programming and attention readings of the couplings.
- Jacobians of squash, of a sigmoid-of-norm squashing, and of the softmax.
- Equivariance when every vote turns by the same rotation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from capsviewer.analysis.toy_routing import rotation_matrix, wrap_angle
from capsviewer.maths import RoutingIteration, coupling_jacobian, dynamic_routing
from capsviewer.maths.em_routing import em_routing
from capsviewer.maths import squash_jacobian as _squash_jacobian


def _tensor(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64))


def route(votes, iterations: int, *, prior=None,
          linear: bool = False) -> tuple[RoutingIteration, ...]:
    """Procedure 1 on votes (I, J, D) or a batch (B, I, J, D), every iteration traced.

    linear=False is :func:`capsviewer.maths.dynamic_routing` itself (v = squash(s));
    linear=True the same loop with v = s. prior: initial logits b_ij, broadcast to (B, I, J).
    """
    votes = _tensor(votes)
    if votes.dim() == 3:
        votes = votes[None]
    prior = None if prior is None else _tensor(prior)
    if not linear:
        return dynamic_routing(votes, iterations, logit_prior=prior, trace=True).trace
    batch, children, parents, _ = votes.shape
    logits = votes.new_zeros(batch, children, parents)
    if prior is not None:
        logits = logits + prior.expand(batch, children, parents)
    steps = []
    for _ in range(iterations):
        couplings = torch.softmax(logits, dim=-1)
        s = torch.einsum("bij,bijd->bjd", couplings, votes)
        agreement = torch.einsum("bijd,bjd->bij", votes, s)  # v = s
        steps.append(RoutingIteration(logits, couplings, s, s, agreement))
        logits = logits + agreement
    return tuple(steps)


def stack(trace, field: str, example: int = 0) -> np.ndarray:
    """One field of a trace for one example, iterations first: (R, …)."""
    return np.stack([getattr(step, field)[example].numpy() for step in trace])


# -- the unstable symmetric fixed point -------------------------------------------------------


def logit_difference_map(votes, deltas, *, linear: bool = False) -> np.ndarray:
    """One routing update as a map of the logit difference Δ = b_i0 − b_i1: every child starts
    from b_i = (Δ, 0, …, 0) and Δ' is the mean over children of b'_i0 − b'_i1 after one update.

    For symmetric votes (:func:`capsviewer.analysis.toy_routing.symmetric_votes`) every child
    has the same Δ', so this is the exact 1-D map; for other votes it is the mean. Δ = 0 is then
    a fixed point, and its slope g'(0) decides its stability (:func:`fixed_point_slope`).
    """
    votes = _tensor(votes)
    deltas = _tensor(np.atleast_1d(deltas))
    children, parents = votes.shape[:2]
    prior = torch.zeros(len(deltas), children, parents, dtype=torch.float64)
    prior[:, :, 0] = deltas[:, None]
    batch = votes.expand(len(deltas), *votes.shape)
    after = route(batch, 2, prior=prior, linear=linear)[1].logits  # b + a after one update
    return (after[:, :, 0] - after[:, :, 1]).mean(dim=1).numpy()


@dataclass(frozen=True)
class FixedPoint:
    slope: float  # g'(0), central difference
    offset: float  # g(0): 0 when Δ = 0 is a fixed point (symmetric votes)

    @property
    def is_fixed_point(self) -> bool:
        return abs(self.offset) < 1e-9

    @property
    def unstable(self) -> bool:
        return abs(self.slope) > 1


def fixed_point_slope(votes, *, linear: bool = False, step: float = 1e-5) -> FixedPoint:
    """g'(0) of :func:`logit_difference_map`, measured by central differences (float64). Above
    1, the symmetric fixed point is unstable: a small asymmetry grows by this factor per update."""
    minus, zero, plus = logit_difference_map(votes, [-step, 0.0, step], linear=linear)
    return FixedPoint(float((plus - minus) / (2 * step)), float(zero))


# -- the objective routing ascends ------------------------------------------------------------


def agreement_objective(trace, example: int = 0) -> np.ndarray:
    """Σ_ij c_ij û_{j|i}·v_j at every iteration, from that iteration's couplings and outputs."""
    return np.array([float((step.couplings[example] * step.agreement[example]).sum())
                     for step in trace])


def routing_potential(trace, *, linear: bool = False, example: int = 0) -> np.ndarray:
    """F = Σ_j Φ(‖s_j‖) at every iteration: Φ(r) = r²/2 for v = s, r − arctan r for squash
    (∇Φ(s) = v in both). Routing never decreases it (module docstring)."""
    norms = np.linalg.norm(stack(trace, "preactivations", example), axis=-1)
    phi = norms ** 2 / 2 if linear else norms - np.arctan(norms)
    return phi.sum(axis=-1)


# -- linear programming: hard assignment against soft couplings -----------------------------


@dataclass(frozen=True)
class AssignmentGap:
    """Per iteration r: the LP max_c Σ_ij c_ij a_ij over the simplex (for the outputs v of r) is
    solved by the hard assignment j*_i = argmax_j a_ij; the couplings are its soft version."""

    hard: np.ndarray  # j*_i (R, I)
    lp_value: np.ndarray  # Σ_i max_j a_ij (R,)
    soft_value: np.ndarray  # Σ_ij c_ij a_ij (R,): the agreement objective
    distance: np.ndarray  # mean over children of 1 − c_{i j*} = ½‖c_i − e_{j*}‖₁ (R,)


def assignment_gap(trace, example: int = 0) -> AssignmentGap:
    couplings = stack(trace, "couplings", example)
    agreement = stack(trace, "agreement", example)
    hard = agreement.argmax(axis=-1)
    chosen = np.take_along_axis(couplings, hard[..., None], axis=-1)[..., 0]
    return AssignmentGap(hard, agreement.max(axis=-1).sum(axis=-1),
                         (couplings * agreement).sum(axis=(1, 2)), (1 - chosen).mean(axis=-1))


def next_logits(trace, example: int = 0) -> np.ndarray:
    """b_ij after the last update, b + a (I, J): the logits an iteration R + 1 would use."""
    step = trace[-1]
    return (step.logits[example] + step.agreement[example]).numpy()


def scale_gap(logits, scales) -> tuple[np.ndarray, np.ndarray]:
    """Couplings softmax(κ b) against the hard argmax_j b_ij as the logit scale κ grows:
    (mean 1 − c_{i j*}, mean LP gap max_j b_ij − Σ_j c_ij b_ij), each (K,). The gap is at most
    H(c_i)/κ ≤ log J / κ: softmax(κb) maximises Σ_j c_j b_j + H(c)/κ."""
    logits = np.asarray(logits, dtype=np.float64)
    hard = logits.argmax(axis=-1)
    distance, gap = [], []
    for kappa in np.asarray(scales, dtype=np.float64):
        c = softmax(kappa * logits)
        distance.append(float((1 - np.take_along_axis(c, hard[:, None], axis=-1)).mean()))
        gap.append(float((logits.max(axis=-1) - (c * logits).sum(axis=-1)).mean()))
    return np.array(distance), np.array(gap)


def softmax(logits, axis: int = -1) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def entropy(couplings, axis: int = -1) -> np.ndarray:
    c = np.asarray(couplings, dtype=np.float64)
    return -(c * np.log(np.where(c > 0, c, 1.0))).sum(axis=axis)


# -- attention -------------------------------------------------------------------------------


def routing_keys(trace, example: int = 0) -> np.ndarray:
    """K_j^(r) = Σ_{k<r} v_j^(k) (R, J, D): with b accumulating û·v, b^(r) = b^(1) + û·K^(r)."""
    outputs = stack(trace, "outputs", example)
    return np.concatenate([np.zeros_like(outputs[:1]), np.cumsum(outputs, axis=0)[:-1]])


def attention_couplings(votes, keys, temperature: float = 1.0, prior=None) -> np.ndarray:
    """c_ij = softmax_j((b⁰_ij + û_{j|i}·K_j) / T): queries are the votes, keys the parents.
    At T = 1 with the routing keys this is exactly the routing's couplings."""
    votes = np.asarray(votes, dtype=np.float64)
    scores = np.einsum("ijd,jd->ij", votes, np.asarray(keys, dtype=np.float64))
    if prior is not None:
        scores = scores + np.asarray(prior, dtype=np.float64)
    return softmax(scores / temperature)


# -- Jacobians -------------------------------------------------------------------------------


def sigmoid_norm(s: torch.Tensor) -> torch.Tensor:
    """The alternative squashing v = σ(‖s‖)·s/‖s‖ (logistic sigmoid of the length, direction
    kept). Its length jumps to ½ next to s = 0, so its tangential gain σ(r)/r is unbounded."""
    norm = s.norm(dim=-1, keepdim=True)
    return torch.sigmoid(norm) * s / norm


def _along_first_axis(norms, dim: int) -> torch.Tensor:
    s = torch.zeros(len(norms), dim, dtype=torch.float64)
    s[:, 0] = _tensor(norms)
    return s


def squash_eigenvalues(norms, dim: int = 2) -> np.ndarray:
    """Eigenvalues (radial, tangential) of ∂v/∂s for v = squash(s) at ‖s‖ = r, (K, 2): read off
    the Jacobian at s = r·e₁, which is diagonal there (eigenvectors ŝ and ŝ⊥); by symmetry the
    same in every direction. Radial 2r/(1+r²)² ≤ 3√3/8 ≈ 0.650, tangential r/(1+r²) ≤ ½."""
    jacobians = _squash_jacobian(_along_first_axis(norms, dim))
    return torch.stack([jacobians[:, 0, 0], jacobians[:, 1, 1]], dim=1).numpy()


def sigmoid_norm_eigenvalues(norms, dim: int = 2) -> np.ndarray:
    """(radial, tangential) eigenvalues of ∂v/∂s for :func:`sigmoid_norm`, (K, 2), from its
    Jacobian by autograd at s = r·e₁: σ'(r) ≤ ¼ and σ(r)/r, which exceeds 1 for r < 0.659
    (where σ(r) = r) and grows without bound as r → 0."""
    s = _along_first_axis(norms, dim).requires_grad_()
    v = sigmoid_norm(s)  # rows are independent: ∂(Σ_rows v_k)/∂s is row-wise ∂v_k/∂s
    # (plain autograd: torch.func would import torch._dynamo, 1.7 s of the app's start-up)
    radial, tangential = (torch.autograd.grad(v[:, k].sum(), s, retain_graph=True)[0][:, k]
                          for k in (0, 1))
    return torch.stack([radial, tangential], dim=1).detach().numpy()


def sigmoid_norm_unit_gain() -> float:
    """The length r where σ(r) = r (bisection): below it σ(‖s‖)ŝ's tangential gain σ(r)/r > 1."""
    low, high = 0.0, 1.0  # σ(0) = ½ > 0, σ(1) ≈ 0.73 < 1
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if 1 / (1 + math.exp(-mid)) > mid else (low, mid)
    return (low + high) / 2


def softmax_jacobian(couplings) -> np.ndarray:
    """∂c_j/∂b_k = c_j(δ_jk − c_k) for couplings (…, J) → (…, J, J); symmetric, PSD, its
    eigenvalues in [0, ½]."""
    return coupling_jacobian(_tensor(couplings)).numpy()


# -- equivariance ----------------------------------------------------------------------------


def rotate_votes(votes, theta: float) -> np.ndarray:
    """Every 2-D vote turned by θ (rad) counter-clockwise."""
    return np.asarray(votes, dtype=np.float64) @ rotation_matrix(theta).numpy().T


@dataclass(frozen=True)
class EquivarianceErrors:
    """|angle(output(θ)) − angle(output(0)) − θ| of parent 0, wrapped to [0, π]."""

    thetas: np.ndarray  # rad
    routing: np.ndarray  # dynamic routing's v_0
    invariant: np.ndarray  # the invariant aggregator [Σ_i ‖û_{0|i}‖, 0], which never turns
    em: np.ndarray  # EM routing's μ_0


def equivariance_errors(votes, thetas, iterations: int = 3, *, prior=None, activations=None,
                        inverse_temperature: float = 1.0) -> EquivarianceErrors:
    """Turn all votes by each θ and route them (one batch); with the existing experiment's
    votes (:func:`capsviewer.analysis.toy_routing.part_votes`) the routing and invariant
    errors are that experiment's. prior: initial logits (I, J) of dynamic routing; activations
    (I,) of the children for EM. EM's σ² is per axis, so its μ need not turn exactly."""
    thetas = np.asarray(thetas, dtype=np.float64)
    batch = _tensor(np.stack([rotate_votes(votes, float(t))
                              for t in np.concatenate([[0.0], thetas])]))
    prior = None if prior is None else _tensor(prior)
    v = dynamic_routing(batch, iterations, logit_prior=prior).outputs[:, 0].numpy()
    routed = np.arctan2(v[:, 1], v[:, 0])
    invariant = np.zeros_like(routed)  # angle of [Σ‖û‖, 0]
    a = (torch.ones(batch.shape[:2], dtype=torch.float64) if activations is None
         else _tensor(activations).expand(batch.shape[:2]))
    mu = em_routing(batch, a, iterations, inverse_temperature=inverse_temperature).poses[:, 0]
    em = np.arctan2(mu[:, 1].numpy(), mu[:, 0].numpy())
    return EquivarianceErrors(thetas, angle_error(routed, thetas), angle_error(invariant, thetas),
                              angle_error(em, thetas))


def angle_error(angles: np.ndarray, thetas: np.ndarray) -> np.ndarray:
    """|wrap(angle(θ) − angle(0) − θ)| for angles whose first entry is at θ = 0."""
    turned = torch.as_tensor(angles[1:] - angles[0] - thetas)
    return wrap_angle(turned).abs().numpy()


SQUASH_MAX_EIGENVALUE = 3 * math.sqrt(3) / 8  # radial, at ‖s‖ = 1/√3

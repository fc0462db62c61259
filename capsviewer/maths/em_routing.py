"""EM routing between matrix capsules (Hinton, Sabour & Frosst 2018, Procedure 1), with a trace.

Shapes: B batch, I child capsules, J parent capsules, H pose entries (16 for 4×4 matrices).
    votes          V_ij = M_i W_ij, flattened          (B, I, J, H)
    activations    a_i of the children                 (B, I)
    R_ij           responsibilities, Σ_j R_ij = 1       (B, I, J)
    μ_j, σ²_j      the parent's Gaussian, per entry h   (B, J, H)
    cost_j^h       (β_u + log σ_j^h) Σ_i R_ij a_i       (B, J, H)
    a_j            logistic(λ (β_a − Σ_h cost_j^h))     (B, J)

R starts uniform (1/J). Each iteration is an M-step (R ← R·a_i; μ, σ² weighted by R; cost;
a_j) followed by an E-step (R_ij = a_j p_j(V_ij) / Σ_k a_k p_k(V_ij), p the Gaussian density).

Numerics (the formulas are the paper's; only these guards are added):
- The E-step works in the log domain: log a_j = logsigmoid(·) and log p_j are added and
  normalised with log-sum-exp (softmax), so no density is ever formed, and with a_j = 0 or
  a vote far from every parent R stays a distribution. Logits are clamped below at a huge
  finite value so that a child far from every parent gets uniform R instead of NaN.
- σ² = Σ_i R_ij a_i (V − μ)² / Σ_i R_ij a_i + ε (``variance_epsilon``): log σ and 1/σ² stay
  finite when all votes agree (σ → 0).
- The mass Σ_i R_ij a_i in the denominators of μ and σ² is clamped below at 1e-12 (1e-30 in
  float64): a parent nobody votes for (all a_i = 0) gets μ = 0, σ² = ε, cost 0 and
  a_j = logistic(λ β_a).
- Votes beyond about 1e19 in float32 overflow (V − μ)²; that is the input range.

Inverse temperature: ``inverse_temperature`` is either a final λ, expanded to the schedule
λ_t = λ·(1 − 0.95^(t+1)) for iterations t = 0, 1, … (the paper only says that λ rises with a
fixed schedule; this one is the authors' answer on OpenReview, with final λ = 0.01 for their
raw costs, as quoted in Gritzman 2019, "Avoiding implementation pitfalls of matrix capsule
networks with EM routing"), or a sequence of λ, one per iteration (cut to ``iterations``).
The schedule does not depend on the number of iterations, so r iterations are a prefix of r + 1.

Deviation on request only: ``normalize_cost=True`` standardises the total costs over the
parents before the logistic, a_j = logistic(λ (β_a − (c_j − mean_k c_k) / std_k c_k)) with
c_j = Σ_h cost_j^h, as the widely used TensorFlow implementation of Suofei Zhang does; with
``scale_cost=False`` it only centres them, a_j = logistic(λ (β_a − (c_j − mean_k c_k))). The
paper's cost grows with the number of children and with the scale of the poses (log σ), so
that with λ ≈ 1 every a_j saturates at 0 or 1 in a network at initialisation; public
implementations counter it with such normalisations or a tiny λ. Off by default; the traced
cost is always the paper's (B, J, H) cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SCHEDULE_RATE = 0.95  # λ_t = λ (1 − 0.95^(t+1))


@dataclass(frozen=True)
class EMIteration:
    """One M-step (and the parent statistics it produced), detached, for views and analyses."""

    responsibilities: torch.Tensor  # R_ij entering this M-step, before R ← R·a_i (B, I, J)
    mean: torch.Tensor  # μ_j (B, J, H)
    variance: torch.Tensor  # σ²_j, ε included (B, J, H)
    activations: torch.Tensor  # a_j (B, J)
    cost: torch.Tensor  # cost_j^h (B, J, H)
    inverse_temperature: float  # λ of this iteration

    # The trace interface every routing algorithm shares (see capsviewer.maths.routings).
    assignments = property(lambda self: self.responsibilities,
                           doc="R_ij, the responsibilities this M-step weighted the votes by")
    parent_poses = property(lambda self: self.mean, doc="μ_j (B, J, H)")
    parent_activations = property(lambda self: self.activations, doc="a_j (B, J)")


@dataclass(frozen=True)
class EMRoutingResult:
    poses: torch.Tensor  # μ_j of the last M-step (B, J, H)
    activations: torch.Tensor  # a_j of the last M-step (B, J)
    responsibilities: torch.Tensor  # R_ij of the E-step after the last M-step (B, I, J)
    trace: tuple[EMIteration, ...] | None = None
    logits: torch.Tensor | None = None  # λ (β_a − Σ_h cost_j^h) of the last M-step, a_j = σ(·)


def inverse_temperature_schedule(
    inverse_temperature: float | Sequence[float], iterations: int
) -> tuple[float, ...]:
    """λ per iteration: a final λ gives λ (1 − 0.95^(t+1)); a sequence is used as it is."""
    if isinstance(inverse_temperature, (int, float)):
        return tuple(
            float(inverse_temperature) * (1.0 - SCHEDULE_RATE ** (t + 1)) for t in range(iterations)
        )
    values = tuple(float(v) for v in inverse_temperature)
    if len(values) < iterations:
        raise ValueError(f"{len(values)} inverse temperatures for {iterations} iterations")
    return values[:iterations]


def em_routing(
    votes: torch.Tensor,
    activations: torch.Tensor,
    iterations: int = 3,
    *,
    beta_u: torch.Tensor | float = 0.0,
    beta_a: torch.Tensor | float = 0.0,
    inverse_temperature: float | Sequence[float] = 1.0,
    variance_epsilon: float = 1e-6,
    normalize_cost: bool = False,
    scale_cost: bool = True,
    detach_responsibilities: bool = False,
    trace: bool = False,
) -> EMRoutingResult:
    """Route ``votes`` (B, I, J, H) of children with ``activations`` (B, I) to J parents.

    beta_u, beta_a: scalars or tensors broadcastable to (B, J), e.g. one per parent (J,).
    inverse_temperature: final λ of the schedule above, or one λ per iteration.
    variance_epsilon: ε added to σ².
    normalize_cost: the deviation described in the module docstring (off: the paper's cost).
    scale_cost: with ``normalize_cost``, also divide the centred costs by their standard
        deviation over the parents (True, Zhang's code); False only centres them, which leaves
        the paper's a_j up to a shift of β_a per input.
    detach_responsibilities: treat R as a constant in the gradient: only the last M-step
        (μ, σ², a from the votes and activations under the final R) is differentiated, and
        the earlier iterations run without autograd. The paper does not say; by default
        gradients flow through every iteration. Detaching makes a MatrixCapsNet training step
        about 1.6× faster on a CPU, but that network then learned far more slowly.
    trace: also return every iteration's R, μ, σ², a, cost and λ (detached).
    """
    if iterations < 1:
        raise ValueError(f"EM routing needs at least 1 iteration, got {iterations}")
    if votes.dim() != 4 or activations.shape != votes.shape[:2]:
        raise ValueError(
            f"votes must be (B, I, J, H) and activations (B, I); got {tuple(votes.shape)} "
            f"and {tuple(activations.shape)}"
        )
    lambdas = inverse_temperature_schedule(inverse_temperature, iterations)
    batch, children, parents, _ = votes.shape
    dtype, device = votes.dtype, votes.device
    tiny = 1e-30 if dtype == torch.float64 else 1e-12
    lowest = torch.finfo(dtype).min / 4  # floor of the E-step logits (finite)
    beta_u = torch.as_tensor(beta_u, dtype=dtype, device=device).expand(batch, parents)
    beta_a = torch.as_tensor(beta_a, dtype=dtype, device=device).expand(batch, parents)
    # Parents-first layout (B, J, I, H): every sum over children is a batched matrix product
    # over contiguous rows. Free when the caller built the votes parents-first.
    v = votes.transpose(1, 2).contiguous()
    a_in = activations.to(dtype)[:, None, :]  # (B, 1, I)

    r = votes.new_full((batch, parents, children), 1.0 / parents)  # R_ij, parents-first
    grad = torch.is_grad_enabled()
    steps: list[EMIteration] = []
    for t, lam in enumerate(lambdas):
        with torch.set_grad_enabled(grad and (t == iterations - 1 or not detach_responsibilities)):
            mean, variance, log_variance, cost, logits, sq_dev = _m_step(
                v, a_in, r, lam, beta_u, beta_a, normalize_cost, scale_cost, variance_epsilon,
                tiny,
            )
            log_a = F.logsigmoid(logits)
        if trace:
            steps.append(
                EMIteration(
                    r.detach().transpose(1, 2).contiguous(), mean.detach(), variance.detach(),
                    log_a.detach().exp(), cost.detach(), lam,
                )
            )
        with torch.set_grad_enabled(grad and not detach_responsibilities):
            r = _e_step(sq_dev, variance, log_variance, log_a, lowest)
    return EMRoutingResult(
        poses=mean,
        activations=log_a.exp(),
        responsibilities=r.transpose(1, 2),
        trace=tuple(steps) if trace else None,
        logits=logits,
    )


def _m_step(v, a_in, r, lam, beta_u, beta_a, normalize_cost, scale_cost, variance_epsilon,
            tiny):
    """R ← R·a_i; μ_j, σ²_j weighted by R; cost_j^h; the logits of a_j. Parents-first: v (B, J, I, H),
    R (B, J, I). Also returns (V_ij − μ_j)², which the E-step reuses."""
    weighted = r * a_in  # R_ij a_i
    mass = weighted.sum(-1)  # Σ_i R_ij a_i (B, J)
    coeff = weighted / mass.clamp_min(tiny)[..., None]
    mean = torch.matmul(coeff[:, :, None, :], v).squeeze(2)  # μ_j (B, J, H)
    deviation = v - mean[:, :, None, :]
    # (V_ij − μ_j)² (B, J, I, H); in place when nothing needs the deviation for a gradient
    sq_dev = deviation.square() if torch.is_grad_enabled() else deviation.square_()
    variance = torch.matmul(coeff[:, :, None, :], sq_dev).squeeze(2) + variance_epsilon
    log_variance = variance.log()
    cost = (beta_u[..., None] + 0.5 * log_variance) * mass[..., None]  # (β_u + log σ) Σ R
    total = cost.sum(-1)  # Σ_h cost_j^h (B, J)
    if normalize_cost:
        total = total - total.mean(-1, keepdim=True)
        if scale_cost:
            total = total / (total.square().mean(-1, keepdim=True) + 1e-12).sqrt()
    logits = lam * (beta_a - total)  # a_j = logistic(logits) (B, J)
    return mean, variance, log_variance, cost, logits, sq_dev


def _e_step(sq_dev, variance, log_variance, log_a, lowest):
    """R_ij = a_j p_j(V_ij) / Σ_k a_k p_k(V_ij), as a softmax over parents of log a_j + log p_j."""
    mahalanobis = torch.matmul(sq_dev, variance.reciprocal()[..., None]).squeeze(-1)  # (B, J, I)
    log_norm = log_variance.sum(-1) + variance.shape[-1] * math.log(2 * math.pi)
    log_p = -0.5 * (mahalanobis + log_norm[..., None])
    logits = (log_a[..., None] + log_p).clamp_min(lowest)
    return torch.softmax(logits, dim=1)

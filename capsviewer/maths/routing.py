"""Dynamic routing between capsules (Sabour et al. 2017, Procedure 1), with an inspectable trace.

Shapes: B batch, I child capsules (inputs), J parent capsules (outputs), D pose dimensions.
    votes      û_{j|i} = W_ij u_i             (B, I, J, D)
    logits     b_ij                           (B, I, J)
    couplings  c_ij = softmax_j(b_ij)         (B, I, J)   sum over parents j is 1
    s_j        Σ_i c_ij û_{j|i}               (B, J, D)
    v_j        squash(s_j)                    (B, J, D)
    agreement  a_ij = û_{j|i}·v_j             (B, I, J)   added to b_ij for the next iteration
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from capsviewer.maths.squash import squash


def predict_votes(u: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """û_{j|i} = W_ij u_i for u (B, I, D_in) and weights (I, J, D_out, D_in) → (B, I, J, D_out).

    Computed once, before the routing loop: the votes do not change between iterations.
    """
    return torch.einsum("ijdk,bik->bijd", weights, u)


@dataclass(frozen=True)
class RoutingIteration:
    """One pass of the routing loop, detached from autograd, for views and analyses."""

    logits: torch.Tensor  # b_ij the couplings were computed from (B, I, J)
    couplings: torch.Tensor  # c_ij (B, I, J)
    preactivations: torch.Tensor  # s_j (B, J, D)
    outputs: torch.Tensor  # v_j (B, J, D)
    agreement: torch.Tensor  # û_{j|i}·v_j (B, I, J)


@dataclass(frozen=True)
class RoutingResult:
    outputs: torch.Tensor  # v_j after the last iteration (B, J, D)
    couplings: torch.Tensor  # c_ij of the last iteration (B, I, J)
    trace: tuple[RoutingIteration, ...] | None = None


def dynamic_routing(
    votes: torch.Tensor,
    iterations: int = 3,
    *,
    logit_prior: torch.Tensor | float | None = None,
    vote_perturbation: torch.Tensor | float = 0.0,
    generator: torch.Generator | None = None,
    detach_votes: bool = False,
    trace: bool = False,
) -> RoutingResult:
    """Route ``votes`` (B, I, J, D) to J parent capsules by agreement.

    iterations: r ≥ 1; r = 1 gives uniform couplings c_ij = 1/J (no routing by agreement).
    logit_prior: initial logits b_ij (a log prior), broadcast to (B, I, J); zeros by default.
    vote_perturbation: a tensor added to the votes, or the standard deviation of Gaussian noise
        drawn from ``generator``; either breaks exact symmetries between parents.
    detach_votes: route on ``votes.detach()`` in every iteration but the last, so gradients reach
        W only through the final Σ c_ij û_{j|i}, with the couplings held as constants. The paper
        does not say; the authors' TensorFlow code backpropagates through every iteration, which
        is our default. Detaching (as several re-implementations do) saves backward time and
        memory in proportion to r and keeps the unstable fixed point of the routing map out of
        the gradient; accuracy is comparable in published replications.
    trace: also return every iteration's logits, couplings, s, v and agreement (detached).
    """
    if iterations < 1:
        raise ValueError(f"routing needs at least 1 iteration, got {iterations}")
    if isinstance(vote_perturbation, torch.Tensor):
        votes = votes + vote_perturbation
    elif vote_perturbation:
        noise = torch.randn(votes.shape, generator=generator, dtype=votes.dtype)
        votes = votes + vote_perturbation * noise.to(votes.device)
    routed = votes.detach() if detach_votes else votes

    logits = votes.new_zeros(votes.shape[:3])
    if logit_prior is not None:
        logits = logits + logit_prior
    steps = []
    for r in range(iterations):
        last = r == iterations - 1
        couplings = torch.softmax(logits, dim=2)
        source = votes if last else routed
        s = torch.einsum("bij,bijd->bjd", couplings, source)
        v = squash(s)
        if trace or not last:
            agreement = torch.einsum("bijd,bjd->bij", routed, v)
        if trace:
            steps.append(
                RoutingIteration(
                    logits.detach(),
                    couplings.detach(),
                    s.detach(),
                    v.detach(),
                    agreement.detach(),
                )
            )
        if not last:
            logits = logits + agreement
    return RoutingResult(v, couplings, tuple(steps) if trace else None)


def coupling_jacobian(couplings: torch.Tensor) -> torch.Tensor:
    """∂c_j/∂b_k = c_j(δ_jk − c_k) of the softmax over the last axis: (..., J) → (..., J, J)."""
    return torch.diag_embed(couplings) - couplings[..., :, None] * couplings[..., None, :]

"""Inverted dot-product attention routing (Tsai, Srivastava, Goh & Salakhutdinov 2020, Proc. 1).

Shapes: B batch, I children, J parents, D pose dimensions; votes v_ij = W_ij p_i.
    poses       p_j = 0 before the first iteration          (B, J, D)
    agreement   a_ij = p_j·v_ij                             (B, I, J)
    routing     r_ij = softmax_j(a_ij)                      (B, I, J)   sum over parents j is 1
    s_j         Σ_i r_ij v_ij                               (B, J, D)
    p_j         LayerNorm(s_j)                              (B, J, D)   the next iteration's poses

"Inverted" attention: the parents are the queries and the children's votes the keys, but the
softmax runs over the queries, so the parents compete for each child (ordinary attention would
normalise over the children). The agreement is recomputed from the current poses in every
iteration, not accumulated as in dynamic routing, and the first iteration, with p_j = 0, routes
uniformly. The paper updates all capsule layers concurrently (every layer's iteration t from
the poses of iteration t − 1); with one routing layer, as here, that is the same as updating in
turn. The authors' code also divides a_ij by √D; the paper's text does not, nor does this.
tests/reference/inverted_attention_routing.py transcribes the procedure with loops.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from capsviewer.maths.routing import (
    RoutingIteration,
    RoutingResult,
    vote_agreement,
    weighted_votes,
)


class InvertedAttentionIteration(RoutingIteration):
    """One iteration: ``logits`` a_ij from the previous poses, ``couplings`` r_ij, s_j,
    ``outputs`` p_j = LayerNorm(s_j), ``agreement`` p_j·v_ij (the next iteration's a_ij)."""

    @property
    def parent_activations(self) -> None:
        """None: the procedure has no activations (Tsai et al. read class scores off the
        poses with a linear layer; see the model)."""
        return None


def inverted_attention_routing(
    votes: torch.Tensor,
    iterations: int = 3,
    *,
    layer_norm: Callable[[torch.Tensor], torch.Tensor] | None = None,
    trace: bool = False,
) -> RoutingResult:
    """Route ``votes`` (B, I, J, D) to J parents by inverted dot-product attention.

    iterations: ≥ 1; one iteration routes uniformly (the poses start at 0).
    layer_norm: the normalisation of s_j over its D entries, e.g. an ``nn.LayerNorm(D)`` with
        learned gain and bias; None: F.layer_norm without them.
    trace: every iteration's a_ij, r_ij, s_j, p_j and next agreement (detached).
    """
    if iterations < 1:
        raise ValueError(f"routing needs at least 1 iteration, got {iterations}")
    batch, children, parents, dim = votes.shape
    if layer_norm is None:
        def layer_norm(s):
            return F.layer_norm(s, (dim,))
    flat = votes.reshape(batch, children, parents * dim)
    logits = flat.new_zeros(batch, parents, children)  # a_ij with p_j = 0, parents first
    steps: list[InvertedAttentionIteration] = []
    for t in range(iterations):
        routing = torch.softmax(logits, dim=1)  # r_ij over parents j
        s = weighted_votes(routing, flat)
        poses = layer_norm(s)
        if not trace and t == iterations - 1:
            break
        agreement = vote_agreement(flat, poses)  # p_j·v_ij
        if trace:
            steps.append(InvertedAttentionIteration(
                *(x.detach().transpose(1, 2).contiguous() for x in (logits, routing)),
                s.detach(), poses.detach(), agreement.detach().transpose(1, 2).contiguous()))
        logits = agreement
    return RoutingResult(poses, routing.transpose(1, 2), tuple(steps) if trace else None)

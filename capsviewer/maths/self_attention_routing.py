"""Self-attention routing of Efficient-CapsNet (Mazzia, Salvetti & Chiaberge 2021): one pass.

Shapes: B batch, I children, J parents, D parent pose dimensions; votes û_{j|i} = W_ij u_i.
    self-attention  A_j[i, k] = û_{j|i}·û_{j|k} / √D      (B, J, I, I), one matrix per parent
    logits          b_ij = Σ_k A_j[i, k] = û_{j|i}·Σ_k û_{j|k} / √D   (B, I, J)
    couplings       c_ij = softmax_j(b_ij)                 (B, I, J)   sum over parents j is 1
    s_j             Σ_i (c_ij + β_ij) û_{j|i}              (B, J, D)   β_ij: learned log priors
    v_j             squash(s_j)                            (B, J, D)

A child's logit for parent j is its vote's agreement with the sum of all votes for j: the
pairwise A_j never needs forming (O(I·J·D) instead of O(I²·J·D)). The softmax runs over the
parents, as in the authors' code (``tf.nn.softmax(c, axis=1)`` of a (B, J, I, 1) tensor); the
priors β (J, I there, zeros at the start) are added after the softmax, so c + β is not a
distribution. Efficient-CapsNet squashes with :func:`capsviewer.maths.squash.efficient_squash`;
``squash_function`` chooses. tests/reference/self_attention_routing.py forms A_j literally.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from capsviewer.maths.routing import (
    RoutingIteration,
    RoutingResult,
    vote_agreement,
    weighted_votes,
)
from capsviewer.maths.squash import squash


def self_attention_routing(
    votes: torch.Tensor,
    *,
    log_prior: torch.Tensor | None = None,
    squash_function: Callable[[torch.Tensor], torch.Tensor] = squash,
    bias: torch.Tensor | None = None,
    trace: bool = False,
) -> RoutingResult:
    """Route ``votes`` (B, I, J, D) to J parents in one pass of self-attention.

    log_prior: β_ij as (I, J), added to the couplings; None: none.
    bias: b_j (J, D) added to s_j (not in Efficient-CapsNet); None: none.
    trace: one RoutingIteration (logits b_ij, couplings c_ij, s_j, v_j, agreement û·v_j).
    """
    batch, children, parents, dim = votes.shape
    flat = votes.reshape(batch, children, parents * dim)
    totals = votes.sum(dim=1)  # Σ_k û_{j|k} (B, J, D)
    logits = vote_agreement(flat, totals) / math.sqrt(dim)  # (B, J, I), parents first
    couplings = torch.softmax(logits, dim=1)
    weights = couplings if log_prior is None else couplings + log_prior.transpose(0, 1)
    s = weighted_votes(weights, flat)
    if bias is not None:
        s = s + bias
    v = squash_function(s)
    steps = None
    if trace:
        agreement = vote_agreement(flat, v)
        steps = (RoutingIteration(
            *(t.detach().transpose(1, 2).contiguous() for t in (logits, couplings)),
            s.detach(), v.detach(), agreement.detach().transpose(1, 2).contiguous()),)
    return RoutingResult(v, couplings.transpose(1, 2), steps)

"""Straightforward dynamic routing, written as the TensorFlow reference does it.

The inputs are tiled to every parent and the votes W_ij u_i are recomputed inside every routing
iteration. It exists to check :func:`capsviewer.maths.routing.dynamic_routing` (which computes the
votes once) and as the baseline formulation in benchmarks; do not use it for real work.
"""

import torch

from capsviewer.maths.squash import squash


def dynamic_routing_recomputed(
    u: torch.Tensor, weights: torch.Tensor, iterations: int = 3, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Route children u (B, I, D_in) through weights (I, J, D_out, D_in); returns v (B, J, D_out).
    ``bias`` (J, D_out), if given, is added to s_j in every iteration."""
    batch, children, _ = u.shape
    parents = weights.shape[1]
    tiled_u = u[:, :, None, :, None].expand(-1, -1, parents, -1, -1)  # (B, I, J, D_in, 1)
    tiled_w = weights[None].expand(batch, -1, -1, -1, -1)  # (B, I, J, D_out, D_in)
    logits = u.new_zeros(batch, children, parents, 1)
    for r in range(iterations):
        couplings = torch.softmax(logits, dim=2)
        votes = (tiled_w @ tiled_u).squeeze(-1)  # recomputed every iteration
        s = (couplings * votes).sum(dim=1)
        v = squash(s if bias is None else s + bias)
        if r < iterations - 1:
            logits = logits + (votes * v[:, None]).sum(-1, keepdim=True)
    return v

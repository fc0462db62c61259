"""Efficient-CapsNet's self-attention routing transcribed literally, one scalar at a time.

The self-attention matrix A_j of every parent is formed in full (the vectorised code never
forms it), then summed over its columns, softmaxed over the parents, the priors added and the
votes summed. Plain Python loops on floats: only for checking
:func:`capsviewer.maths.self_attention_routing.self_attention_routing` on small inputs.
"""

from __future__ import annotations

import math

import torch


def self_attention_routing_loops(votes: torch.Tensor, log_prior: torch.Tensor | None = None,
                                 squash_function=None):
    """votes (B, I, J, D), log_prior (I, J): returns (v (B, J, D), c (B, I, J)) in float64."""
    u = votes.double().tolist()
    batch, children, parents, dim = votes.shape
    prior = [[0.0] * parents for _ in range(children)] if log_prior is None \
        else log_prior.double().tolist()
    outputs, couplings = [], []
    for b in range(batch):
        logits = [[0.0] * parents for _ in range(children)]
        for j in range(parents):
            # A_j[i][k] = û_{j|i}·û_{j|k} / √D
            attention = [[sum(u[b][i][j][d] * u[b][k][j][d] for d in range(dim)) / math.sqrt(dim)
                          for k in range(children)] for i in range(children)]
            for i in range(children):
                logits[i][j] = sum(attention[i][k] for k in range(children))
        c = []
        for i in range(children):
            top = max(logits[i])
            e = [math.exp(x - top) for x in logits[i]]
            c.append([x / sum(e) for x in e])
        s = [[sum((c[i][j] + prior[i][j]) * u[b][i][j][d] for i in range(children))
              for d in range(dim)] for j in range(parents)]
        outputs.append(s)
        couplings.append(c)
    s = torch.tensor(outputs, dtype=torch.float64)
    v = s if squash_function is None else squash_function(s)
    return v, torch.tensor(couplings, dtype=torch.float64)

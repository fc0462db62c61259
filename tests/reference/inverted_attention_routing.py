"""Inverted dot-product attention routing transcribed literally from Tsai et al. (2020),
Procedure 1, one scalar at a time: agreement, routing coefficient, pose update, LayerNorm.

Plain Python loops on floats: only for checking
:func:`capsviewer.maths.inverted_attention_routing.inverted_attention_routing` on small inputs.
The LayerNorm has no learned gain or bias (ε = 1e-5, as torch's default).
"""

from __future__ import annotations

import math

import torch


def inverted_attention_routing_loops(votes: torch.Tensor, iterations: int = 3, eps: float = 1e-5):
    """votes (B, I, J, D): returns (poses p_j (B, J, D), routing r_ij (B, I, J)) per iteration,
    as lists of length ``iterations``, in float64."""
    v = votes.double().tolist()
    batch, children, parents, dim = votes.shape
    poses_per_iteration, routing_per_iteration = [], []
    poses = [[[0.0] * dim for _ in range(parents)] for _ in range(batch)]  # p_j ← 0
    for _ in range(iterations):
        routing_now, poses_now = [], []
        for b in range(batch):
            r = []
            for i in range(children):
                a = [sum(poses[b][j][d] * v[b][i][j][d] for d in range(dim))  # agreement
                     for j in range(parents)]
                top = max(a)
                e = [math.exp(x - top) for x in a]
                r.append([x / sum(e) for x in e])  # routing coefficient over parents j
            p = []
            for j in range(parents):
                s = [sum(r[i][j] * v[b][i][j][d] for i in range(children)) for d in range(dim)]
                mean = sum(s) / dim
                var = sum((x - mean) ** 2 for x in s) / dim
                p.append([(x - mean) / math.sqrt(var + eps) for x in s])  # LayerNorm
            routing_now.append(r)
            poses_now.append(p)
        poses = poses_now
        poses_per_iteration.append(torch.tensor(poses_now, dtype=torch.float64))
        routing_per_iteration.append(torch.tensor(routing_now, dtype=torch.float64))
    return poses_per_iteration, routing_per_iteration

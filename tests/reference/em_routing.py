"""EM routing transcribed literally from the paper's Procedure 1, one scalar at a time.

Plain Python loops over images b, children i, parents j and pose entries h, on floats: slow, and
only for checking :func:`capsviewer.maths.em_routing.em_routing` on small inputs. The guards of
the vectorised code are the same (σ² + ε, Σ_i R_ij clamped in denominators); the E-step forms
the densities p_j directly, as the paper writes it, so inputs must keep them representable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from capsviewer.maths.em_routing import EMIteration, EMRoutingResult


def em_routing_loops(
    votes: torch.Tensor,
    activations: torch.Tensor,
    iterations: int = 3,
    *,
    beta_u: torch.Tensor | float = 0.0,
    beta_a: torch.Tensor | float = 0.0,
    inverse_temperature: float | Sequence[float] = 1.0,
    variance_epsilon: float = 1e-6,
    tiny: float = 1e-30,
) -> EMRoutingResult:
    """Same arguments and result (trace always included) as ``em_routing``, in float64."""
    V = votes.double().tolist()  # V[b][i][j][h]
    a_in = activations.double().tolist()
    B, I, J, H = votes.shape
    bu = torch.as_tensor(beta_u, dtype=torch.float64).expand(J).tolist()
    ba = torch.as_tensor(beta_a, dtype=torch.float64).expand(J).tolist()
    if isinstance(inverse_temperature, (int, float)):
        lambdas = [inverse_temperature * (1 - 0.95 ** (t + 1)) for t in range(iterations)]
    else:
        lambdas = list(inverse_temperature)[:iterations]

    # ∀i, j: R_ij ← 1/J
    R = [[[1.0 / J for _ in range(J)] for _ in range(I)] for _ in range(B)]
    trace = []
    for t in range(iterations):
        lam = lambdas[t]
        mu = [[[0.0] * H for _ in range(J)] for _ in range(B)]
        var = [[[0.0] * H for _ in range(J)] for _ in range(B)]
        cost = [[[0.0] * H for _ in range(J)] for _ in range(B)]
        a = [[0.0] * J for _ in range(B)]
        R_used = [[row[:] for row in R[b]] for b in range(B)]
        for b in range(B):
            # M-step, for every parent j.
            for j in range(J):
                Ra = [R[b][i][j] * a_in[b][i] for i in range(I)]  # R_ij ← R_ij a_i
                total = sum(Ra)
                denominator = max(total, tiny)
                for h in range(H):
                    mu[b][j][h] = sum(Ra[i] * V[b][i][j][h] for i in range(I)) / denominator
                    var[b][j][h] = (
                        sum(Ra[i] * (V[b][i][j][h] - mu[b][j][h]) ** 2 for i in range(I))
                        / denominator
                        + variance_epsilon
                    )
                    sigma = math.sqrt(var[b][j][h])
                    cost[b][j][h] = (bu[j] + math.log(sigma)) * total
                a[b][j] = 1.0 / (1.0 + math.exp(-lam * (ba[j] - sum(cost[b][j]))))
            # E-step, for every child i.
            for i in range(I):
                p = [0.0] * J
                for j in range(J):
                    norm = 1.0
                    for h in range(H):
                        norm *= 2 * math.pi * var[b][j][h]
                    exponent = sum(
                        (V[b][i][j][h] - mu[b][j][h]) ** 2 / (2 * var[b][j][h]) for h in range(H)
                    )
                    p[j] = math.exp(-exponent) / math.sqrt(norm)
                evidence = sum(a[b][k] * p[k] for k in range(J))
                for j in range(J):
                    R[b][i][j] = a[b][j] * p[j] / evidence
        trace.append(
            EMIteration(
                *(torch.tensor(x, dtype=torch.float64) for x in (R_used, mu, var, a, cost)),
                float(lam),
            )
        )
    last = trace[-1]
    return EMRoutingResult(
        last.mean, last.activations, torch.tensor(R, dtype=torch.float64), tuple(trace)
    )

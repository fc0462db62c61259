"""The squashing non-linearity (eq. 1): v = ‖s‖²/(1+‖s‖²) · s/‖s‖."""

import torch


def squash(s: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shrink ``s`` along ``dim`` to length ‖s‖²/(1+‖s‖²) < 1, keeping its direction.

    Written as s·‖s‖/(1+‖s‖²), with ‖s‖ taken from a squared norm clamped at the dtype's
    smallest normal number: exact for every representable non-zero input, and at s = 0 both
    the value (0) and the gradient (≈0) stay finite, where the textbook form divides by zero.
    """
    squared = s.pow(2).sum(dim=dim, keepdim=True)
    norm = squared.clamp_min(torch.finfo(s.dtype).tiny).sqrt()
    return s * (norm / (1.0 + squared))


def squash_jacobian(s: torch.Tensor) -> torch.Tensor:
    """Analytic Jacobian ∂v/∂s of :func:`squash` for vectors ``s`` of shape (..., D).

    With r = ‖s‖ and ŝ = s/r: J = r/(1+r²)·(I − ŝŝᵀ) + 2r/(1+r²)²·ŝŝᵀ. The two eigenvalues
    are at most 1/2 and 3√3/8 ≈ 0.65, so squash is a contraction (all eigenvalues < 1).
    """
    r2 = s.pow(2).sum(-1, keepdim=True)[..., None]
    r = r2.clamp_min(torch.finfo(s.dtype).tiny).sqrt()
    unit = s[..., :, None] / r
    outer = unit @ unit.transpose(-1, -2)
    eye = torch.eye(s.shape[-1], dtype=s.dtype, device=s.device)
    return r / (1 + r2) * (eye - outer) + 2 * r / (1 + r2) ** 2 * outer


def efficient_squash(s: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Efficient-CapsNet's squash (Mazzia et al. 2021, eq. 5): v = (1 − e^(−‖s‖)) · s/‖s‖.

    Steeper near 0 than :func:`squash` (slope 1 instead of ‖s‖): written as s·(−expm1(−‖s‖))/‖s‖
    with ‖s‖ clamped at the dtype's smallest normal number, finite at s = 0.
    """
    norm = s.pow(2).sum(dim=dim, keepdim=True).clamp_min(torch.finfo(s.dtype).tiny).sqrt()
    return s * (-torch.expm1(-norm) / norm)

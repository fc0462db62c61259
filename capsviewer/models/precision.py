"""Numerical precision: bf16 where the hardware computes it natively, fp32 elsewhere.

Mixed precision here means the convolutions, nearly all of the arithmetic, run in bf16 under
autocast while weights, routing, decoder and losses stay fp32 (the models cast back with
:func:`full_precision`).
"""

from __future__ import annotations

import torch


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 activations (from autocast) back to fp32; other dtypes are left alone."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def native_bf16(device: torch.device | str) -> bool:
    """Does ``device`` do bf16 arithmetic in hardware (CUDA from Ampere on; CPUs with
    AVX512-BF16 or AMX)? Elsewhere bf16 is emulated and slower than fp32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def batch_autocast(device: torch.device | str):
    """Autocast to bf16 for batched inference (rotation sweeps, test sets) where the device
    has native bf16, else a no-op context."""
    device = torch.device(device)
    return torch.autocast(device.type, torch.bfloat16, enabled=native_bf16(device))

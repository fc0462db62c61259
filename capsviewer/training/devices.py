"""Choosing the device models run on. Light to import (torch is imported by the functions):
the command line's help and the app's start read the names here."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICE_HELP = "auto (CUDA when present, else CPU), cpu, cuda, cuda:N"


class DeviceUnavailable(RuntimeError):
    pass


def select_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) picks CUDA when present, else the CPU; anything else is checked."""
    import torch

    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise DeviceUnavailable(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                "CUDA was requested but no CUDA GPU is available to this torch build; "
                "use --device cpu (or auto)"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailable(
                f"{device} was requested but only {torch.cuda.device_count()} GPU(s) exist"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailable("Apple MPS was requested but is not available here")
    return device


def device_choices() -> list[str]:
    """The devices to offer a user: auto and cpu, then every CUDA GPU torch sees."""
    import torch

    choices = ["auto", "cpu"]
    if torch.cuda.is_available():
        choices += [f"cuda:{k}" for k in range(torch.cuda.device_count())]
    return choices


def describe_device(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({torch.get_num_threads()} threads)"


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → ``bf16`` where the hardware does bf16 arithmetic natively (CUDA GPUs from
    Ampere on; CPUs with AVX512-BF16 or AMX), else ``fp32``. ``bf16`` is mixed precision:
    the convolutions run in bf16 under autocast, weights and everything else stay fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    from capsviewer.models.precision import native_bf16

    return "bf16" if native_bf16(device) else "fp32"


def autocast(device: torch.device, precision: str):
    """The autocast context for a resolved ``precision`` (disabled for fp32)."""
    import torch

    return torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16")

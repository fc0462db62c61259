"""Choosing the device models run on."""

from __future__ import annotations

import torch


class DeviceUnavailable(RuntimeError):
    pass


def select_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) picks CUDA when present, else the CPU; anything else is checked."""
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


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({torch.get_num_threads()} threads)"

"""Model registry: every architecture by name, with its config class."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from torch import nn

from capsviewer.checks import ROUTING_ITERATIONS, number_problem

from capsviewer.models.capsnet import CapsNet, CapsNetConfig, CapsNetOutput
from capsviewer.models.cnn import BaselineCNN, CNNConfig, CNNOutput
from capsviewer.models.efficient_capsnet import EfficientCapsNet, EfficientCapsNetConfig
from capsviewer.models.matrix_capsnet import (
    EMCapsNet,
    EMCapsNetConfig,
    MatrixCapsNet,
    MatrixCapsNetConfig,
    MatrixCapsNetOutput,
)
from capsviewer.models.multimnist import MULTIMNIST_MODELS

MODELS: dict[str, tuple[type[nn.Module], type]] = {
    "capsnet": (CapsNet, CapsNetConfig),
    "cnn": (BaselineCNN, CNNConfig),
    "matrix-capsnet": (MatrixCapsNet, MatrixCapsNetConfig),
    "em-capsnet": (EMCapsNet, EMCapsNetConfig),
    "efficient-capsnet": (EfficientCapsNet, EfficientCapsNetConfig),
}

# What the app, the reports and the Training tab call each architecture.
TITLES = {"capsnet": "CapsNet", "cnn": "CNN", "matrix-capsnet": "Matrix capsules (EM routing)",
          "em-capsnet": "Matrix capsules on a CNN backbone (EM routing)",
          "efficient-capsnet": "Efficient-CapsNet (self-attention routing)"}


def display_name(architecture: str) -> str:
    """``CapsNet``, ``CNN``, … for a registered architecture; any other name as it is."""
    return TITLES.get(architecture, architecture)


def configured_by(field: str) -> tuple[str, ...]:
    """The architectures whose config has ``field`` (``routing``: capsnet)."""
    return tuple(name for name, (_, config) in MODELS.items()
                 if any(f.name == field for f in dataclasses.fields(config)))


def default_routing_iterations() -> dict[str, int]:
    """The architectures that route, with their configs' default number of iterations."""
    return {name: MODELS[name][1]().routing_iterations
            for name in configured_by("routing_iterations")}


# Ranges of config values (from checkpoints, the command line): an integer is a size or a
# count, 1 to 4,096, unless named here; a float is finite and within its range.
LIMITS: dict[str, tuple[float, float]] = {
    "routing_iterations": ROUTING_ITERATIONS, "image_size": (8, 256), "num_targets": (1, 2),
    "in_channels": (1, 4), "margin_ramp_steps": (1, 10**9), "dropout": (0.0, 0.99),
    "margin_start": (0.0, 1.0), "margin_end": (0.0, 1.0), "inverse_temperature": (0.0, 1e4),
    "variance_epsilon": (1e-12, 1.0), "reconstruction_weight": (0.0, 1e3),
    "vote_init_std": (0.0, 1e3), "transform_init_std": (0.0, 1e3), "routing_bias": (-1e3, 1e3),
    "conv2_channels": (0, 4096), "conv_caps_layers": (0, 2),
}
INT_LIMITS = (1, 4096)
MAX_LAYERS = 16  # entries of a tuple field (decoder_hidden, channels)


def make_config(architecture: str, values: dict[str, Any] | None = None):
    """Build the config of ``architecture`` from plain values (JSON lists become tuples).
    Unknown keys, values of the wrong type and values out of range (:data:`LIMITS`) are
    refused with a ValueError, so that a foreign or crafted checkpoint cannot slip through."""
    if not isinstance(architecture, str) or architecture not in MODELS:
        raise KeyError(f"unknown architecture {architecture!r}; known: {', '.join(MODELS)}")
    config_cls = MODELS[architecture][1]
    if values is not None and not isinstance(values, dict):
        raise ValueError(f"{architecture} config must be a mapping of names to values, "
                         f"not {type(values).__name__}")
    values = dict(values or {})
    hints = typing.get_type_hints(config_cls)
    unknown = set(values) - set(hints)
    if unknown:
        raise ValueError(f"{architecture} config has unknown fields: "
                         f"{', '.join(sorted(map(str, unknown)))[:200]}")
    for name, value in values.items():
        problem = _value_problem(name, hints[name], value)
        if problem:
            raise ValueError(f"{architecture} config: {name} {problem}, got {value!r:.60}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    config = config_cls(**values)
    problem = _geometry_problem(config)
    if problem:
        raise ValueError(f"{architecture} config: {problem}")
    return config


def _geometry_problem(config) -> str | None:
    """Layers that cannot run on the config's images: a grid with no cells left (an image
    smaller than the kernels need), a CNN whose layer lists differ in length, or an even CNN
    kernel (its padding keeps the size of odd ones only)."""
    sides = [*getattr(config, "primary_grid", ())[1:], *getattr(config, "grids", ())]
    if hasattr(config, "kernel_sizes"):  # the CNN: each layer pads, then halves the image
        if len(config.channels) != len(config.kernel_sizes):
            return "channels and kernel_sizes need one entry per layer"
        if any(k % 2 == 0 for k in config.kernel_sizes):
            return "kernel_sizes must be odd"
        sides.append(config.image_size >> len(config.channels))
    if any(side < 1 for side in sides):
        return (f"its layers do not fit a {config.image_size}×{config.image_size} image "
                "(the kernels and strides leave no pixels)")
    return None


def _value_problem(name: str, kind, value) -> str | None:
    """Why ``value`` does not fit a config field of type ``kind`` (int, float, bool, str,
    ``float | None`` or ``tuple[int, ...]``), or None."""
    args = typing.get_args(kind)
    if type(None) in args:
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
    if kind is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if kind is str:  # a name (the routing…): the config itself checks it is a known one
        return None if isinstance(value, str) and len(value) <= 64 else "must be a short name"
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_LAYERS:
            return f"must be a list of 1 to {MAX_LAYERS} sizes"
        problems = [_value_problem(name, typing.get_args(kind)[0], v) for v in value]
        return next((f"entries {p}" for p in problems if p), None)
    low, high = LIMITS.get(name, INT_LIMITS if kind is int else (None, None))
    return number_problem(value, kind, low, high)


def build_model(architecture: str, config: dict[str, Any] | None = None) -> nn.Module:
    return MODELS[architecture][0](make_config(architecture, config))


__all__ = [
    "MODELS",
    "MULTIMNIST_MODELS",
    "TITLES",
    "BaselineCNN",
    "CNNConfig",
    "CNNOutput",
    "CapsNet",
    "CapsNetConfig",
    "CapsNetOutput",
    "EMCapsNet",
    "EMCapsNetConfig",
    "EfficientCapsNet",
    "EfficientCapsNetConfig",
    "MatrixCapsNet",
    "MatrixCapsNetConfig",
    "MatrixCapsNetOutput",
    "build_model",
    "configured_by",
    "default_routing_iterations",
    "display_name",
    "make_config",
]

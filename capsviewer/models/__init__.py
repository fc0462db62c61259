"""Model registry: every architecture by name, with its config class."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from capsviewer.models.capsnet import CapsNet, CapsNetConfig, CapsNetOutput
from capsviewer.models.cnn import BaselineCNN, CNNConfig, CNNOutput
from capsviewer.models.efficient_capsnet import EfficientCapsNet, EfficientCapsNetConfig
from capsviewer.models.matrix_capsnet import (
    MatrixCapsNet,
    MatrixCapsNetConfig,
    MatrixCapsNetOutput,
)
from capsviewer.models.multimnist import MULTIMNIST_MODELS

MODELS: dict[str, tuple[type[nn.Module], type]] = {
    "capsnet": (CapsNet, CapsNetConfig),
    "cnn": (BaselineCNN, CNNConfig),
    "matrix-capsnet": (MatrixCapsNet, MatrixCapsNetConfig),
    "efficient-capsnet": (EfficientCapsNet, EfficientCapsNetConfig),
}

# What the app, the reports and the Training tab call each architecture.
TITLES = {"capsnet": "CapsNet", "cnn": "CNN", "matrix-capsnet": "Matrix capsules (EM routing)",
          "efficient-capsnet": "Efficient-CapsNet (self-attention routing)"}


def display_name(architecture: str) -> str:
    """``CapsNet``, ``CNN``, … for a registered architecture; any other name as it is."""
    return TITLES.get(architecture, architecture)


def default_routing_iterations() -> dict[str, int]:
    """The architectures that route, with their configs' default number of iterations."""
    return {name: config().routing_iterations for name, (_, config) in MODELS.items()
            if any(f.name == "routing_iterations" for f in dataclasses.fields(config))}


def make_config(architecture: str, values: dict[str, Any] | None = None):
    """Build the config of ``architecture`` from plain values (JSON lists become tuples);
    unknown keys are refused so that a foreign checkpoint cannot slip through."""
    if architecture not in MODELS:
        raise KeyError(f"unknown architecture {architecture!r}; known: {', '.join(MODELS)}")
    config_cls = MODELS[architecture][1]
    values = dict(values or {})
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(values) - fields
    if unknown:
        raise ValueError(f"{architecture} config has unknown fields: {', '.join(sorted(unknown))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return config_cls(**values)


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
    "EfficientCapsNet",
    "EfficientCapsNetConfig",
    "MatrixCapsNet",
    "MatrixCapsNetConfig",
    "MatrixCapsNetOutput",
    "build_model",
    "default_routing_iterations",
    "display_name",
    "make_config",
]

"""The MultiMNIST models (Sabour et al. 2017, Section 6): 36×36 inputs, two digits in each.

Each entry is (architecture, config values) for :func:`capsviewer.models.build_model`.
"""

from __future__ import annotations

from typing import Any

MULTIMNIST_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    # The paper's CapsNet on 36×36: primary grid 10×10 (3,200 capsules), decoder to 36×36;
    # 11,361,808 parameters (the paper: 11.36M).
    "capsnet": ("capsnet", {"image_size": 36, "num_targets": 2}),
    # The baseline of the authors' released code (models/conv_model.py): 5×5 convolutions of
    # 512 and 256 channels, each with 2×2 max-pooling, FC 1024, 10 outputs, no dropout;
    # 24,535,306 parameters (the paper: 24.56M).
    "cnn": ("cnn", {"image_size": 36, "num_targets": 2, "channels": (512, 256),
                    "kernel_sizes": (5, 5), "hidden": 1024, "dropout": 0.0}),
    # The shipped MNIST CNN's layers on 36×36: 881,290 parameters.
    "cnn-small": ("cnn", {"image_size": 36, "num_targets": 2}),
}

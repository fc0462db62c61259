"""Efficient-CapsNet (Mazzia, Salvetti & Chiaberge 2021): a small backbone, 16 primary capsules
and one pass of self-attention routing; 161,824 parameters without the decoder.

Conv 5×5 (32) → Conv 3×3 (64) → Conv 3×3 (64) → Conv 3×3 stride 2 (128), each ReLU then batch
norm, → a depthwise 9×9 convolution over the 9×9 map: 128 numbers, 16 primary capsules of 8
(channel k is dimension k mod 8 of capsule k // 8), squashed by Efficient-CapsNet's squash →
votes û_{j|i} = W_ij u_i → self-attention routing (:mod:`capsviewer.maths.self_attention_routing`)
→ 10 digit capsules of 16, squashed the same way → the CapsNet decoder (masked, 512, 1024).

Everything after the primary capsules is :class:`~capsviewer.models.capsnet.CapsNet`'s: the
margin loss, the reconstruction loss, masking, the decoder. Differences from the authors' code:
PyTorch's default initialisation of the convolutions (theirs: he_normal); W_ij ~ N(0, 0.04²),
about what Keras' he_normal gives their 4-D W; batch norm as Keras' (ε = 1e-3, momentum 0.99).
The reconstruction weight 0.0005 on the summed squared error is their 0.392 on the mean over
784 pixels. ``capsviewer train`` uses the trainer's schedule and 2-pixel shifts unless told
otherwise: ``--augmentation efficient-capsnet`` is their augmentation
(:mod:`capsviewer.data.augmentation`), and docs/routing-comparison.md gives their schedule's
flags.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from capsviewer.maths import RoutingResult, efficient_squash, route_votes
from capsviewer.models.capsnet import CapsNet, capsule_decoder
from capsviewer.models.precision import full_precision


@dataclass(frozen=True)
class EfficientCapsNetConfig:
    in_channels: int = 1
    image_size: int = 28
    conv_channels: tuple[int, ...] = (32, 64, 64, 128)
    conv_kernels: tuple[int, ...] = (5, 3, 3, 3)
    conv_strides: tuple[int, ...] = (1, 1, 1, 2)
    primary_capsules: int = 16  # conv_channels[-1] = primary_capsules · primary_dim
    primary_dim: int = 8
    num_classes: int = 10
    digit_dim: int = 16
    vote_init_std: float = 0.04
    decoder_hidden: tuple[int, ...] = (512, 1024)
    reconstruction_weight: float = 0.0005
    num_targets: int = 1

    routing = "self-attention"  # one pass: no iterations to choose

    def __post_init__(self):
        if self.conv_channels[-1] != self.primary_capsules * self.primary_dim:
            raise ValueError(f"the last convolution's {self.conv_channels[-1]} channels must "
                             f"make {self.primary_capsules} capsules of {self.primary_dim}")
        if self.feature_side < 1:
            raise ValueError(f"{self.image_size}-pixel images are too small for the backbone")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def feature_side(self) -> int:
        """Side of the last convolution's map, the depthwise kernel's size: 9 for MNIST."""
        side = self.image_size
        for kernel, stride in zip(self.conv_kernels, self.conv_strides):
            side = (side - kernel) // stride + 1
        return side

    @property
    def primary_grid(self) -> tuple[int, int, int]:
        """(capsules, 1, 1): every primary capsule sees the whole image."""
        return (self.primary_capsules, 1, 1)

    @property
    def num_primary(self) -> int:
        return self.primary_capsules

    def as_primary_grid(self, values: torch.Tensor, dim: int = 1) -> torch.Tensor:
        return values.unflatten(dim, self.primary_grid)


class EfficientCapsNet(CapsNet):
    """Efficient-CapsNet on CapsNet's votes, routing interface, loss and decoder."""

    architecture = "efficient-capsnet"

    def __init__(self, config: EfficientCapsNetConfig | None = None):
        nn.Module.__init__(self)
        self.config = c = config or EfficientCapsNetConfig()
        layers: list[nn.Module] = []
        channels = c.in_channels
        for width, kernel, stride in zip(c.conv_channels, c.conv_kernels, c.conv_strides):
            layers += [nn.Conv2d(channels, width, kernel, stride), nn.ReLU(inplace=True),
                       nn.BatchNorm2d(width, eps=1e-3, momentum=0.01)]
            channels = width
        self.backbone = nn.Sequential(*layers)
        self.primary = nn.Conv2d(channels, channels, c.feature_side, groups=channels)
        self.digit_weights = nn.Parameter(  # W_ij (I, J, D_out, D_in)
            c.vote_init_std
            * torch.randn(c.primary_capsules, c.num_classes, c.digit_dim, c.primary_dim)
        )
        self.log_priors = nn.Parameter(torch.zeros(c.primary_capsules, c.num_classes))  # β_ij
        self.digit_bias = self.pose_norm = self.class_readout = None
        self.decoder = capsule_decoder(c)

    def primary_capsules(self, images: torch.Tensor) -> torch.Tensor:
        """u_i = squash(depthwise conv of the backbone's map), shape (B, 16, 8)."""
        c = self.config
        h = full_precision(self.primary(self.backbone(images)))
        return efficient_squash(h.reshape(-1, c.primary_capsules, c.primary_dim))

    def route(self, votes: torch.Tensor, iterations: int | None = None, **options) -> RoutingResult:
        """One pass of self-attention routing (``iterations`` is accepted and ignored)."""
        options.setdefault("log_prior", self.log_priors)
        return route_votes("self-attention", votes, squash_function=efficient_squash, **options)

    def receptive_field(self, row: int, col: int) -> tuple[int, int, int, int]:
        return 0, 0, self.config.image_size, self.config.image_size


def backbone_parameters(model: EfficientCapsNet) -> int:
    """Trainable parameters without the decoder (the paper's count: about 161 k)."""
    return sum(p.numel() for name, p in model.named_parameters()
               if not name.startswith("decoder."))


__all__ = ["EfficientCapsNet", "EfficientCapsNetConfig", "backbone_parameters"]

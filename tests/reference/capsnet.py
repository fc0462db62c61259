"""The CapsNet forward pass written the straightforward way, on a :class:`CapsNet`'s weights.

As the authors' TensorFlow code does it: the primary capsules are tiled to every digit capsule
and the votes W_ij u_i are recomputed inside every routing iteration
(:func:`reference.dynamic_routing.dynamic_routing_recomputed`), in fp32. The convolutions and
the decoder are the model's own, so comparing the two measures the formulation, not the
architecture. For checks and benchmarks only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from capsviewer.maths import squash
from capsviewer.models.capsnet import CapsNet, CapsNetOutput
from reference.dynamic_routing import dynamic_routing_recomputed


def reference_forward(
    model: CapsNet, images: torch.Tensor, labels: torch.Tensor | None = None
) -> CapsNetOutput:
    """Scores, digit capsules and reconstruction as ``model(images, labels)`` computes them."""
    c = model.config
    maps, rows, cols = c.primary_grid
    h = F.conv2d(F.relu(model.conv(images)), model.primary.weight, model.primary.bias, stride=2)
    primary = h.reshape(-1, maps, c.primary_dim, rows, cols).permute(0, 1, 3, 4, 2)
    u = squash(primary.reshape(-1, maps * rows * cols, c.primary_dim))
    digit = dynamic_routing_recomputed(u, model.digit_weights, c.routing_iterations,
                                       model.digit_bias)
    scores = digit.norm(dim=-1)
    mask_by = labels if labels is not None else scores.argmax(dim=1)
    masked = digit * F.one_hot(mask_by, c.num_classes).to(digit.dtype)[..., None]
    reconstruction = model.decoder(masked.flatten(1))
    reconstruction = reconstruction.view(-1, c.in_channels, c.image_size, c.image_size)
    return CapsNetOutput(scores=scores, digit_capsules=digit, reconstruction=reconstruction)

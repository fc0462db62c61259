"""Matrix capsules with EM routing (Hinton, Sabour & Frosst 2018), small enough for a CPU.

ReLU Conv1 (5×5, stride 2) → PrimaryCaps (1×1: a 4×4 pose and an activation per type) →
ConvCaps1 (K = 3, stride 2) → ConvCaps2 (K = 3, stride 1) → Class capsules (transforms shared
over positions, coordinate addition), EM routing in every capsule layer, spread loss.

Capsule grids are held as poses (N, rows, cols, types, 16) and activations (N, rows, cols,
types). A child's vote for a parent is V_ij = M_i W_ij, its 4×4 pose times a learned 4×4
transform, flattened row-major to 16 entries.

Choices the paper leaves open, or where this model departs from it:
- Convolutional capsule layers route every K×K window on its own: a child in several windows
  takes part in each window's EM independently (as most public implementations do); the paper
  normalises a child's R over all the parents it votes for.
- β_u and β_a are learned per parent type in each layer.
- EM routing standardises the costs over the parents (``normalize_cost``, see
  :func:`capsviewer.maths.em_routing.em_routing`). With the paper's raw cost the class
  activations either start saturated (final λ = 10: the poses are small at initialisation, so
  log σ ≪ 0 and every a_j was ≈ 1) or hardly depend on the input (final λ = 0.01, the
  authors' value: 64 training images were still at 23 % after 100 steps of Adam 1e-2).
- The spread-loss margin rises linearly from 0.2 to 0.9 over ``margin_ramp_steps`` training
  steps (the paper: +0.1 per epoch); the model counts its own steps in a buffer, so the
  schedule survives checkpoints and resumed training.
- Two EM iterations by default (the paper: 3; ``--iterations 3`` gives them). On 3,000
  MNIST images (one epoch, batch 32, Adam 1e-2) two iterations reached 62 % test accuracy,
  three 16 % (29 % with λ lowered to 3.5): every further E-step sharpens R and training
  starts more slowly.
- Gradients flow through every iteration (``detach_routing=False``). With R held constant,
  64 images were fitted to 42 % in 100 steps instead of 100 % in 40 (three iterations).

The default config is sized for a CPU: A = 32, B = C = D = 8, 25,084 parameters; about 80
training images/s on one CPU thread (batch 32).

Options beyond the paper's shape (all off in the default config): a second ReLU convolution
(``conv2_channels``), batch norm after the convolutions (``batch_norm``), no convolutional
capsule layers (``conv_caps_layers=0``: the primary capsules vote for the class capsules),
cross-entropy on the logits of a_j instead of the spread loss (``loss``), costs centred but
not scaled (``scale_cost=False``). :class:`EMCapsNet` (``em-capsnet``, the shipped EM model)
is the first three together: matrix capsules on a CNN backbone, docs/em-routing.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from capsviewer.maths.em_routing import EMRoutingResult, em_routing
from capsviewer.maths.losses import LossBreakdown, cross_entropy_loss, spread_loss
from capsviewer.models.precision import full_precision

POSE = 16  # entries of a 4×4 pose matrix
LOSSES = ("spread", "cross-entropy")


@dataclass(frozen=True)
class MatrixCapsNetConfig:
    in_channels: int = 1
    image_size: int = 28
    conv_channels: int = 32  # A: ReLU Conv1, 5×5, stride 2
    conv_kernel: int = 5
    conv_stride: int = 2
    conv2_channels: int = 0  # a second ReLU convolution before the capsules (0: none, the paper)
    conv2_kernel: int = 3
    conv2_stride: int = 2
    batch_norm: bool = False  # batch norm after each convolution (not in the paper)
    conv_caps_layers: int = 2  # 2: ConvCaps1 and ConvCaps2 (the paper); 0: primary → class
    primary_types: int = 8  # B: primary capsule types (1×1 convolution)
    conv_caps1_types: int = 8  # C: ConvCaps1, K×K, stride 2
    conv_caps2_types: int = 8  # D: ConvCaps2, K×K, stride 1
    kernel_size: int = 3  # K
    num_classes: int = 10
    routing_iterations: int = 2  # the paper: 3 (see the module docstring)
    inverse_temperature: float = 10.0  # final λ of the schedule λ (1 − 0.95^(t+1))
    normalize_cost: bool = True  # centre the class costs over the parents (em_routing) …
    scale_cost: bool = True  # … and divide them by their standard deviation
    detach_routing: bool = False  # em_routing(detach_responsibilities=…): R as a constant
    variance_epsilon: float = 1e-4
    transform_init_std: float = 0.5  # W_ij ~ N(0, std²): votes about as large as the poses
    loss: str = "spread"  # spread: the paper's, on a_j; cross-entropy: on the logits of a_j
    margin_start: float = 0.2  # spread-loss margin m, rising linearly …
    margin_end: float = 0.9
    margin_ramp_steps: int = 3300  # … over this many training steps (≈ 7 MNIST epochs at 128)

    def to_dict(self) -> dict:
        return asdict(self)

    def layers(self) -> tuple[tuple[int, int], ...]:
        """(kernel, stride) of every layer from the image to the class layer's children."""
        layers = [(self.conv_kernel, self.conv_stride)]
        if self.conv2_channels:
            layers.append((self.conv2_kernel, self.conv2_stride))
        if self.conv_caps_layers:
            layers += [(self.kernel_size, 2), (self.kernel_size, 1)]
        return tuple(layers)

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r:.30}")
        if self.conv_caps_layers not in (0, 2):
            raise ValueError("conv_caps_layers must be 2 (ConvCaps1 and ConvCaps2) or 0 (none), "
                             f"got {self.conv_caps_layers!r:.20}")

    @property
    def grids(self) -> tuple[int, ...]:
        """Sides of the grids: each convolution's, the primary capsules' (the last
        convolution's) and each convolutional capsule layer's: (12, 12, 5, 3) for MNIST in the
        paper's shape."""
        sides, side = [], self.image_size
        convolutions = 2 if self.conv2_channels else 1
        for k, (kernel, stride) in enumerate(self.layers()):
            side = (side - kernel) // stride + 1
            sides.append(side)
            if k == convolutions - 1:
                sides.append(side)  # the primary capsules sit on the last convolution's grid
        return tuple(sides)

    @property
    def primary_side(self) -> int:
        """Side of the primary capsule grid."""
        return self.grids[2 if self.conv2_channels else 1]

    @property
    def class_input_grid(self) -> tuple[int, int, int]:
        """(rows, cols, types) of the class layer's children: ConvCaps2, (3, 3, 8), or the
        primary capsules when there are no convolutional capsule layers."""
        side = self.grids[-1]
        types = self.conv_caps2_types if self.conv_caps_layers else self.primary_types
        return side, side, types

    def as_class_input_grid(self, values: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """Unflatten the child axis ``dim`` of the class layer (I = rows·cols·types, in that
        order) into (rows, cols, types), e.g. R (N, 72, 10) → (N, 3, 3, 8, 10)."""
        return values.unflatten(dim, self.class_input_grid)

    def class_input_centres(self) -> torch.Tensor:
        """Receptive-field centres of the class layer's children in input pixels, (side,)."""
        offset, step = 0.5, 1.0  # pixel centres
        for kernel, stride in self.layers():
            offset, step = offset + step * (kernel - 1) / 2, step * stride
        return offset + step * torch.arange(self.grids[-1], dtype=torch.float32)

    def receptive_field(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) input box of the class layer's child at (row, col)."""
        size, step = 1, 1
        for kernel, stride in self.layers():
            size, step = size + (kernel - 1) * step, step * stride
        top, left = row * step, col * step
        return (top, left, min(top + size, self.image_size), min(left + size, self.image_size))


@dataclass
class MatrixCapsNetOutput:
    scores: torch.Tensor  # class-capsule activations a_j (N, 10)
    logits: torch.Tensor  # λ (β_a − cost_j): a_j = logistic(logits) (N, 10)
    poses: torch.Tensor  # class-capsule poses μ_j, 4×4 flattened (N, 10, 16)
    routing: EMRoutingResult | None = None  # the class layer's EM (trace when asked)
    class_inputs: torch.Tensor | None = None  # ConvCaps2 activations (N, rows, cols, types)
    primary_activations: torch.Tensor | None = None  # (N, rows, cols, types)


class ConvCapsules(nn.Module):
    """A convolutional capsule layer: every K×K window of child capsules is routed by EM to
    the ``parents`` capsule types at one output position; W_ij per (kernel cell, child type,
    parent type)."""

    def __init__(self, children: int, parents: int, kernel: int, stride: int, init_std: float):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.transforms = nn.Parameter(  # W_ij (K·K·children, parents, 4, 4), i = (ky, kx, type)
            init_std * torch.randn(kernel * kernel * children, parents, 4, 4)
        )
        self.beta_u = nn.Parameter(torch.zeros(parents))
        self.beta_a = nn.Parameter(torch.zeros(parents))

    def forward(self, poses, activations, route):
        n, _, _, types, _ = poses.shape
        k, s = self.kernel, self.stride
        # Windows (N, rows', cols', types, 16, K, K) → children per window (N·P, K·K·types, ·).
        windows = poses.unfold(1, k, s).unfold(2, k, s)
        rows, cols = windows.shape[1:3]
        children = windows.permute(0, 1, 2, 5, 6, 3, 4).reshape(-1, k * k * types, POSE)
        a_in = activations.unfold(1, k, s).unfold(2, k, s).permute(0, 1, 2, 4, 5, 3)
        votes = matrix_votes(children, self.transforms)
        result = route(votes, a_in.reshape(-1, k * k * types), self.beta_u, self.beta_a)
        parents = self.transforms.shape[1]
        return (result.poses.view(n, rows, cols, parents, POSE),
                result.activations.view(n, rows, cols, parents))


class ClassCapsules(nn.Module):
    """Class capsules: every child capsule of a type shares W with its type, and the scaled
    (row, column) of its receptive-field centre is added to the first two entries of the
    right-hand column of its vote matrix (coordinate addition)."""

    def __init__(self, children: int, classes: int, centres: torch.Tensor, image_size: int,
                 init_std: float):
        super().__init__()
        self.transforms = nn.Parameter(init_std * torch.randn(children, classes, 4, 4))
        self.beta_u = nn.Parameter(torch.zeros(classes))
        self.beta_a = nn.Parameter(torch.zeros(classes))
        side = len(centres)
        scaled = centres / image_size
        offsets = torch.zeros(side, side, children, POSE)
        offsets[..., 3] = scaled[:, None, None]  # row → entry (0, 3)
        offsets[..., 7] = scaled[None, :, None]  # column → entry (1, 3)
        self.register_buffer("coordinates", offsets.reshape(-1, POSE), persistent=False)

    def votes(self, poses: torch.Tensor) -> torch.Tensor:
        """V_ij = M_i W_type(i),j + coordinates, (N, I, 10, 16) with I = (row, col, type)."""
        n, rows, cols, types, _ = poses.shape
        children = poses.reshape(n, rows * cols * types, POSE)
        weights = self.transforms.repeat(rows * cols, 1, 1, 1)  # shared over positions
        return matrix_votes(children, weights) + self.coordinates[:, None, :]

    def forward(self, poses, activations, route) -> EMRoutingResult:
        votes = self.votes(poses)
        return route(votes, activations.flatten(1), self.beta_u, self.beta_a)


def matrix_votes(poses: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """V_ij = M_i W_ij for child poses (B, I, 16) and transforms (I, J, 4, 4): returned as
    (B, I, J, 16), a view of a parents-first (B, J, I, 16) tensor (what EM routing reads)."""
    batch, children, _ = poses.shape
    parents = transforms.shape[1]
    m = poses.view(batch, children, 4, 4).transpose(0, 1).reshape(children, batch * 4, 4)
    w = transforms.permute(0, 2, 1, 3).reshape(children, 4, parents * 4)
    products = torch.bmm(m, w).view(children, batch, 4, parents, 4)  # [i, b, row, j, col]
    return products.permute(1, 3, 0, 2, 4).reshape(batch, parents, children, POSE).transpose(1, 2)


class MatrixCapsNet(nn.Module):
    """Conv1 → PrimaryCaps → ConvCaps1 → ConvCaps2 → Class capsules, EM routing in each."""

    architecture = "matrix-capsnet"

    def __init__(self, config: MatrixCapsNetConfig | None = None):
        super().__init__()
        self.config = c = config or MatrixCapsNetConfig()
        self.conv = nn.Conv2d(c.in_channels, c.conv_channels, c.conv_kernel, stride=c.conv_stride)
        norm = nn.BatchNorm2d if c.batch_norm else (lambda _: nn.Identity())
        self.conv_norm = norm(c.conv_channels)
        features = c.conv_channels
        if c.conv2_channels:
            self.conv2 = nn.Conv2d(features, c.conv2_channels, c.conv2_kernel,
                                   stride=c.conv2_stride)
            self.conv2_norm = norm(c.conv2_channels)
            features = c.conv2_channels
        self.primary_poses = nn.Conv2d(features, c.primary_types * POSE, 1)
        self.primary_activations = nn.Conv2d(features, c.primary_types, 1)
        if c.conv_caps_layers:
            self.conv_caps1 = ConvCapsules(
                c.primary_types, c.conv_caps1_types, c.kernel_size, 2, c.transform_init_std
            )
            self.conv_caps2 = ConvCapsules(
                c.conv_caps1_types, c.conv_caps2_types, c.kernel_size, 1, c.transform_init_std
            )
        self.class_caps = ClassCapsules(
            c.class_input_grid[2], c.num_classes, c.class_input_centres(), c.image_size,
            c.transform_init_std,
        )
        self.register_buffer("training_steps", torch.zeros((), dtype=torch.long))

    @property
    def margin(self) -> float:
        """Spread-loss margin m at the current training step."""
        c = self.config
        progress = min(1.0, int(self.training_steps) / max(c.margin_ramp_steps, 1))
        return c.margin_start + (c.margin_end - c.margin_start) * progress

    def primary_capsules(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Poses (N, S, S, B, 16) and activations (N, S, S, B) of the primary capsules (S = 12
        in the paper's shape)."""
        h = F.relu(self.conv_norm(self.conv(images)))
        if self.config.conv2_channels:
            h = F.relu(self.conv2_norm(self.conv2(h)))
        poses = full_precision(self.primary_poses(h)).permute(0, 2, 3, 1)
        activations = torch.sigmoid(full_precision(self.primary_activations(h)))
        return poses.unflatten(-1, (-1, POSE)), activations.permute(0, 2, 3, 1)

    def forward(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        iterations: int | None = None,
        intermediates: bool = False,
        trace: bool = False,
    ) -> MatrixCapsNetOutput:
        """Class activations and poses. ``iterations`` overrides the EM iterations of every
        layer; ``trace`` records the class layer's EM iterations; ``intermediates`` keeps the
        class layer's routing result and the activations of the layers below."""
        c = self.config
        iterations = c.routing_iterations if iterations is None else iterations
        if self.training and torch.is_grad_enabled():
            self.training_steps += 1

        def route(votes, activations, beta_u, beta_a, trace=False):
            return em_routing(
                votes, activations, iterations, beta_u=beta_u, beta_a=beta_a,
                inverse_temperature=c.inverse_temperature, variance_epsilon=c.variance_epsilon,
                normalize_cost=c.normalize_cost, scale_cost=c.scale_cost,
                detach_responsibilities=c.detach_routing, trace=trace,
            )

        poses, activations = self.primary_capsules(images)
        primary = activations
        with torch.autocast(images.device.type, enabled=False):  # routing in fp32
            if c.conv_caps_layers:
                poses, activations = self.conv_caps1(poses, activations, route)
                poses, activations = self.conv_caps2(poses, activations, route)
            routing = self.class_caps(
                poses, activations, lambda *args: route(*args, trace=trace)
            )
        keep = intermediates or trace
        return MatrixCapsNetOutput(
            scores=routing.activations,
            logits=routing.logits,
            poses=routing.poses,
            routing=routing if keep else None,
            class_inputs=activations if keep else None,
            primary_activations=primary if keep else None,
        )

    def loss(self, output: MatrixCapsNetOutput, images: torch.Tensor, labels: torch.Tensor):
        if self.config.loss == "cross-entropy":
            loss = cross_entropy_loss(output.logits, labels)
        else:
            loss = spread_loss(output.scores, labels, self.margin)
        return LossBreakdown(loss, loss, loss.new_zeros(()))


@dataclass(frozen=True)
class EMCapsNetConfig(MatrixCapsNetConfig):
    """Matrix capsules on a CNN backbone: two ReLU convolutions with batch norm (64 5×5 stride
    2, 128 3×3 stride 2), 16 types of primary capsules on the 5×5 grid, and the class capsules
    routed from them by EM: no convolutional capsule layers. Better conditioned and ~8× faster
    to train on a CPU than the paper's shape (see docs/em-routing.md)."""

    conv_channels: int = 64
    conv2_channels: int = 128
    batch_norm: bool = True
    conv_caps_layers: int = 0
    primary_types: int = 16
    margin_ramp_steps: int = 1400  # ≈ 3 MNIST epochs at batch 128
    margin_end: float = 0.5  # reachable: standardised costs bound a_t − a_k (em-routing.md)


class EMCapsNet(MatrixCapsNet):
    """:class:`MatrixCapsNet` in the shape of :class:`EMCapsNetConfig`."""

    architecture = "em-capsnet"

    def __init__(self, config: EMCapsNetConfig | None = None):
        super().__init__(config or EMCapsNetConfig())

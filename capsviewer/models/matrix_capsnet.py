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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from capsviewer.maths.em_routing import EMRoutingResult, em_routing
from capsviewer.maths.losses import LossBreakdown, spread_loss
from capsviewer.models.precision import full_precision

POSE = 16  # entries of a 4×4 pose matrix


@dataclass(frozen=True)
class MatrixCapsNetConfig:
    in_channels: int = 1
    image_size: int = 28
    conv_channels: int = 32  # A: ReLU Conv1, 5×5, stride 2
    conv_kernel: int = 5
    conv_stride: int = 2
    primary_types: int = 8  # B: primary capsule types (1×1 convolution)
    conv_caps1_types: int = 8  # C: ConvCaps1, K×K, stride 2
    conv_caps2_types: int = 8  # D: ConvCaps2, K×K, stride 1
    kernel_size: int = 3  # K
    num_classes: int = 10
    routing_iterations: int = 2  # the paper: 3 (see the module docstring)
    inverse_temperature: float = 10.0  # final λ of the schedule λ (1 − 0.95^(t+1))
    normalize_cost: bool = True
    detach_routing: bool = False  # em_routing(detach_responsibilities=…): R as a constant
    variance_epsilon: float = 1e-4
    transform_init_std: float = 0.5  # W_ij ~ N(0, std²): votes about as large as the poses
    margin_start: float = 0.2  # spread-loss margin m, rising linearly …
    margin_end: float = 0.9
    margin_ramp_steps: int = 3300  # … over this many training steps (≈ 7 MNIST epochs at 128)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def grids(self) -> tuple[int, int, int, int]:
        """Sides of the Conv1/primary, ConvCaps1 and ConvCaps2 grids: (12, 12, 5, 3) for MNIST."""
        conv = (self.image_size - self.conv_kernel) // self.conv_stride + 1
        caps1 = (conv - self.kernel_size) // 2 + 1
        caps2 = caps1 - self.kernel_size + 1
        return conv, conv, caps1, caps2

    @property
    def class_input_grid(self) -> tuple[int, int, int]:
        """(rows, cols, types) of the class layer's children, ConvCaps2: (3, 3, 8)."""
        side = self.grids[3]
        return side, side, self.conv_caps2_types

    def as_class_input_grid(self, values: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """Unflatten the child axis ``dim`` of the class layer (I = rows·cols·types, in that
        order) into (rows, cols, types), e.g. R (N, 72, 10) → (N, 3, 3, 8, 10)."""
        return values.unflatten(dim, self.class_input_grid)

    def class_input_centres(self) -> torch.Tensor:
        """Receptive-field centres of the ConvCaps2 grid in input pixels, (side,) per axis."""
        offset, step = 0.5, 1.0  # pixel centres
        for kernel, stride in (
            (self.conv_kernel, self.conv_stride),
            (self.kernel_size, 2),
            (self.kernel_size, 1),
        ):
            offset, step = offset + step * (kernel - 1) / 2, step * stride
        return offset + step * torch.arange(self.grids[3], dtype=torch.float32)


@dataclass
class MatrixCapsNetOutput:
    scores: torch.Tensor  # class-capsule activations a_j (N, 10)
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
        self.primary_poses = nn.Conv2d(c.conv_channels, c.primary_types * POSE, 1)
        self.primary_activations = nn.Conv2d(c.conv_channels, c.primary_types, 1)
        self.conv_caps1 = ConvCapsules(
            c.primary_types, c.conv_caps1_types, c.kernel_size, 2, c.transform_init_std
        )
        self.conv_caps2 = ConvCapsules(
            c.conv_caps1_types, c.conv_caps2_types, c.kernel_size, 1, c.transform_init_std
        )
        self.class_caps = ClassCapsules(
            c.conv_caps2_types, c.num_classes, c.class_input_centres(), c.image_size,
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
        """Poses (N, 12, 12, B, 16) and activations (N, 12, 12, B) of the primary capsules."""
        h = F.relu(self.conv(images))
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
                normalize_cost=c.normalize_cost,
                detach_responsibilities=c.detach_routing, trace=trace,
            )

        poses, activations = self.primary_capsules(images)
        primary = activations
        with torch.autocast(images.device.type, enabled=False):  # routing in fp32
            poses, activations = self.conv_caps1(poses, activations, route)
            poses, activations = self.conv_caps2(poses, activations, route)
            routing = self.class_caps(
                poses, activations, lambda *args: route(*args, trace=trace)
            )
        keep = intermediates or trace
        return MatrixCapsNetOutput(
            scores=routing.activations,
            poses=routing.poses,
            routing=routing if keep else None,
            class_inputs=activations if keep else None,
            primary_activations=primary if keep else None,
        )

    def loss(self, output: MatrixCapsNetOutput, images: torch.Tensor, labels: torch.Tensor):
        loss = spread_loss(output.scores, labels, self.margin)
        return LossBreakdown(loss, loss, loss.new_zeros(()))

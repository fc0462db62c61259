"""The CapsNet of Sabour, Frosst & Hinton (2017): Conv → PrimaryCaps → DigitCaps → decoder.

The backbone (Conv1, PrimaryCaps, votes û_{j|i} = W_ij u_i) and the decoder are shared by every
vector routing of :mod:`capsviewer.maths.routings` (``CapsNetConfig.routing``), so a comparison
changes only how the votes become digit capsules. What each routing adds to the model:
- dynamic (the paper), uniform: nothing (the optional bias b_j on s_j, ``routing_bias``);
- self-attention: Efficient-CapsNet's log priors β_ij (1152 × 10, zeros at the start); the
  squash stays the paper's, so only the routing differs (Efficient-CapsNet's own network, with
  its backbone and squash, is :mod:`capsviewer.models.efficient_capsnet`);
- inverted-attention: a LayerNorm of the digit poses (learned gain and bias, shared by the ten
  capsules) and Tsai et al.'s linear read-out, logit_j = w·p_j + c, trained with cross-entropy
  as they do (the LayerNorm leaves no length to read a margin loss off: with the margin loss
  on σ(logit_j), short runs collapsed to equal scores for every class). The reconstruction
  loss stays, as for every routing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from capsviewer.maths import VECTOR_ROUTINGS, RoutingResult, predict_votes, route_votes, squash
from capsviewer.maths.losses import (
    LossBreakdown,
    capsule_loss,
    check_labels,
    cross_entropy_loss,
    reconstruction_error,
)
from capsviewer.models.precision import full_precision


# Images per votes-and-routing pass in CPU inference: û of 16 images (12 MB) fits in L3.
ROUTING_CHUNK = 16


@dataclass(frozen=True)
class CapsNetConfig:
    in_channels: int = 1
    image_size: int = 28
    conv_channels: int = 256  # Conv1: 256 @ 9×9, ReLU
    kernel_size: int = 9
    primary_maps: int = 32  # PrimaryCaps: 32 maps of 8-D capsules, 9×9, stride 2
    primary_dim: int = 8
    num_classes: int = 10  # DigitCaps: 10 capsules of 16 dimensions
    digit_dim: int = 16
    routing_iterations: int = 3  # of the iterative routings (dynamic, inverted-attention)
    # How votes become digit capsules: "dynamic" (the paper), "uniform" (c_ij = 1/J),
    # "self-attention" (Efficient-CapsNet), "inverted-attention" (Tsai et al. 2020).
    routing: str = "dynamic"
    detach_votes: bool = False  # see dynamic_routing
    vote_init_std: float = 0.01  # W_ij ~ N(0, std²)
    decoder_hidden: tuple[int, ...] = (512, 1024)
    reconstruction_weight: float = 0.0005
    # A learned bias b_j on s_j in every routing iteration, initialised to this value, as the
    # authors' TensorFlow code has (0.1 there); None: none, as in the paper's text.
    routing_bias: float | None = None
    # Digits in each image: 1 (MNIST), 2 (MultiMNIST, image_size 36). With 2, labels are (B, 2)
    # and the decoder reconstructs each digit from its own capsule, (B, 2, C, H, W).
    num_targets: int = 1

    def __post_init__(self):
        if self.routing not in VECTOR_ROUTINGS:
            raise ValueError(f"routing must be one of {', '.join(VECTOR_ROUTINGS)}, "
                             f"got {self.routing!r}")
        if self.routing_bias is not None and self.routing == "inverted-attention":
            raise ValueError("inverted-attention routing has no bias on s_j (its LayerNorm "
                             "has one); leave routing_bias unset")
        if self.detach_votes and self.routing != "dynamic":
            raise ValueError("detach_votes applies to dynamic routing only")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def primary_grid(self) -> tuple[int, int, int]:
        """(maps, rows, cols) of the primary capsules: (32, 6, 6) for the paper's MNIST model,
        (32, 10, 10) for its 36×36 MultiMNIST model."""
        side = (self.image_size - self.kernel_size + 1 - self.kernel_size) // 2 + 1
        return (self.primary_maps, side, side)

    @property
    def num_primary(self) -> int:
        maps, rows, cols = self.primary_grid
        return maps * rows * cols

    def primary_position(self, index: int) -> tuple[int, int, int]:
        """(map, row, col) of primary capsule ``index``: index = map·rows·cols + row·cols + col."""
        _, rows, cols = self.primary_grid
        grid_map, rest = divmod(index, rows * cols)
        return (grid_map, *divmod(rest, cols))

    def as_primary_grid(self, values: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """Unflatten the primary-capsule axis ``dim`` (1152) into (maps, rows, cols), e.g.
        couplings (B, 1152, 10) → (B, 32, 6, 6, 10), for drawing on the grid."""
        return values.unflatten(dim, self.primary_grid)


def capsule_decoder(c) -> nn.Sequential:
    """The paper's decoder: the masked digit capsules (J·D) → FC–ReLU per ``decoder_hidden``
    → FC–sigmoid to the image's pixels."""
    sizes = (c.num_classes * c.digit_dim, *c.decoder_hidden)
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(sizes[-1], c.in_channels * c.image_size**2))
    return nn.Sequential(*layers, nn.Sigmoid())


@dataclass
class CapsNetOutput:
    # ‖v_j‖, the class evidence (B, 10); with a read-out (inverted attention) its softmax
    scores: torch.Tensor
    digit_capsules: torch.Tensor  # v_j (B, 10, 16)
    reconstruction: torch.Tensor  # decoder output (B, C, H, W); (B, T, C, H, W) for T digits
    primary_capsules: torch.Tensor | None = None  # u_i (B, 1152, 8)
    votes: torch.Tensor | None = None  # û_{j|i} (B, 1152, 10, 16)
    routing: RoutingResult | None = None
    logits: torch.Tensor | None = None  # a read-out's class logits (inverted attention)


class CapsNet(nn.Module):
    """The paper's MNIST CapsNet; 8,215,568 parameters (6,804,224 without the decoder).

    Primary capsule i sits on the (map, row, col) grid with i = map·rows·cols + row·cols + col;
    channel k of the PrimaryCaps convolution is dimension k mod 8 of map k // 8.
    """

    architecture = "capsnet"

    def __init__(self, config: CapsNetConfig | None = None):
        super().__init__()
        self.config = c = config or CapsNetConfig()
        self.conv = nn.Conv2d(c.in_channels, c.conv_channels, c.kernel_size)
        self.primary = nn.Conv2d(
            c.conv_channels, c.primary_maps * c.primary_dim, c.kernel_size, stride=2
        )
        # W_ij: one 16×8 matrix per (primary capsule, digit capsule) pair.
        self.digit_weights = nn.Parameter(
            c.vote_init_std * torch.randn(c.num_primary, c.num_classes, c.digit_dim, c.primary_dim)
        )
        self.digit_bias = None
        if c.routing_bias is not None:
            self.digit_bias = nn.Parameter(torch.full((c.num_classes, c.digit_dim), c.routing_bias))
        self.log_priors = self.pose_norm = self.class_readout = None
        if c.routing == "self-attention":  # β_ij of Efficient-CapsNet
            self.log_priors = nn.Parameter(torch.zeros(c.num_primary, c.num_classes))
        elif c.routing == "inverted-attention":
            self.pose_norm = nn.LayerNorm(c.digit_dim)
            self.class_readout = nn.Linear(c.digit_dim, 1)
        self.decoder = capsule_decoder(c)

    # -- stages ---------------------------------------------------------------------------
    def primary_capsules(self, images: torch.Tensor) -> torch.Tensor:
        """u_i = squash(PrimaryCaps(ReLU(Conv1(x)))), shape (B, 1152, 8) in grid order."""
        c = self.config
        maps, rows, cols = c.primary_grid
        h = full_precision(self._primary_conv(F.relu(self.conv(images))))
        h = h.reshape(-1, maps, c.primary_dim, rows, cols).permute(0, 1, 3, 4, 2)
        return squash(h.reshape(-1, maps * rows * cols, c.primary_dim))

    def _primary_conv(self, h: torch.Tensor) -> torch.Tensor:
        """The PrimaryCaps convolution. One image on the CPU, in fp32 without gradients (the
        app's analysis of an input), is one matrix product of its unfolded 9×9 patches with the
        weights kept transposed: the same sums in another order, in 70 % of the time the
        convolution (tuned for batches) takes for the 36 positions of one image."""
        conv = self.primary
        if (h.shape[0] != 1 or h.device.type != "cpu" or h.dtype != torch.float32
                or torch.is_grad_enabled() or torch.is_autocast_enabled("cpu")):
            return conv(h)
        weight = conv.weight
        key = (weight.data_ptr(), weight._version)  # a training step changes the version
        if getattr(self, "_patch_weights_key", None) != key:
            self._patch_weights = weight.detach().flatten(1).t().contiguous()
            self._patch_weights_key = key
        patches = F.unfold(h, conv.kernel_size, stride=conv.stride)[0].t()  # (36, 256·9·9)
        side = (h.shape[-1] - conv.kernel_size[0]) // conv.stride[0] + 1
        out = torch.addmm(conv.bias, patches, self._patch_weights)  # (36, maps·dim)
        return out.t().reshape(1, weight.shape[0], side, side)

    def votes(self, primary: torch.Tensor) -> torch.Tensor:
        """û_{j|i} = W_ij u_i, shape (B, 1152, 10, 16)."""
        return predict_votes(primary, self.digit_weights)

    def route(self, votes: torch.Tensor, iterations: int | None = None, **options) -> RoutingResult:
        """Digit capsules from the votes by the configured routing (``iterations`` applies to
        the iterative ones); ``options`` go to dynamic routing."""
        c = self.config
        iterations = c.routing_iterations if iterations is None else iterations
        if c.routing == "dynamic":
            options.setdefault("detach_votes", c.detach_votes)
        if self.digit_bias is not None:
            options.setdefault("bias", self.digit_bias)
        if self.log_priors is not None:
            options.setdefault("log_prior", self.log_priors)
        if self.pose_norm is not None:
            options.setdefault("layer_norm", self.pose_norm)
        return route_votes(c.routing, votes, iterations, **options)

    def class_logits(self, digit_capsules: torch.Tensor) -> torch.Tensor | None:
        """w·p_j + c (B, J) with a read-out (inverted attention); None for the others."""
        if self.class_readout is None:
            return None
        return self.class_readout(digit_capsules).squeeze(-1)

    def class_scores(self, digit_capsules: torch.Tensor) -> torch.Tensor:
        """The evidence for each class (B, J): ‖v_j‖; with a read-out the softmax of its
        logits (sigmoids with T digits per image)."""
        return self._scores(digit_capsules, self.class_logits(digit_capsules))

    def _scores(self, digit_capsules: torch.Tensor, logits: torch.Tensor | None) -> torch.Tensor:
        if logits is None:
            return digit_capsules.norm(dim=-1)
        return logits.softmax(dim=-1) if self.config.num_targets == 1 else logits.sigmoid()

    def decode(self, digit_capsules: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Reconstruct images from the poses (B, 10, 16), keeping only capsule ``classes``:
        (B,) gives (B, C, H, W); (B, T) one image from each listed capsule, (B, T, C, H, W)."""
        mask = F.one_hot(classes, self.config.num_classes).to(digit_capsules.dtype)
        poses = digit_capsules if classes.ndim == 1 else digit_capsules.unsqueeze(1)
        masked = (poses * mask[..., None]).flatten(-2)
        return self.decode_flat(masked.flatten(0, -2)).unflatten(0, classes.shape)

    def decode_pose(self, pose: torch.Tensor, classes: torch.Tensor | int) -> torch.Tensor:
        """Reconstruct from one pose per image: pose (B, 16) placed in capsule ``classes``."""
        c = self.config
        classes = torch.as_tensor(classes, device=pose.device).expand(pose.shape[0])
        poses = pose.new_zeros(pose.shape[0], c.num_classes, c.digit_dim)
        poses[torch.arange(pose.shape[0], device=pose.device), classes] = pose
        return self.decode_flat(poses.flatten(1))

    def decode_flat(self, masked: torch.Tensor) -> torch.Tensor:
        c = self.config
        return self.decoder(masked).view(-1, c.in_channels, c.image_size, c.image_size)

    # -- whole model ----------------------------------------------------------------------
    def forward(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        iterations: int | None = None,
        intermediates: bool = False,
        trace: bool = False,
        **routing_options,
    ) -> CapsNetOutput:
        """Classify and reconstruct. The decoder is masked by ``labels`` when given (training;
        (B, T) for T digits per image), else by the longest (T longest) digit capsule(s)
        (inference). ``intermediates`` keeps u, û and the routing result; ``trace`` records
        every routing iteration."""
        targets = self.config.num_targets
        if labels is not None:
            check_labels(labels, targets, len(images))
        primary = self.primary_capsules(images)
        keep = intermediates or trace
        # Under autocast (mixed-precision training) only the convolutions, nearly all of the
        # arithmetic, run in low precision: votes, routing and decoder stay in fp32.
        with torch.autocast(primary.device.type, enabled=False):
            if keep or routing_options or torch.is_grad_enabled() or primary.device.type != "cpu":
                votes = self.votes(primary)
                routing = self.route(votes, iterations, trace=trace, **routing_options)
            else:
                votes, routing = None, self._route_in_chunks(primary, iterations)
            digit = routing.outputs
            logits = self.class_logits(digit)
            scores = self._scores(digit, logits)
            if labels is not None:
                mask_by = labels
            elif targets == 1:
                mask_by = scores.argmax(dim=1)
            else:
                mask_by = scores.topk(targets, dim=1).indices
            reconstruction = self.decode(digit, mask_by)
        return CapsNetOutput(
            scores=scores,
            digit_capsules=digit,
            reconstruction=reconstruction,
            primary_capsules=primary if keep else None,
            votes=votes if keep else None,
            routing=routing if keep else None,
            logits=logits,
        )

    def _route_in_chunks(self, primary: torch.Tensor, iterations: int | None) -> RoutingResult:
        """Votes and routing for CPU inference, ROUTING_CHUNK images at a time: each chunk's û
        stays in cache through the routing passes (1.6× faster than the whole batch here)."""
        parts = [self.route(self.votes(chunk), iterations)
                 for chunk in primary.split(ROUTING_CHUNK)]
        return RoutingResult(torch.cat([p.outputs for p in parts]),
                             torch.cat([p.couplings for p in parts]))

    def loss(self, output: CapsNetOutput, images: torch.Tensor, labels: torch.Tensor):
        """Margin loss plus the weighted reconstruction error. ``images``: what the decoder
        should reproduce, the input (B, C, H, W), or with T digits per image each digit alone
        (B, T, C, H, W), each reconstructed from its own capsule, the T errors summed. With a
        read-out, cross-entropy on its logits replaces the margin loss."""
        if output.logits is not None:
            ce = cross_entropy_loss(output.logits, labels)
            recon = reconstruction_error(output.reconstruction, images)
            return LossBreakdown(ce + self.config.reconstruction_weight * recon, ce, recon)
        return capsule_loss(
            output.scores, labels, output.reconstruction, images,
            self.config.reconstruction_weight,
        )

    def receptive_field(self, row: int, col: int) -> tuple[int, int, int, int]:
        """Input pixels (top, left, bottom, right; exclusive) seen by primary grid cell (row, col)."""
        k = self.config.kernel_size
        size = k + (k - 1)  # 9 Conv1 rows at stride 1, each 9 pixels tall: 17 pixels
        top, left = 2 * row, 2 * col
        return top, left, min(top + size, self.config.image_size), min(left + size, self.config.image_size)

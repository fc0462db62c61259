"""Two overlapping digits through a MultiMNIST CapsNet (Sabour et al. 2017, Section 6, Fig. 5):
the two longest digit capsules, each one's reconstruction from its own pose, and how routing
assigns every primary capsule to one of the two, iteration by iteration.

A pair is chosen as two test digits and their shifts (:class:`PairChoice`); it is composed
exactly as the MultiMNIST generator composes its pairs, so test pair n of the fixed test set
is ``PairChoice.test_pair(test, n)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from capsviewer.analysis.inspection import CapsuleInspection, inspect_capsnet
from capsviewer.data.datasets import ImageSet
from capsviewer.data.multimnist import (
    MAX_SHIFT,
    PairBatch,
    PairIndex,
    compose_pairs,
    draw_pairs,
    fixed_test_index,
)
from capsviewer.data.transforms import to_float

Shift = tuple[int, int]  # (dy, dx): down and right, in pixels


@dataclass(frozen=True)
class PairChoice:
    """The Overlap input: test digits ``first`` and ``second``, each shifted by its (dy, dx)."""

    first: int
    second: int
    shifts: tuple[Shift, Shift] = ((0, 0), (0, 0))
    test_pair: int | None = None  # the fixed test set's pair this is, if it is one

    def __post_init__(self):
        if any(abs(v) > MAX_SHIFT for shift in self.shifts for v in shift):
            raise ValueError(f"shifts are at most {MAX_SHIFT} pixels, got {self.shifts}")

    @classmethod
    def from_test_set(cls, test: ImageSet, index: int) -> PairChoice:
        """Pair ``index`` of the fixed MultiMNIST test set built from ``test``."""
        pairs = fixed_test_index(test)
        if not 0 <= index < len(pairs):
            raise IndexError(f"test pair {index} does not exist: there are {len(pairs):,} "
                             f"(0 to {len(pairs) - 1:,})")
        return cls._of(pairs[index], test_pair=index)

    @classmethod
    def random(cls, test: ImageSet, generator: torch.Generator | None = None) -> PairChoice:
        """A random digit with a random partner of another class, both randomly shifted."""
        first = int(torch.randint(len(test), (1,), generator=generator))
        return cls.with_partner(test, first, generator)

    @classmethod
    def with_partner(cls, test: ImageSet, first: int,
                     generator: torch.Generator | None = None) -> PairChoice:
        """Test digit ``first`` with a random partner of another class, both randomly shifted."""
        return cls._of(draw_pairs(test.labels, torch.tensor([first]), generator)[0])

    @classmethod
    def _of(cls, pair: PairIndex, test_pair: int | None = None) -> PairChoice:
        first, second = pair.digits.tolist()
        shifts = tuple(tuple(s) for s in pair.shifts.tolist())
        return cls(first, second, shifts, test_pair)

    def with_digits(self, first: int, second: int) -> PairChoice:
        """Other digits, the same shifts (no longer a test pair unless they are the same)."""
        same = (first, second) == (self.first, self.second)
        return PairChoice(first, second, self.shifts, self.test_pair if same else None)

    def describe(self) -> str:
        where = f"test pair {self.test_pair}: " if self.test_pair is not None else ""
        return f"{where}test digits {self.first} + {self.second}"

    def compose(self, test: ImageSet, overlay: str = "sum") -> PairBatch:
        """The overlaid pair (one image) and each digit alone, from ``test``."""
        for index in (self.first, self.second):
            if not 0 <= index < len(test):
                raise IndexError(f"test digit {index} does not exist: the test set has "
                                 f"{len(test):,} images")
        pair = PairIndex(torch.tensor([[self.first, self.second]]),
                         torch.tensor([self.shifts]))
        return compose_pairs(test.images, test.labels, pair, overlay)


@dataclass(frozen=True)
class PairInspection:
    """One pair through a MultiMNIST CapsNet."""

    pair: PairChoice
    labels: tuple[int, int]  # the true classes of the first and second digit
    digits: np.ndarray  # each digit alone, as overlaid (2, 36, 36) float32 in [0, 1]
    capsules: CapsuleInspection  # the overlay, lengths ‖v_j‖, poses, the routing trace
    winners: tuple[int, int]  # the two longest digit capsules, longest first
    reconstructions: np.ndarray  # decoder output from each winner's own pose (2, 36, 36)

    @property
    def image(self) -> np.ndarray:
        return self.capsules.image

    @property
    def correct(self) -> bool:
        """The paper's criterion: both labels are the two longest capsules."""
        return set(self.labels) == set(self.winners)

    def assignment(self, iteration: int = -1) -> np.ndarray:
        """a_i = c_iA / (c_iA + c_iB) on the primary grid (32, rows, cols): how primary capsule
        i divides its coupling between the longest capsule A and the second B at routing
        iteration ``iteration`` (1 → only A, 0 → only B, 0.5 at the uniform first iteration)."""
        couplings = self.capsules.iterations[iteration].couplings
        a, b = (couplings[..., j] for j in self.winners)
        return a / np.maximum(a + b, 1e-12)

    def assignment_spread(self, by_location: bool = False) -> float:
        """The largest |a_i − ½| over all iterations (of the location means with
        ``by_location``): how far routing moved from the uniform split. A trained CapsNet's
        couplings stay close to uniform, so views stretch their colour scale to this."""
        share = self.location_assignment if by_location else self.assignment
        return max(float(np.abs(share(r) - 0.5).max())
                   for r in range(len(self.capsules.iterations)))

    def location_assignment(self, iteration: int = -1) -> np.ndarray:
        """(rows, cols): a_i averaged over the 32 maps at each grid location, weighted by the
        primary capsules' lengths ‖u_i‖ (0.5 where no capsule is active)."""
        weights = self.capsules.primary_lengths
        total = weights.sum(axis=0)
        mean = (self.assignment(iteration) * weights).sum(axis=0)
        return np.divide(mean, total, out=np.full_like(mean, 0.5), where=total > 1e-12)


@torch.no_grad()
def inspect_pair(model, pair: PairChoice, test: ImageSet, iterations: int | None = None,
                 overlay: str = "sum") -> PairInspection:
    """Compose ``pair`` from ``test``, route it with a full trace and decode both winners."""
    composed = pair.compose(test, overlay)
    image = to_float(composed.images[0, 0])
    capsules = inspect_capsnet(model, image, iterations)
    winners = tuple(int(j) for j in np.argsort(-capsules.lengths, kind="stable")[:2])
    parameter = next(model.parameters())
    poses = torch.as_tensor(capsules.poses, device=parameter.device)[None]
    decoded = model.decode(poses, torch.tensor([winners], device=parameter.device))
    reconstructions = decoded[0, :, 0].float().cpu().numpy()  # (2, 36, 36)
    capsules = dataclasses.replace(capsules, reconstruction=reconstructions[0])
    return PairInspection(
        pair=pair,
        labels=tuple(int(k) for k in composed.labels[0]),
        digits=to_float(composed.digits[0, :, 0]).numpy(),
        capsules=capsules,
        winners=winners,
        reconstructions=reconstructions,
    )


@dataclass(frozen=True)
class AssignmentStatistics:
    """How routing divides the primary capsules between the two winners, over many pairs."""

    pairs: int  # pairs measured
    both_found: int  # of them, pairs whose two winners are their two labels
    departure: tuple[float, ...]  # per iteration: mean over pairs of Σ‖u_i‖ |a_i − ½| / Σ‖u_i‖
    agreement: float  # both-found pairs, last iteration: ‖u_i‖-weighted share of capsules whose
    # larger coupling goes to the winner whose digit has more ink in their receptive field


@torch.no_grad()
def assignment_statistics(model, pairs: PairBatch, iterations: int | None = None,
                          batch_size: int = 50) -> AssignmentStatistics:
    """Route every pair with a trace and measure a_i = c_iA / (c_iA + c_iB) (A, B: the two
    longest capsules) against the digits as drawn: a primary capsule sides with the right
    winner when its larger share goes to the winner whose digit has more ink in its receptive
    field (17×17 at stride 2: mean ink per grid location). Only capsules over unequal ink
    count, weighted by ‖u_i‖; a_i = ½ exactly counts as wrong, so a coin would score 0.5."""
    model.eval()
    device = next(model.parameters()).device
    kernel = 2 * model.config.kernel_size - 1  # a primary capsule's receptive field: 17 px
    departures, agreed, weight, found = None, 0.0, 0.0, 0
    for start in range(0, len(pairs), batch_size):
        part = pairs[start:start + batch_size]
        out = model(to_float(part.images.to(device)), iterations=iterations, trace=True)
        winners = out.scores.topk(2, dim=1).indices  # (B, 2): A, B
        lengths = out.primary_capsules.norm(dim=-1)  # ‖u_i‖ (B, I)
        shares = []
        for step in out.routing.trace:
            c = step.couplings.gather(2, winners[:, None, :].expand(-1, lengths.shape[1], -1))
            shares.append(c[..., 0] / c.sum(-1).clamp_min(1e-12))  # a_i (B, I)
        batch_departure = torch.stack([((a - 0.5).abs() * lengths).sum(1) / lengths.sum(1)
                                       for a in shares]).sum(1)  # Σ over pairs, per iteration
        departures = batch_departure if departures is None else departures + batch_departure
        labels = part.labels.to(device)
        a_is_first = winners[:, 0] == labels[:, 0]
        both = (a_is_first & (winners[:, 1] == labels[:, 1])) | (
            (winners[:, 0] == labels[:, 1]) & (winners[:, 1] == labels[:, 0]))
        found += int(both.sum())
        # Ink of each digit in each grid location's receptive field, on the primary grid.
        ink = F.avg_pool2d(to_float(part.digits.to(device)).flatten(1, 2), kernel, stride=2)
        ink_a = torch.where(a_is_first[:, None, None], ink[:, 0], ink[:, 1]).flatten(1)
        ink_b = torch.where(a_is_first[:, None, None], ink[:, 1], ink[:, 0]).flatten(1)
        maps = lengths.shape[1] // ink_a.shape[1]
        more_a = (ink_a > ink_b).repeat(1, maps)  # the grid order: map, row, col
        more_b = (ink_b > ink_a).repeat(1, maps)
        sides_right = ((shares[-1] > 0.5) & more_a) | ((shares[-1] < 0.5) & more_b)
        w = lengths * (both[:, None] & (more_a | more_b))
        agreed += float((sides_right * w).sum())
        weight += float(w.sum())
    return AssignmentStatistics(
        pairs=len(pairs), both_found=found,
        departure=tuple(float(d) / len(pairs) for d in departures),
        agreement=agreed / weight if weight else float("nan"))

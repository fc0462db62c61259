"""Dynamic routing on real images: what its iterations do, and what happens without them.

Procedure 1 with r iterations makes k = r − 1 agreement updates of the logits b_ij; k = 0
(r = 1) leaves the couplings uniform, c_ij = 1/J. Here, for one input or a test set:

- diagnostics per iteration: the entropy of each child's couplings H_i = −Σ_j c_ij log c_ij
  (log J when uniform), its largest coupling max_j c_ij (1/J when uniform), and the agreement
  objective Σ_ij c_ij û_{j|i}·v_j (equal to Σ_j s_j·v_j);
- the ablation: lengths, prediction and reconstruction after k = 0, 1, 2, 3, 5 updates, and
  test accuracy against k;
- one part's prediction decoded: û_{j|i} (or a sum over a selection) put in digit capsule j's
  slot of the decoder, the other slots zero, as the decoder's masking does;
- the vote cloud: the I votes for digit j projected on their two principal components.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from capsviewer.analysis.inspection import CapsuleInspection
from capsviewer.analysis.routing_maps import ROUTING_TERMS
from capsviewer.data.transforms import as_batch, model_device, placement, to_float
from capsviewer.maths import squash
from capsviewer.training.evaluation import EvaluationCancelled

UPDATES = (0, 1, 2, 3, 5)  # agreement updates k of the ablation; routing iterations r = k + 1


def iterations_for(updates: int) -> int:
    """Routing iterations r that make ``updates`` agreement updates: r = k + 1."""
    if updates < 0:
        raise ValueError(f"agreement updates must be ≥ 0, got {updates}")
    return updates + 1


def updates_label(updates: int, trained_iterations: int | None = None) -> str:
    """"0 updates (uniform, r = 1)", "2 updates (r = 3, as trained)"."""
    r = iterations_for(updates)
    notes = ["uniform"] if updates == 0 else []
    notes.append(f"r = {r}")
    if trained_iterations == r:
        notes.append("as trained")
    return f"{updates} update{'' if updates == 1 else 's'} ({', '.join(notes)})"


# -- per-iteration diagnostics -------------------------------------------------------------------

@dataclass(frozen=True)
class RoutingDiagnostics:
    """How far each routing iteration r moves the couplings from uniform, and what it gains.

    Means over children i: plain, and weighted by ‖u_i‖ so that parts that barely exist do not
    count as much as present ones.
    """

    entropy: np.ndarray  # (R,) mean_i H_i, H_i = −Σ_j c_ij log c_ij (nats)
    weighted_entropy: np.ndarray  # (R,) Σ_i ‖u_i‖ H_i / Σ_i ‖u_i‖
    max_coupling: np.ndarray  # (R,) mean_i max_j c_ij
    weighted_max_coupling: np.ndarray  # (R,) ‖u_i‖-weighted
    objective: np.ndarray  # (R,) Σ_ij c_ij û_{j|i}·v_j
    parents: int  # J
    routing: str = "dynamic"  # whose weights c_ij are (CapsNetConfig.routing)

    @property
    def iterations(self) -> int:
        return len(self.entropy)

    @property
    def uniform_entropy(self) -> float:
        """log J: the entropy of uniform couplings (iteration 1)."""
        return math.log(self.parents)

    @property
    def uniform_max_coupling(self) -> float:
        return 1.0 / self.parents

    def summary(self) -> str:
        """One sentence worded from the numbers: how far the last iteration got from uniform."""
        terms = ROUTING_TERMS[self.routing]
        noun, w = terms.noun, terms.symbol
        drop = self.uniform_entropy - self.weighted_entropy[-1]
        share = drop / self.uniform_entropy
        if self.routing == "self-attention":  # one pass, not uniform
            return (f"One pass of self-attention: the ‖u_i‖-weighted entropy of the weights is "
                    f"{self.weighted_entropy[-1]:.4f} nats ({100 * share:.2g} % below log "
                    f"{self.parents} = {self.uniform_entropy:.4f}, uniform) and the mean max "
                    f"{w} is {self.max_coupling[-1]:.3f} (uniform: {self.uniform_max_coupling:.3g}).")
        if self.iterations < 2:
            opening = ("No routing" if self.routing == "uniform"
                       else "One iteration, no routing by agreement")
            return (f"{opening}: the {noun} are uniform (H = log {self.parents} = "
                    f"{self.uniform_entropy:.4f}, max {w} = {self.uniform_max_coupling:.3g}).")
        verdict = (f"the {noun} stay close to uniform: routing barely re-weights most parts"
                   if share < 0.05 else f"routing concentrates the {noun}"
                   if share > 0.25 else f"routing moves the {noun} moderately away from uniform")
        updates = self.iterations - 1
        return (f"After {updates} update{'s' if updates != 1 else ''} the ‖u_i‖-weighted "
                f"entropy fell from "
                f"{self.uniform_entropy:.4f} to {self.weighted_entropy[-1]:.4f} nats "
                f"({100 * share:.2g} % of log {self.parents}) and the mean max {w} rose from "
                f"{self.uniform_max_coupling:.3f} to {self.max_coupling[-1]:.3f}: {verdict}. "
                f"The objective Σ {w[0]} û·v went from {self.objective[0]:.3g} to "
                f"{self.objective[-1]:.3g}.")


def coupling_entropy(couplings: np.ndarray) -> np.ndarray:
    """H_i = −Σ_j c_ij log c_ij over the last axis (0 log 0 = 0), in float64."""
    c = np.asarray(couplings, dtype=np.float64)
    logs = np.log(np.where(c > 0, c, 1.0))
    return -(c * logs).sum(axis=-1)


def routing_diagnostics(couplings: np.ndarray, agreement: np.ndarray,
                        primary_lengths: np.ndarray | None = None,
                        routing: str = "dynamic") -> RoutingDiagnostics:
    """Diagnostics from per-iteration couplings c_ij and agreement û_{j|i}·v_j, each (R, ..., J)
    with the children on the middle axes (1152, or the 32×6×6 grid); ``primary_lengths`` ‖u_i‖
    on the same children (default: equal weights)."""
    c = np.asarray(couplings, dtype=np.float64)
    a = np.asarray(agreement, dtype=np.float64)
    rounds, parents = c.shape[0], c.shape[-1]
    c, a = c.reshape(rounds, -1, parents), a.reshape(rounds, -1, parents)
    weights = (np.ones(c.shape[1]) if primary_lengths is None
               else np.asarray(primary_lengths, dtype=np.float64).reshape(-1))
    weights = weights / max(weights.sum(), np.finfo(np.float64).tiny)
    entropy = coupling_entropy(c)  # (R, I)
    peak = c.max(axis=-1)
    return RoutingDiagnostics(
        entropy=entropy.mean(axis=1),
        weighted_entropy=entropy @ weights,
        max_coupling=peak.mean(axis=1),
        weighted_max_coupling=peak @ weights,
        objective=(c * a).sum(axis=(1, 2)),
        parents=parents,
        routing=routing,
    )


def inspection_diagnostics(capsules: CapsuleInspection) -> RoutingDiagnostics:
    """:func:`routing_diagnostics` of an inspected image, weighted by its ‖u_i‖."""
    return routing_diagnostics(
        np.stack([s.couplings for s in capsules.iterations]),
        np.stack([s.agreement for s in capsules.iterations]),
        capsules.primary_lengths,
        capsules.routing,
    )


# -- ablation over the number of agreement updates --------------------------------------------------

@dataclass(frozen=True)
class RoutingAblation:
    """One input routed with k = ``updates[n]`` agreement updates (r = k + 1 iterations)."""

    updates: tuple[int, ...]
    lengths: np.ndarray  # ‖v_j‖ (K, J)
    poses: np.ndarray  # v_j (K, J, D)
    predictions: np.ndarray  # argmax_j ‖v_j‖ (K,)
    reconstructions: np.ndarray  # decoder masked by each prediction (K, H, W)
    trained_iterations: int  # the model's own r

    def label(self, n: int) -> str:
        return updates_label(self.updates[n], self.trained_iterations)


@torch.no_grad()
def routing_ablation(model, image, updates: Sequence[int] = UPDATES) -> RoutingAblation:
    """Route one image with each number of updates in ``updates``; the convolutions and votes
    û_{j|i} are computed once. Each setting equals ``model(x, iterations=k + 1)``."""
    model.eval()
    x = as_batch(image, model_device(model))
    votes = model.votes(model.primary_capsules(x))
    lengths, poses, predictions, images = [], [], [], []
    for k in updates:
        v = model.route(votes, iterations_for(int(k))).outputs
        scores = model.class_scores(v)
        predicted = scores.argmax(dim=1)
        lengths.append(scores[0])
        poses.append(v[0])
        predictions.append(predicted[0])
        images.append(model.decode(v, predicted)[0, 0])
    return RoutingAblation(
        updates=tuple(int(k) for k in updates),
        lengths=_stacked(lengths),
        poses=_stacked(poses),
        predictions=torch.stack(predictions).cpu().numpy(),
        reconstructions=_stacked(images),
        trained_iterations=model.config.routing_iterations,
    )


def _stacked(tensors: list[torch.Tensor]) -> np.ndarray:
    return torch.stack(tensors).float().cpu().numpy()


@dataclass(frozen=True)
class UpdatesAccuracy:
    """Test accuracy of one model against the number of agreement updates k."""

    updates: tuple[int, ...]
    predictions: np.ndarray  # (K, N) predicted class of every image for each k
    labels: np.ndarray  # (N,)
    trained_iterations: int

    @property
    def count(self) -> int:
        return int(self.labels.shape[0])

    @property
    def correct(self) -> np.ndarray:
        return (self.predictions == self.labels).sum(axis=1)

    @property
    def accuracy(self) -> np.ndarray:
        return self.correct / max(self.count, 1)

    @property
    def reference(self) -> int:
        """Index of the setting the others are compared with: the trained r, else the first."""
        trained = self.trained_iterations - 1
        return self.updates.index(trained) if trained in self.updates else 0

    @property
    def changed(self) -> np.ndarray:
        """(K,) images whose prediction differs from the reference setting's."""
        return (self.predictions != self.predictions[self.reference]).sum(axis=1)

    def label(self, n: int) -> str:
        return updates_label(self.updates[n], self.trained_iterations)

    def rows(self) -> list[dict]:
        """One dict per k, for tables and JSON."""
        return [
            {"updates": k, "iterations": iterations_for(k), "label": self.label(n),
             "correct": int(self.correct[n]), "count": self.count,
             "accuracy": float(self.accuracy[n]), "changed_vs_reference": int(self.changed[n])}
            for n, k in enumerate(self.updates)
        ]


@torch.no_grad()
def accuracy_by_updates(
    model,
    images: torch.Tensor,
    labels: torch.Tensor,
    updates: Sequence[int] = UPDATES,
    batch_size: int = 250,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> UpdatesAccuracy:
    """Classify ``images`` (N, 1, 28, 28) uint8 with each number of updates k. Per batch the
    convolutions and votes are computed once and routed len(updates) times. ``should_stop`` is
    polled between batches (EvaluationCancelled when it says so); ``progress(done, total)``."""
    model.eval()
    device = model_device(model)
    updates = tuple(int(k) for k in updates)
    for k in updates:
        iterations_for(k)  # validates
    total = len(labels)
    predicted = np.empty((len(updates), total), dtype=np.int64)
    for start in range(0, total, batch_size):
        if should_stop is not None and should_stop():
            raise EvaluationCancelled
        x = to_float(images[start:start + batch_size].to(device))
        votes = model.votes(model.primary_capsules(x))
        for n, k in enumerate(updates):
            scores = model.class_scores(model.route(votes, iterations_for(k)).outputs)
            predicted[n, start:start + len(x)] = scores.argmax(dim=1).cpu().numpy()
        if progress is not None:
            progress(min(start + batch_size, total), total)
    return UpdatesAccuracy(updates, predicted, np.asarray(labels.cpu(), dtype=np.int64),
                           model.config.routing_iterations)


# -- one part's prediction through the decoder ---------------------------------------------------

WEIGHTINGS = {
    "couplings": "Σ_i c_ij û_{j|i} (weighted by the couplings)",
    "sum": "Σ_i û_{j|i} (plain sum)",
}
SCALES = {
    "parent": "rescaled to the length ‖v_j‖",
    "squash": "squashed, as v_j = squash(s_j)",
    "raw": "as is",
}


@dataclass(frozen=True)
class VoteSelection:
    """Which votes to decode: children i (flat indices, i = map·36 + row·6 + col) for digit j,
    combined by ``weighting`` with the couplings of ``iteration`` (0-based; −1 the last)."""

    digit: int
    children: tuple[int, ...]
    weighting: str = "couplings"
    scale: str = "parent"
    iteration: int = -1

    def __post_init__(self):
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}")
        if not self.children:
            raise ValueError("select at least one primary capsule")


@dataclass(frozen=True)
class DecodedVote:
    selection: VoteSelection
    combined: np.ndarray  # Σ_{i∈S} w_i û_{j|i} (D,)
    pose: np.ndarray  # what the decoder got in slot j (D,)
    image: np.ndarray  # (H, W)


def combine_votes(votes: np.ndarray, selection: VoteSelection,
                  couplings: np.ndarray | None = None) -> np.ndarray:
    """Σ_{i∈S} w_i û_{j|i} for votes (..., J, D) with the children on the leading axes; w_i = 1,
    or c_ij from ``couplings`` (..., J) on the same children."""
    j, children = selection.digit, np.asarray(selection.children, dtype=np.int64)
    chosen = np.asarray(votes, dtype=np.float64).reshape(-1, *np.shape(votes)[-2:])[children, j]
    if selection.weighting == "sum":
        return chosen.sum(axis=0)
    if couplings is None:
        raise ValueError("coupling-weighted votes need the couplings")
    weights = np.asarray(couplings, dtype=np.float64).reshape(-1, np.shape(couplings)[-1])
    return weights[children, j] @ chosen


def vote_pose(combined: np.ndarray, scale: str, parent_length: float | None = None) -> np.ndarray:
    """The decoder's input for digit j from the combined votes: as is, squashed, or with the
    direction kept and the length of v_j."""
    combined = np.asarray(combined, dtype=np.float64)
    if scale == "raw":
        return combined
    if scale == "squash":
        return squash(torch.from_numpy(combined)).numpy()
    if parent_length is None:
        raise ValueError("rescaling to ‖v_j‖ needs the parent's length")
    norm = float(np.linalg.norm(combined))
    return combined * (parent_length / norm) if norm > 0 else combined


@torch.no_grad()
def decode_vote(model, capsules: CapsuleInspection, selection: VoteSelection) -> DecodedVote:
    """Send the selected votes of an inspected image through the decoder (slot j, others 0).
    With every child, couplings of the last iteration and "squash" (or "parent"), the pose is
    v_j and the image is the ordinary reconstruction masked by j."""
    if capsules.votes is None:
        raise ValueError("the inspection holds no votes (inspect_capsnet keeps them)")
    snapshot = capsules.iterations[selection.iteration]
    combined = combine_votes(capsules.votes, selection, snapshot.couplings)
    pose = vote_pose(combined, selection.scale, float(snapshot.parent_lengths[selection.digit]))
    device, dtype = placement(model)
    batch = torch.as_tensor(pose[None], dtype=dtype, device=device)
    image = model.decode_pose(batch, selection.digit)[0, 0].float().cpu().numpy()
    return DecodedVote(selection, combined.astype(np.float32), pose.astype(np.float32), image)


# -- the vote cloud ------------------------------------------------------------------------------

@dataclass(frozen=True)
class VoteCloud:
    """The votes û_{j|i} for one digit capsule j on their first two principal components.

    coordinates = (û_{j|i} − μ) Pᵀ with μ the mean vote and P (2, D) orthonormal: one fixed
    plane for every iteration, so scrubbing changes only the couplings (dot sizes) and the
    markers. s_j, v_j and the coupling-weighted mean vote s_j / Σ_i c_ij all lie on the ray
    from the zero vector along s_j, which the projection maps to a ray through ``origin``.
    """

    digit: int
    coordinates: np.ndarray  # (I, 2)
    mean: np.ndarray  # μ (D,)
    components: np.ndarray  # P (2, D)
    explained: np.ndarray  # (2,) share of the votes' variance on each component
    couplings: np.ndarray  # c_ij per iteration (R, I)
    agreement: np.ndarray  # û_{j|i}·v_j per iteration (R, I)
    origin: np.ndarray  # the zero vector projected (2,)
    centres: np.ndarray  # s_j / Σ_i c_ij projected (R, 2)
    outputs: np.ndarray  # v_j projected (R, 2)
    preactivations: np.ndarray  # s_j projected (R, 2)
    in_plane: np.ndarray  # ‖P v_j‖ / ‖v_j‖ (R,): how much of v_j the plane shows

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """(…, D) → (…, 2) with the cloud's affine map."""
        return (np.asarray(vectors, dtype=np.float64) - self.mean) @ self.components.T


def principal_plane(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, the two leading principal directions (2, D) and their shares of the variance.
    Signs are fixed so that each direction's largest loading is positive."""
    points = np.asarray(points, dtype=np.float64)
    mean = points.mean(axis=0)
    _, singular, rows = np.linalg.svd(points - mean, full_matrices=False)
    components = rows[:2].copy()
    for row in components:
        if row[np.argmax(np.abs(row))] < 0:
            row *= -1
    variance = singular ** 2
    explained = variance[:2] / max(variance.sum(), np.finfo(np.float64).tiny)
    return mean, components, explained


def vote_cloud(votes: np.ndarray, digit: int, couplings: np.ndarray, outputs: np.ndarray,
               agreement: np.ndarray | None = None) -> VoteCloud:
    """Project the votes for ``digit``: votes (..., J, D) with the children on the leading axes,
    couplings (R, ..., J) and outputs v_j (R, J, D) of every iteration; agreement (R, ..., J)
    defaults to û_{j|i}·v_j computed here."""
    votes = np.asarray(votes, dtype=np.float64)
    dim = votes.shape[-1]
    own = votes.reshape(-1, votes.shape[-2], dim)[:, digit]  # (I, D)
    rounds = len(outputs)
    c = np.asarray(couplings, dtype=np.float64).reshape(rounds, -1, votes.shape[-2])[..., digit]
    v = np.asarray(outputs, dtype=np.float64)[:, digit]  # (R, D)
    a = (own @ v.T).T if agreement is None else (
        np.asarray(agreement, dtype=np.float64).reshape(rounds, -1, votes.shape[-2])[..., digit])
    mean, components, explained = principal_plane(own)
    s = c @ own  # s_j = Σ_i c_ij û_{j|i} (R, D)
    total = c.sum(axis=1, keepdims=True)

    def project(x: np.ndarray) -> np.ndarray:
        return (x - mean) @ components.T

    v_norm = np.linalg.norm(v, axis=1)
    in_plane = np.divide(np.linalg.norm(v @ components.T, axis=1), v_norm,
                         out=np.zeros_like(v_norm), where=v_norm > 0)
    return VoteCloud(
        digit=int(digit), coordinates=project(own), mean=mean, components=components,
        explained=explained, couplings=c, agreement=a, origin=project(np.zeros(dim)),
        centres=project(s / total), outputs=project(v), preactivations=project(s),
        in_plane=in_plane,
    )


def inspection_vote_cloud(capsules: CapsuleInspection, digit: int) -> VoteCloud:
    if capsules.votes is None:
        raise ValueError("the inspection holds no votes (inspect_capsnet keeps them)")
    return vote_cloud(
        capsules.votes, digit,
        np.stack([s.couplings for s in capsules.iterations]),
        np.stack([s.parent_poses for s in capsules.iterations]),
        np.stack([s.agreement for s in capsules.iterations]),
    )


__all__ = [
    "SCALES", "UPDATES", "WEIGHTINGS", "DecodedVote", "RoutingAblation", "RoutingDiagnostics",
    "UpdatesAccuracy", "VoteCloud", "VoteSelection", "accuracy_by_updates", "combine_votes",
    "coupling_entropy", "decode_vote", "inspection_diagnostics", "inspection_vote_cloud",
    "iterations_for", "principal_plane", "routing_ablation", "routing_diagnostics",
    "updates_label", "vote_cloud", "vote_pose",
]

"""The routing lab's model: children voting in 2-D for a handful of parents, the presets, and
dynamic routing, EM routing and the two attention routings traced on the same votes (Qt-free;
the view draws these arrays).

A child i has one vote û_{j|i} ∈ R² per parent j: ``votes`` is (I, J, 2). Every routing sees
the same effective votes: the placed votes plus the optional fixed perturbation, turned by θ.
EM routing treats the votes as 2-D poses with child activations a_i (1 unless set). The logit
bias b₀ is a prior of dynamic routing only; the attention routings take none (Efficient-
CapsNet's learned priors β_ij are zero here, as at the start of training). In 2-D, inverted
attention's LayerNorm leaves every pose at ±(1, −1) (centred and scaled, two entries have no
other shape), so its agreement is ±(v_x − v_y): the lab shows what the procedure does with
two-entry poses, not what it does with 16.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
import torch

from capsviewer.analysis.routing_theory import (
    AssignmentGap,
    EquivarianceErrors,
    FixedPoint,
    agreement_objective,
    assignment_gap,
    attention_couplings,
    equivariance_errors,
    fixed_point_slope,
    logit_difference_map,
    next_logits,
    rotate_votes,
    route,
    routing_keys,
    routing_potential,
    scale_gap,
    sigmoid_norm_eigenvalues,
    softmax_jacobian,
    squash_eigenvalues,
    stack,
)
from capsviewer.analysis.toy_routing import part_votes, symmetric_votes
from capsviewer.maths.em_routing import em_routing
from capsviewer.maths.routings import route_votes

MIN_CHILDREN, MAX_CHILDREN = 1, 8
MIN_PARENTS, MAX_PARENTS = 2, 4
NOISE_SEED = 0


def vote_noise(children: int, parents: int) -> np.ndarray:
    """The fixed perturbation direction (I, J, 2): standard normal, seeded, and the same for a
    vote whatever the number of children and parents (sliced from the largest lab)."""
    g = torch.Generator().manual_seed(NOISE_SEED)
    noise = torch.randn(MAX_CHILDREN, MAX_PARENTS, 2, generator=g, dtype=torch.float64)
    return noise[:children, :parents].numpy()


@dataclass
class LabState:
    """Everything the lab computes from. Strengths of 0 switch a prior off."""

    votes: np.ndarray  # û_{j|i} as placed (I, J, 2)
    activations: np.ndarray  # a_i of the children, for EM (I,)
    iterations: int = 3
    logit_bias: float = 0.0  # initial logit b_i0 of parent 0, every child (dynamic routing)
    perturbation: float = 0.0  # scale of the fixed vote noise added to every vote
    temperature: float = 1.0  # T of the attention reading
    theta: float = 0.0  # rotation of every vote, degrees (the equivariance experiment)
    inverse_temperature: float = 1.0  # final λ of EM routing's schedule

    def __post_init__(self):
        self.votes = np.array(self.votes, dtype=np.float64).reshape(len(self.votes), -1, 2)
        self.activations = np.array(self.activations, dtype=np.float64).reshape(-1)
        if self.activations.shape != (self.children,):
            raise ValueError(f"{self.children} children need {self.children} activations")

    @property
    def children(self) -> int:
        return self.votes.shape[0]

    @property
    def parents(self) -> int:
        return self.votes.shape[1]

    def unrotated_votes(self) -> np.ndarray:
        """Placed + perturbation · noise: the votes at θ = 0."""
        return self.votes + self.perturbation * vote_noise(self.children, self.parents)

    def effective_votes(self) -> np.ndarray:
        """The votes both routings see: placed + perturbation · noise, turned by θ."""
        votes = self.unrotated_votes()
        return rotate_votes(votes, np.deg2rad(self.theta)) if self.theta else votes

    def logit_prior(self) -> np.ndarray | None:
        """Initial logits b_ij: the bias on parent 0 for every child, or None (zeros)."""
        if not self.logit_bias:
            return None
        prior = np.zeros((self.children, self.parents))
        prior[:, 0] = self.logit_bias
        return prior

    # -- editing (the canvas) -----------------------------------------------------------
    def move_vote(self, child: int, parent: int, position) -> None:
        """Put the effective vote (what the canvas shows) at ``position``: the placed vote
        becomes the position turned back by θ, less the perturbation."""
        position = rotate_votes(np.asarray(position, dtype=np.float64), -np.deg2rad(self.theta))
        noise = vote_noise(self.children, self.parents)[child, parent]
        self.votes[child, parent] = position - self.perturbation * noise

    def add_child(self, position=None) -> int:
        """A new child voting at ``position`` (as shown, like :meth:`move_vote`) for parent 0
        and spread around it for the others, so that every vote can be grabbed; without a
        position, at each parent's mean vote plus a small fixed offset. Returns its index."""
        if self.children >= MAX_CHILDREN:
            raise ValueError(f"at most {MAX_CHILDREN} children")
        noise = vote_noise(MAX_CHILDREN, self.parents)[self.children]
        if position is None:
            new = self.votes.mean(axis=0) + 0.3 * noise
        else:
            angles = 2 * np.pi * np.arange(self.parents) / self.parents
            offsets = 0.35 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
            shown = np.asarray(position, dtype=np.float64) + offsets - offsets[0]
            new = rotate_votes(shown, -np.deg2rad(self.theta)) - self.perturbation * noise
        self.votes = np.concatenate([self.votes, new[None]])
        self.activations = np.append(self.activations, 1.0)
        return self.children - 1

    def remove_child(self, child: int) -> None:
        if self.children <= MIN_CHILDREN:
            raise ValueError(f"at least {MIN_CHILDREN} child")
        self.votes = np.delete(self.votes, child, axis=0)
        self.activations = np.delete(self.activations, child)

    def add_parent(self) -> int:
        """A new parent every child votes for at a fixed random spot of radius ≈ 1.5."""
        if self.parents >= MAX_PARENTS:
            raise ValueError(f"at most {MAX_PARENTS} parents")
        noise = vote_noise(MAX_CHILDREN, MAX_PARENTS)[: self.children, self.parents]
        self.votes = np.concatenate([self.votes, 1.5 * np.tanh(noise)[:, None]], axis=1)
        return self.parents - 1

    def remove_parent(self, parent: int) -> None:
        if self.parents <= MIN_PARENTS:
            raise ValueError(f"at least {MIN_PARENTS} parents")
        self.votes = np.delete(self.votes, parent, axis=1)

    def set_activation(self, child: int, value: float) -> None:
        self.activations[child] = float(np.clip(value, 0.0, 1.0))

    def copy(self) -> LabState:
        return replace(self, votes=self.votes.copy(), activations=self.activations.copy())


@dataclass(frozen=True)
class DynamicTrace:
    """Dynamic routing, iteration r = 1..R first: the couplings c^(r) made s^(r) and v^(r).
    Also the attention routings' trace, in their terms: self-attention has one iteration (b_ij
    its attention logits, v_j = squash(s_j)); inverted attention's logits are the agreement
    with the previous poses, its couplings r_ij, its outputs the poses p_j = LayerNorm(s_j)."""

    logits: np.ndarray  # b_ij (R, I, J)
    couplings: np.ndarray  # c_ij (R, I, J)
    preactivations: np.ndarray  # s_j (R, J, 2)
    outputs: np.ndarray  # v_j (R, J, 2)
    agreement: np.ndarray  # û_{j|i}·v_j (R, I, J)


@dataclass(frozen=True)
class EMTrace:
    """EM routing, iteration r = 1..R first: R^(r) entered the M-step that made μ^(r), σ²^(r),
    a^(r); ``final_responsibilities`` is the E-step after the last M-step."""

    responsibilities: np.ndarray  # R_ij (R, I, J)
    means: np.ndarray  # μ_j (R, J, 2)
    variances: np.ndarray  # σ²_j per axis (R, J, 2)
    activations: np.ndarray  # a_j (R, J)
    inverse_temperatures: np.ndarray  # λ (R,)
    final_responsibilities: np.ndarray  # (I, J)


def dynamic_trace(state: LabState) -> DynamicTrace:
    return _as_dynamic(route(state.effective_votes(), state.iterations, prior=state.logit_prior()))


def _as_dynamic(trace) -> DynamicTrace:
    return DynamicTrace(*(stack(trace, name) for name in
                          ("logits", "couplings", "preactivations", "outputs", "agreement")))


def attention_traces(state: LabState, votes: np.ndarray | None = None
                     ) -> tuple[DynamicTrace, DynamicTrace]:
    """(self-attention, inverted attention) on the effective votes: one pass, and R iterations."""
    votes = torch.as_tensor(state.effective_votes() if votes is None else votes)[None]
    return tuple(_as_dynamic(route_votes(name, votes, state.iterations, trace=True).trace)
                 for name in ("self-attention", "inverted-attention"))


def em_trace(state: LabState, votes: np.ndarray | None = None) -> EMTrace:
    votes = state.effective_votes() if votes is None else votes
    result = em_routing(torch.as_tensor(votes)[None], torch.as_tensor(state.activations)[None],
                        state.iterations, inverse_temperature=state.inverse_temperature,
                        trace=True)
    steps = result.trace
    return EMTrace(
        np.stack([s.responsibilities[0].numpy() for s in steps]),
        np.stack([s.mean[0].numpy() for s in steps]),
        np.stack([s.variance[0].numpy() for s in steps]),
        np.stack([s.activations[0].numpy() for s in steps]),
        np.array([s.inverse_temperature for s in steps]),
        result.responsibilities[0].numpy(),
    )


# -- presets ---------------------------------------------------------------------------------

PANELS = ("couplings", "fixed_point", "objective", "lp", "attention", "jacobians", "equivariance",
          "attention_routings")


@dataclass(frozen=True)
class Preset:
    title: str
    explanation: str  # one or two sentences shown above the canvases
    votes: np.ndarray  # (I, J, 2)
    iterations: int
    panel: str  # the plot the preset is about
    activations: np.ndarray | None = None
    options: dict = field(default_factory=dict)  # other LabState fields

    def state(self) -> LabState:
        votes = np.array(self.votes, dtype=np.float64)
        activations = (np.ones(len(votes)) if self.activations is None
                       else np.array(self.activations, dtype=np.float64))
        return LabState(votes, activations, self.iterations, **self.options)


SYMMETRIC = symmetric_votes()[0].numpy()  # both children: (1, 0) for parent 0, (0, 1) for 1

PRESETS: dict[str, Preset] = {
    "symmetric": Preset(
        "Symmetric ambiguity",
        "Two children vote (1, 0) for parent 0 and (0, 1) for parent 1: nothing prefers either "
        "parent, so routing keeps c = ½ for ever. Switch on a prior to break the tie.",
        SYMMETRIC, 5, "couplings"),
    "fixed_point": Preset(
        "Unstable fixed point",
        "The symmetric votes again: Δ = 0 is a fixed point of the logit-difference map Δ → Δ', "
        "and its slope g'(0) > 1 makes it unstable: a small Δ grows by g'(0) per iteration.",
        SYMMETRIC, 10, "fixed_point"),
    "objective": Preset(
        "Agreement objective",
        "With v = s routing only ever raises Σ c û·v; with squash that sum dips at iterations "
        "5–6 here, while the potential Σ(‖s‖ − arctan‖s‖) that squash routing ascends rises.",
        [[[-2.0, 1.5], [-1.0, 0.0]], [[3.0, -3.0], [-3.0, -0.5]]], 10, "objective"),
    "lp": Preset(
        "Hard vs soft assignment",
        "For fixed parents, sending each child wholly to its most agreeing parent solves the "
        "linear program; the couplings are its softened version and sharpen towards it.",
        [[[1.6, 0.4], [-1.2, 0.9]], [[1.4, 0.7], [0.3, -1.0]], [[-0.6, -0.8], [-0.4, 1.6]],
         [[1.0, -1.2], [-0.7, 1.4]], [[1.0, 0.3], [-0.2, 1.1]]], 8, "lp"),
    "attention": Preset(
        "Routing as attention",
        "The couplings are a softmax over parents of dot products between each vote (query) "
        "and the sum of the parent's earlier outputs (key); the temperature T sharpens it.",
        [[[1.6, 0.4], [-1.2, 0.9]], [[1.4, 0.7], [0.3, -1.0]], [[-0.6, -0.8], [-0.4, 1.6]],
         [[1.0, -1.2], [-0.7, 1.4]], [[1.0, 0.3], [-0.2, 1.1]]], 3, "attention"),
    "jacobians": Preset(
        "Jacobians",
        "How much an output moves when its input moves: squash shrinks every direction "
        "(eigenvalues below 1); a sigmoid of the length does not near s = 0. The stars are the "
        "parents' ‖s_j‖ at iteration r.",
        [[[0.5, -1.8], [-0.7, -0.2], [-1.5, 1.3]], [[0.7, 0.5], [-1.8, -0.4], [0.0, -1.9]]],
        3, "jacobians"),
    "equivariance": Preset(
        "Equivariance",
        "Five part detectors vote for the pose of a whole (parent 0) and scatter votes for "
        "parent 1. Turn every vote by θ: routing's v₀ turns with them, an invariant sum does "
        "not.",
        part_votes(0.0)[0].numpy(), 3, "equivariance"),
    "clusters": Preset(
        "Clusters: dot product vs distance",
        "Three children agree on parent 0, three on parent 1; the rest scatter. EM (distance to "
        "a Gaussian) sends all six home; dynamic routing (dot product) sends child 5's long "
        "vote to parent 0.",
        [[[1.5, 0.6], [-2.2, -0.4]], [[1.65, 0.5], [0.6, -2.0]], [[1.55, 0.75], [2.0, 1.8]],
         [[-1.6, 1.8], [-1.1, 1.3]], [[0.3, -2.1], [-1.2, 1.15]], [[2.2, -1.3], [-0.95, 1.25]]],
        3, "couplings"),
    "free": Preset(
        "Free play",
        "Three children, three parents: drag votes, right-click to add or remove a child, and "
        "watch both routings follow.",
        [[[1.2, 0.5], [-0.6, 1.0], [0.2, -1.3]], [[1.0, 0.8], [0.9, -0.6], [-1.1, -0.2]],
         [[-0.8, 0.9], [-0.7, 1.2], [0.4, -1.0]]], 3, "couplings"),
}


# -- every number the lab shows --------------------------------------------------------------

DELTAS = np.linspace(-4.0, 4.0, 161)  # Δ of the logit-difference map
NORMS = np.linspace(0.01, 4.0, 400)  # ‖s‖ of the Jacobian plot
SCALES = np.logspace(-1, 2, 61)  # logit scale κ
TEMPERATURES = np.logspace(np.log10(0.05), np.log10(5.0), 60)  # attention T
THETAS = np.deg2rad(np.arange(-180.0, 181.0, 5.0))  # rotations of the equivariance sweep


@dataclass(frozen=True)
class LabResult:
    """What the lab draws for one state (iteration-independent parts; see the accessors)."""

    votes: np.ndarray  # the effective votes (I, J, 2)
    prior: np.ndarray | None  # initial logits (I, J)
    dynamic: DynamicTrace
    em: EMTrace
    squash_map: np.ndarray  # Δ' over DELTAS
    linear_map: np.ndarray
    squash_fixed: FixedPoint
    linear_fixed: FixedPoint
    run_deltas: np.ndarray  # mean_i (b_i0 − b_i1) per iteration of this run (R,)
    linear_objective: np.ndarray  # Σ c û·v per iteration with v = s (R,)
    squash_objective: np.ndarray  # the same with squash (R,)
    squash_potential: np.ndarray  # Σ_j (‖s_j‖ − arctan‖s_j‖) (R,)
    gap: AssignmentGap
    scale_distance: np.ndarray  # over SCALES
    scale_value_gap: np.ndarray
    keys: np.ndarray  # attention keys K_j^(r) (R, J, 2)
    equivariance: EquivarianceErrors
    self_attention: DynamicTrace  # Efficient-CapsNet's routing: one pass (1, …)
    inverted_attention: DynamicTrace  # Tsai et al.'s routing (R, …)

    def attention(self, r: int, temperature: float) -> np.ndarray:
        """softmax_j((b⁰ + û·K^(r)) / T) (I, J)."""
        return attention_couplings(self.votes, self.keys[r - 1], temperature, self.prior)

    def sharpness(self, r: int) -> np.ndarray:
        """Mean over children of max_j of the attention couplings, over TEMPERATURES."""
        return np.array([self.attention(r, t).max(axis=1).mean() for t in TEMPERATURES])

    def parent_norms(self, r: int) -> np.ndarray:
        return np.linalg.norm(self.dynamic.preactivations[r - 1], axis=-1)

    def softmax_jacobian(self, r: int, child: int) -> np.ndarray:
        return softmax_jacobian(self.dynamic.couplings[r - 1, child])


def compute(state: LabState) -> LabResult:
    """Every routing and every theory plot for ``state`` (a few milliseconds)."""
    votes, prior = state.effective_votes(), state.logit_prior()
    iterations = state.iterations
    squash_trace = route(votes, iterations, prior=prior)
    linear_trace = route(votes, iterations, prior=prior, linear=True)
    dynamic = _as_dynamic(squash_trace)
    distance, value_gap = scale_gap(next_logits(squash_trace), SCALES)
    return LabResult(
        votes, prior, dynamic, em_trace(state, votes),
        logit_difference_map(votes, DELTAS), logit_difference_map(votes, DELTAS, linear=True),
        fixed_point_slope(votes), fixed_point_slope(votes, linear=True),
        (dynamic.logits[:, :, 0] - dynamic.logits[:, :, 1]).mean(axis=1),
        agreement_objective(linear_trace), agreement_objective(squash_trace),
        routing_potential(squash_trace), assignment_gap(squash_trace), distance, value_gap,
        routing_keys(squash_trace),
        equivariance_errors(state.unrotated_votes(), THETAS, iterations, prior=prior,
                            activations=state.activations,
                            inverse_temperature=state.inverse_temperature),
        *attention_traces(state, votes),
    )


@lru_cache(maxsize=1)
def jacobian_curves() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """‖s‖ and the (radial, tangential) eigenvalues of squash and σ(‖s‖)ŝ over NORMS."""
    return NORMS, squash_eigenvalues(NORMS), sigmoid_norm_eigenvalues(NORMS)

"""The routing algorithms as one family: what each is, and one call for the vector-capsule ones.

Every algorithm's trace is a tuple with one entry per iteration, and every entry offers
    assignments         how much of child i went to parent j (B, I, J); Σ_j = 1 for all five
    parent_poses        the parents' poses that iteration made (B, J, D)
    parent_activations  their activations (B, J), or None where the algorithm has none
(:class:`RoutingIteration` for the vector routings, :class:`EMIteration` for EM). The maths of
each is in its own module, with the formula once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from capsviewer.maths.inverted_attention_routing import inverted_attention_routing
from capsviewer.maths.routing import RoutingResult, dynamic_routing, uniform_routing
from capsviewer.maths.self_attention_routing import self_attention_routing


class RoutingStep(Protocol):
    """One iteration of any routing algorithm, as views and analyses read it."""

    @property
    def assignments(self) -> torch.Tensor: ...

    @property
    def parent_poses(self) -> torch.Tensor: ...

    @property
    def parent_activations(self) -> torch.Tensor | None: ...


@dataclass(frozen=True)
class RoutingAlgorithm:
    name: str  # as CapsNetConfig.routing and the command line spell it
    title: str
    paper: str
    assignment: str  # what its assignment weights are called, in the paper's symbol
    normalised_over: str  # the axis the assignment weights sum to 1 over
    iterative: bool  # False: one pass whatever the number of iterations asked for
    capsules: str  # "vector" (this family's CapsNet backbone) or "matrix" (MatrixCapsNet)


ROUTING_ALGORITHMS: dict[str, RoutingAlgorithm] = {a.name: a for a in (
    RoutingAlgorithm("dynamic", "Dynamic routing", "Sabour, Frosst & Hinton 2017",
                     "couplings c_ij", "parents", True, "vector"),
    RoutingAlgorithm("uniform", "Uniform (no routing)", "c_ij = 1/J; Paik et al. 2019",
                     "couplings c_ij", "parents", False, "vector"),
    RoutingAlgorithm("self-attention", "Self-attention routing",
                     "Mazzia, Salvetti & Chiaberge 2021 (Efficient-CapsNet)",
                     "couplings c_ij", "parents", False, "vector"),
    RoutingAlgorithm("inverted-attention", "Inverted dot-product attention",
                     "Tsai, Srivastava, Goh & Salakhutdinov 2020", "routing r_ij", "parents",
                     True, "vector"),
    RoutingAlgorithm("em", "EM routing", "Hinton, Sabour & Frosst 2018",
                     "responsibilities R_ij", "parents", True, "matrix"),
)}

VECTOR_ROUTINGS = tuple(n for n, a in ROUTING_ALGORITHMS.items() if a.capsules == "vector")


def route_votes(
    routing: str,
    votes: torch.Tensor,
    iterations: int = 3,
    *,
    bias: torch.Tensor | None = None,
    log_prior: torch.Tensor | None = None,
    layer_norm: Callable[[torch.Tensor], torch.Tensor] | None = None,
    squash_function: Callable[[torch.Tensor], torch.Tensor] | None = None,
    trace: bool = False,
    **dynamic_options,
) -> RoutingResult:
    """Route votes (B, I, J, D) with the vector routing ``routing`` (see VECTOR_ROUTINGS).

    bias b_j: dynamic, uniform and self-attention; log_prior β_ij and squash_function:
    self-attention; layer_norm: inverted attention; other options: dynamic routing's.
    ``iterations`` is ignored by the one-pass algorithms (uniform, self-attention).
    """
    if routing not in VECTOR_ROUTINGS:
        raise ValueError(f"unknown routing {routing!r}; known: {', '.join(VECTOR_ROUTINGS)}")
    extra = {"log_prior": log_prior, "layer_norm": layer_norm, "squash_function": squash_function}
    allowed = {"dynamic": (), "uniform": (), "self-attention": ("log_prior", "squash_function"),
               "inverted-attention": ("layer_norm",)}[routing]
    misplaced = [k for k, v in extra.items() if v is not None and k not in allowed]
    if routing != "dynamic":
        misplaced += [k for k, v in dynamic_options.items()
                      if isinstance(v, torch.Tensor) or v not in (None, False, 0)]
    if routing == "inverted-attention" and bias is not None:
        misplaced.append("bias")
    if misplaced:
        raise ValueError(f"{routing} routing takes no {', '.join(misplaced)}")
    if routing == "dynamic":
        return dynamic_routing(votes, iterations, bias=bias, trace=trace, **dynamic_options)
    if routing == "uniform":
        return uniform_routing(votes, bias=bias, trace=trace)
    if routing == "self-attention":
        options = {} if squash_function is None else {"squash_function": squash_function}
        return self_attention_routing(votes, log_prior=log_prior, bias=bias, trace=trace,
                                      **options)
    return inverted_attention_routing(votes, iterations, layer_norm=layer_norm, trace=trace)

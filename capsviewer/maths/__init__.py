"""Capsule mathematics: squashing, dynamic routing, their Jacobians and the losses."""

from capsviewer.maths.routing import (
    RoutingIteration,
    RoutingResult,
    coupling_jacobian,
    dynamic_routing,
    predict_votes,
)
from capsviewer.maths.squash import squash, squash_jacobian

__all__ = [
    "RoutingIteration",
    "RoutingResult",
    "coupling_jacobian",
    "dynamic_routing",
    "predict_votes",
    "squash",
    "squash_jacobian",
]

"""Capsule mathematics: squashing, dynamic routing, their Jacobians and the losses."""

from capsviewer.maths.em_routing import (
    EMIteration,
    EMRoutingResult,
    em_routing,
    inverse_temperature_schedule,
)
from capsviewer.maths.routing import (
    RoutingIteration,
    RoutingResult,
    coupling_jacobian,
    dynamic_routing,
    predict_votes,
)
from capsviewer.maths.squash import squash, squash_jacobian

__all__ = [
    "EMIteration",
    "EMRoutingResult",
    "RoutingIteration",
    "RoutingResult",
    "coupling_jacobian",
    "dynamic_routing",
    "em_routing",
    "inverse_temperature_schedule",
    "predict_votes",
    "squash",
    "squash_jacobian",
]

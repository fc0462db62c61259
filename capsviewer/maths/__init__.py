"""Capsule mathematics: squashing, the routing algorithms, their Jacobians and the losses."""

from capsviewer.maths.em_routing import (
    EMIteration,
    EMRoutingResult,
    em_routing,
    inverse_temperature_schedule,
)
from capsviewer.maths.inverted_attention_routing import (
    InvertedAttentionIteration,
    inverted_attention_routing,
)
from capsviewer.maths.routing import (
    RoutingIteration,
    RoutingResult,
    coupling_jacobian,
    dynamic_routing,
    predict_votes,
    uniform_routing,
)
from capsviewer.maths.routings import (
    ROUTING_ALGORITHMS,
    VECTOR_ROUTINGS,
    RoutingAlgorithm,
    RoutingStep,
    route_votes,
)
from capsviewer.maths.self_attention_routing import self_attention_routing
from capsviewer.maths.squash import efficient_squash, squash, squash_jacobian

__all__ = [
    "ROUTING_ALGORITHMS",
    "VECTOR_ROUTINGS",
    "EMIteration",
    "EMRoutingResult",
    "InvertedAttentionIteration",
    "RoutingAlgorithm",
    "RoutingIteration",
    "RoutingResult",
    "RoutingStep",
    "coupling_jacobian",
    "dynamic_routing",
    "efficient_squash",
    "em_routing",
    "inverse_temperature_schedule",
    "inverted_attention_routing",
    "predict_votes",
    "route_votes",
    "self_attention_routing",
    "squash",
    "squash_jacobian",
    "uniform_routing",
]

"""Routing: E.164 normalisation, operator (MNO) resolution and route rules.

Imports none of Tandem's other packages. The public API is re-exported here.
"""

from routing.config import (
    MessageKind,
    NumberingConfig,
    RouteConfig,
    RouteList,
    RouteStrategy,
    SenderRewriteConfig,
    TimeWindowConfig,
)
from routing.errors import (
    InvalidNumber,
    InvalidNumberCode,
    NoRoute,
    RoutingRefusal,
    TableFormatError,
)
from routing.explain import RouteExplanation, explain_route, render_explanation
from routing.numbers import NormalisedNumber, NumberResolver, ResolvedNumber, normalise_number
from routing.rules import (
    LinkStates,
    LinkStatus,
    RandomSource,
    RouteDecision,
    RouteFacts,
    RouteTable,
    RouteTarget,
    pick_target,
)
from routing.tables import MnoAnswer, MnoSource, OperatorTables, load_operator_tables

__all__ = [
    "InvalidNumber",
    "InvalidNumberCode",
    "LinkStates",
    "LinkStatus",
    "MessageKind",
    "MnoAnswer",
    "MnoSource",
    "NoRoute",
    "NormalisedNumber",
    "NumberResolver",
    "NumberingConfig",
    "OperatorTables",
    "RandomSource",
    "ResolvedNumber",
    "RouteConfig",
    "RouteDecision",
    "RouteExplanation",
    "RouteFacts",
    "RouteList",
    "RouteStrategy",
    "RouteTable",
    "RouteTarget",
    "RoutingRefusal",
    "SenderRewriteConfig",
    "TableFormatError",
    "TimeWindowConfig",
    "explain_route",
    "load_operator_tables",
    "normalise_number",
    "pick_target",
    "render_explanation",
]

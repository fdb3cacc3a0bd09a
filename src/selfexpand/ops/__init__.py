"""Growth operations on a ``GrowableNet``; each validates first, then changes the graph, carries the
optimizer state, and returns a :class:`GrowthEvent`."""

from .compact import compact
from .edges import prune_edges, split_edges
from .event import GrowthEvent
from .layers import identity_layer_values, insert_identity_layer, insert_layer
from .optimizer_state import carry_state
from .split_units import split_units
from .units import add_units, remove_units

__all__ = [
    "GrowthEvent", "add_units", "remove_units", "insert_layer", "insert_identity_layer",
    "identity_layer_values", "split_edges", "prune_edges", "compact", "carry_state", "split_units",
]

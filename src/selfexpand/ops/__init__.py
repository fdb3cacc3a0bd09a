"""Growth operations on a ``GrowableNet``; each validates first, then changes the graph, carries the
optimizer state, and returns a :class:`GrowthEvent`.

Called as a user would call them, with no initial values, the ops that add structure keep the network's
function (each docstring states its default):

- ``add_units(net, layer, n, optimizer=opt)``: Kaiming-uniform incoming weights (``nn.Linear``'s
  ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``), zero biases, zero outgoing weights;
- ``insert_layer(net, connection, optimizer=opt)``: an identity layer (signed, ``2 n`` units, for ReLU;
  ``n`` units for identity-valued activations such as ``"rational"`` at its start);
- ``split_units(net, layer, sources, optimizer=opt)``: copies sharing their sources' outgoing weights;
- ``split_edges(net, edges, optimizer=opt)``: paths of weights 1 and ``w``, eps edges ``U[0, 1e-8)``
  (exact for non-negative parents; ``signed=True`` for any sign).

On conv layers (``graph.conv``): ``add_channels`` (``add_units`` on a conv layer: ``nn.Conv2d``'s
Kaiming-uniform incoming kernels, zero outgoing kernels and flatten columns, new batch-norm channels at
weight 1, bias 0, mean 0, variance 1), ``remove_channels``, ``split_channels`` (Net2Net wider;
``split_units`` on a conv layer) and ``insert_conv_layer`` (identity kernels; see its module for batch
norm in training mode).

``remove_units``, ``prune_edges`` and ``compact`` take no values.

Every op works on dense storage and, when it returns, stores sparse the connections below the
network's ``sparse_below`` (``graph.sparse``): ``choose_storage(net, optimizer)`` makes that choice,
``with dense_storage(net, optimizer):`` holds every connection dense for code of your own.
"""

from .channels import add_channels, remove_channels, split_channels
from .compact import compact
from .conv_layers import identity_conv_values, insert_conv_layer
from .edges import prune_edges, split_edges
from .event import GrowthEvent
from .layers import identity_layer_values, insert_identity_layer, insert_layer
from .optimizer_state import carry_state
from .split_units import split_units
from .storage import choose_storage, dense_storage
from .units import add_units, remove_units

__all__ = [
    "GrowthEvent", "add_units", "remove_units", "insert_layer", "insert_identity_layer",
    "identity_layer_values", "split_edges", "prune_edges", "compact", "carry_state", "split_units",
    "add_channels", "remove_channels", "split_channels", "insert_conv_layer", "identity_conv_values",
    "choose_storage", "dense_storage",
]

"""Adding channels to a conv layer (``ops.add_channels``; ``add_units`` on a conv layer calls it).

Kept apart from ``ops.channels`` so that ``ops.units`` can dispatch here without an import circle.
See ``ops.channels`` for what moves with a channel.
"""

from __future__ import annotations

import math

import torch

from ..errors import GrowthError
from ..graph.conv import ConvConnection, ConvLayer, positions
from ..validators import positive_int
from .checks import require_hidden, require_tensor
from .connection_edit import column_sources, resize_connection
from .edit import Edit, arange_with_new
from .event import GrowthEvent
from .storage import on_dense_storage

__all__ = ["add_channels", "require_conv_layer"]


def require_conv_layer(net, layer: str) -> ConvLayer:
    require_hidden(net, layer)
    if not isinstance(net.layers[layer], ConvLayer):
        raise GrowthError(f"layer must be a conv layer, got layer={layer!r} (a dense layer: use add_units)")
    return net.layers[layer]


def _outgoing_shape(net, layer: str, c, n: int) -> tuple[int, ...]:
    """Shape of the values ``n`` new channels of ``layer`` add to outgoing connection ``c``."""
    if isinstance(c, ConvConnection):
        return (c.shape[0], n, *c.shape[2:])
    return (c.shape[0], n * positions(net, layer))


@on_dense_storage
def add_channels(net, layer: str, n: int, *, incoming: dict[str, torch.Tensor] | None = None,
                 bias: torch.Tensor | None = None, outgoing: dict[str, torch.Tensor] | None = None,
                 optimizer=None, generator: torch.Generator | None = None) -> GrowthEvent:
    """Append ``n`` channels to conv ``layer`` (marked ``grown``).

    Args:
        incoming: for each conv connection into ``layer`` writing all its channels, the new kernels
            ``(n, n_in, kh, kw)``. Default: ``nn.Conv2d``'s Kaiming-uniform, ``U(-1/sqrt(fan_in),
            1/sqrt(fan_in))``, ``fan_in`` = the new channels' inputs x kernel areas over those
            connections, drawn from ``generator`` in the order of the connections.
        outgoing: for each connection out of ``layer`` reading all its channels, the new kernels
            ``(n_out, n, kh, kw)``, or for a dense reader the new columns ``(n_out, n * P)`` (channel
            ``j``'s positions at ``j * P ... j * P + P - 1``). Default zeros: the function is unchanged.
        bias: ``(n,)``, default zeros.

    The new channels' batch norm (if any) starts at weight 1, bias 0, running mean 0, running variance
    1; the old channels' values and statistics are untouched.

    Raises:
        GrowthError / ConfigError: not a conv layer, a missing or extra connection, a wrong shape.
    """
    target = require_conv_layer(net, layer)
    positive_int("n", n)
    ins = {name: c for name, c in net.connections.items() if c.target == layer and c.out_index is None}
    outs = {name: c for name, c in net.connections.items() if c.source == layer and c.in_index is None}
    if incoming is None:
        fan_in = sum(c.weight[0].numel() for c in ins.values())
        bound = 1 / math.sqrt(max(fan_in, 1))
        incoming = {name: (torch.rand(n, *c.shape[1:], generator=generator) * 2 - 1) * bound
                    for name, c in ins.items()}
    if outgoing is None:
        outgoing = {name: torch.zeros(_outgoing_shape(net, layer, c, n)) for name, c in outs.items()}
    for label, given, needed in (("incoming", incoming, ins), ("outgoing", outgoing, outs)):
        if set(given) != set(needed):
            raise GrowthError(f"{label} must give values for exactly the connections {sorted(needed)}, "
                              f"got {sorted(given)}")
    for name, c in ins.items():
        require_tensor(f"incoming[{name!r}]", incoming[name], (n, *c.shape[1:]))
    for name, c in outs.items():
        require_tensor(f"outgoing[{name!r}]", outgoing[name], _outgoing_shape(net, layer, c, n))
    bias = torch.zeros(n) if bias is None else require_tensor("bias", bias, (n,))

    per_channel = {name: positions(net, layer) for name, c in outs.items() if not isinstance(c, ConvConnection)}
    edit = Edit(net, optimizer, "add_channels", layer)
    old, device = target.size, target.bias.device
    new_channels = arange_with_new(old, n, device)
    for name, c in ins.items():
        w = torch.cat([c.weight.detach(), incoming[name].to(c.weight)], 0)
        resize_connection(edit, c, w, new_channels, torch.arange(c.shape[1], device=device))
    for name, c in outs.items():
        w = torch.cat([c.weight.detach(), outgoing[name].to(c.weight)], 1)
        cols = column_sources(new_channels, per_channel.get(name, 1))
        resize_connection(edit, c, w, torch.arange(c.shape[0], device=device), cols)
    edit.replace(target, "bias", torch.cat([target.bias.detach(), bias.to(target.bias)]), (new_channels,))
    edit.resize_norm(target, new_channels)
    edit.resize_grown(target, torch.arange(old, device=device), n)
    edges = sum(int(incoming[k].numel()) for k in ins) + sum(int(outgoing[k].numel()) for k in outs)
    return edit.commit(units_added=n, edges_added=edges)

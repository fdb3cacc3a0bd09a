"""Width ops on conv layers: add channels, remove channels, Net2Net's wider (split channels).

A channel is a conv layer's unit (``graph.conv``). What moves with it: its kernels in every conv
connection into the layer (rows ``(n, n_in, kh, kw)``) and out of it (columns ``(n_out, n, kh, kw)``),
the ``P = H * W`` columns of its positions in a dense connection reading the layer (the flatten
boundary, channel-major), its bias, its batch-norm weight, bias and running statistics, its ``grown``
mark. Connections reading (writing) a subset of channels keep reading (writing) that subset. Optimizer
state is carried as for dense units (``ops.optimizer_state``): old entries exactly, new ones fresh.
"""

from __future__ import annotations

import torch

from ..graph.conv import ConvConnection, positions
from ..validators import number
from .channel_add import add_channels, require_conv_layer
from .checks import split_sources
from .connection_edit import column_sources, resize_connection
from .edit import Edit, arange_with_new
from .event import GrowthEvent
from .storage import on_dense_storage
from .units import remove_units

__all__ = ["add_channels", "remove_channels", "split_channels", "require_conv_layer"]


@on_dense_storage
def remove_channels(net, layer: str, channels, *, optimizer=None) -> GrowthEvent:
    """Remove ``channels`` (indices) of conv ``layer``: their kernels in and out, their columns in
    dense readers, their bias and batch-norm entries (:func:`selfexpand.ops.remove_units` on a conv
    layer). Removing a channel whose output is 0 (or whose outgoing kernels and columns are 0) keeps
    the function.

    Raises:
        GrowthError: not a conv layer, an index out of range or repeated, or no channel left.
    """
    require_conv_layer(net, layer)
    return remove_units(net, layer, channels, optimizer=optimizer)


@on_dense_storage
def split_channels(net, layer: str, sources, *, noise: float = 0.0, optimizer=None,
                   generator: torch.Generator | None = None) -> GrowthEvent:
    """Net2Net's wider on a conv layer: append a copy of each channel of ``sources``.

    A copy takes its source's incoming kernels, bias, batch-norm weight, bias and running statistics
    (so its output equals its source's, in training mode too: the batch statistics are the same);
    each outgoing kernel (and, in a dense reader, each of the channel's position columns) is shared
    equally between a channel and its copies, plus ``noise``-scaled Gaussian noise (``noise=0``:
    the function is unchanged). As in ``split_units``, a copy's incoming kernels, bias and batch-norm
    parameters take its source's optimizer state; its outgoing entries start fresh.

    Raises:
        GrowthError / ConfigError: not a conv layer, no or out-of-range sources, a negative noise,
            or a layer written in part by a connection (the copy would miss that input).
    """
    target = require_conv_layer(net, layer)
    sources = split_sources(net, layer, target.size, sources, "channels")
    noise = number("noise", noise, 0)
    ins = {n: c for n, c in net.connections.items() if c.target == layer}
    outs = {n: c for n, c in net.connections.items() if c.source == layer and c.in_index is None}
    device, k, old = target.bias.device, sources.numel(), target.size
    sources = sources.to(device)
    index = torch.cat([torch.arange(old, device=device), sources])
    p = positions(net, layer)

    edit = Edit(net, optimizer, "split_channels", layer)
    for c in ins.values():
        w = c.weight.detach()
        resize_connection(edit, c, torch.cat([w, w[sources]], 0), index, torch.arange(c.shape[1], device=device))
    share = 1 / (torch.bincount(sources, minlength=old) + 1)  # a channel copied r times: r + 1 shares
    for c in outs.values():
        w = c.weight.detach()
        conv = isinstance(c, ConvConnection)
        w3 = w if conv else w.view(c.shape[0], old, p)  # (n_out, channels, positions or kh, kw)
        tail = (1,) * (w3.dim() - 2)
        e = (torch.randn((c.shape[0], k, *w3.shape[2:]), generator=generator, dtype=torch.float64) * noise).to(w)
        copies = w3[:, sources] * share[sources].to(w).view(1, -1, *tail) + e
        kept = (w3 * share.to(w).view(1, -1, *tail)).index_add(1, sources, -e)
        new = torch.cat([kept, copies], 1)
        cols = column_sources(arange_with_new(old, k, device), 1 if conv else p)  # fresh state, as split_units
        resize_connection(edit, c, new if conv else new.reshape(c.shape[0], -1),
                          torch.arange(c.shape[0], device=device), cols)
    edit.replace(target, "bias", target.bias.detach()[index], (index,))
    edit.resize_norm(target, index)
    edit.resize_grown(target, torch.arange(old, device=device), k)
    edges = sum(c.weight[0].numel() * k for c in ins.values()) + \
        sum((c.weight[:, 0].numel() if isinstance(c, ConvConnection) else c.shape[0] * p) * k for c in outs.values())
    return edit.commit(units_added=k, edges_added=edges, details={"sources": sources.tolist()})

"""Width ops: add units to a hidden layer, remove units from it.

Connections that read (or write) *all* units of the layer grow with it; connections that read a
subset (``in_index`` / ``out_index``) keep reading that subset. ``add_units(net, layer, n, optimizer=opt)``
with no values adds Kaiming-uniform incoming weights, zero biases and zero outgoing weights: the function
is unchanged.
"""

from __future__ import annotations

import math

import torch

from ..errors import GrowthError
from ..graph.conv import ConvLayer
from ..validators import positive_int
from .channel_add import add_channels
from .checks import require_hidden, require_tensor
from .connection_edit import resize_connection
from .edit import Edit, arange_with_new
from .event import GrowthEvent
from .storage import on_dense_storage

__all__ = ["add_units", "remove_units"]


@on_dense_storage
def add_units(net, layer: str, n: int, *, incoming: dict[str, torch.Tensor] | None = None,
              bias: torch.Tensor | None = None, outgoing: dict[str, torch.Tensor] | None = None,
              optimizer=None, generator: torch.Generator | None = None) -> GrowthEvent:
    """Append ``n`` units to hidden ``layer`` with the given initial values; they are marked
    ``grown`` (new units).

    Args:
        incoming: for each connection into ``layer`` that writes all its units, the new rows
            ``(n, n_cols)``. Default (None): Kaiming-uniform as ``nn.Linear`` draws them (``a = sqrt(5)``),
            ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, ``fan_in`` the new units' inputs (the columns of
            all those connections), drawn from ``generator`` (torch's global generator when None).
        outgoing: for each connection out of ``layer`` that reads all its units, the new columns
            ``(n_rows, n)``. Default (None): zeros, so the network's function is unchanged.
        bias: ``(n,)``, default zeros.
        generator: for the default incoming values (on the CPU).

    A dict given for ``incoming`` or ``outgoing`` must name exactly those connections. On a conv
    layer this is :func:`selfexpand.ops.add_channels` (4-D kernels, batch norm, flatten columns).

    Raises:
        GrowthError / ConfigError: unknown layer, a missing or extra connection, a wrong shape.
    """
    require_hidden(net, layer)
    if isinstance(net.layers[layer], ConvLayer):  # channels: kernels, batch norm, flatten columns
        return add_channels(net, layer, n, incoming=incoming, bias=bias, outgoing=outgoing,
                            optimizer=optimizer, generator=generator)
    positive_int("n", n)
    ins = {name: c for name, c in net.connections.items() if c.target == layer and c.out_index is None}
    outs = {name: c for name, c in net.connections.items() if c.source == layer and c.in_index is None}
    incoming = _kaiming_rows(ins, n, generator) if incoming is None else dict(incoming)
    outgoing = {name: torch.zeros(c.shape[0], n) for name, c in outs.items()} if outgoing is None \
        else dict(outgoing)
    for label, given, needed in (("incoming", incoming, ins), ("outgoing", outgoing, outs)):
        if set(given) != set(needed):
            raise GrowthError(f"{label} must give values for exactly the connections {sorted(needed)}, "
                              f"got {sorted(given)}")
    for name, c in ins.items():
        require_tensor(f"incoming[{name!r}]", incoming[name], (n, c.shape[1]))
    for name, c in outs.items():
        require_tensor(f"outgoing[{name!r}]", outgoing[name], (c.shape[0], n))
    target = net.layers[layer]
    bias = torch.zeros(n) if bias is None else require_tensor("bias", bias, (n,))

    edit = Edit(net, optimizer, "add_units", layer)
    old = target.size
    device = target.bias.device
    for name, c in ins.items():
        w = torch.cat([c.weight.detach(), incoming[name].to(c.weight)], 0)
        resize_connection(edit, c, w, arange_with_new(c.shape[0], n, device), torch.arange(c.shape[1], device=device))
    for name, c in outs.items():
        w = torch.cat([c.weight.detach(), outgoing[name].to(c.weight)], 1)
        resize_connection(edit, c, w, torch.arange(c.shape[0], device=device), arange_with_new(c.shape[1], n, device))
    edit.replace(target, "bias", torch.cat([target.bias.detach(), bias.to(target.bias)]),
                 (arange_with_new(old, n, device),))
    edit.resize_norm(target, arange_with_new(old, n, device))  # a dense batch norm: new units start fresh
    edit.resize_modulator(target, torch.arange(old, device=device), n)
    edit.resize_grown(target, torch.arange(old, device=device), n)
    edges = sum(int(incoming[k].numel()) for k in ins) + sum(int(outgoing[k].numel()) for k in outs)
    return edit.commit(units_added=n, edges_added=edges)


def _kaiming_rows(ins: dict, n: int, generator) -> dict[str, torch.Tensor]:
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` rows for each connection of ``ins`` (``nn.Linear``'s
    Kaiming-uniform, ``a = sqrt(5)``), ``fan_in`` their columns together; drawn in the order of ``ins``."""
    fan_in = sum(c.shape[1] for c in ins.values())
    bound = 1 / math.sqrt(max(fan_in, 1))
    return {name: (torch.rand(n, c.shape[1], generator=generator) * 2 - 1) * bound for name, c in ins.items()}


@on_dense_storage
def remove_units(net, layer: str, units, *, optimizer=None) -> GrowthEvent:
    """Remove ``units`` (indices) from hidden ``layer`` with their incoming and outgoing edges.

    On a conv layer the units are channels: their kernels, the columns of their positions in a dense
    reader (the flatten boundary), their bias and batch-norm entries go (``ops.remove_channels``).

    Raises:
        GrowthError: unknown layer, an index out of range or repeated, or no unit left.
    """
    require_hidden(net, layer)
    units = torch.as_tensor(units, dtype=torch.long).flatten()
    size = net.layers[layer].size
    if units.numel() == 0:
        raise GrowthError(f"units must name at least one unit of layer {layer!r}, got units=[]")
    if bool((units < 0).any() | (units >= size).any()):
        raise GrowthError(f"units must be in [0, {size}) for layer {layer!r}, got units={units.tolist()}")
    if units.unique().numel() != units.numel():
        raise GrowthError(f"units must not repeat, got units={units.tolist()}")
    if units.numel() >= size:
        raise GrowthError(f"removing units={units.tolist()} would leave layer {layer!r} empty")
    keep = torch.ones(size, dtype=torch.bool)
    keep[units] = False
    edit = Edit(net, optimizer, "remove_units", layer)
    edges = drop_units(edit, net, layer, keep.to(net.layers[layer].bias.device))
    return edit.commit(units_removed=int(units.numel()), edges_removed=edges)


def drop_units(edit: Edit, net, layer: str, keep: torch.Tensor) -> int:
    """Inside ``edit``: keep only units ``keep`` (bool) of ``layer``; returns live edges removed.

    Connections left without rows or columns are removed from the graph.
    """
    target = net.layers[layer]
    device = keep.device
    kept = torch.nonzero(keep).flatten()
    new_pos = torch.full((keep.numel(),), -1, dtype=torch.long, device=device)
    new_pos[kept] = torch.arange(kept.numel(), device=device)
    removed_edges = 0
    for name in list(net.connections):
        c = net.connections[name]
        if c.target != layer and c.source != layer:
            continue
        rows = torch.arange(c.shape[0], device=device)
        cols = torch.arange(c.shape[1], device=device)
        in_index, out_index = c.in_index, c.out_index
        if c.target == layer:
            row_keep = keep[c.target_units(keep.numel())]
            rows = rows[row_keep]
            if out_index is not None:
                out_index = new_pos[out_index[row_keep]]
        if c.source == layer:
            col_keep = keep[c.source_units(keep.numel())]
            if in_index is not None:
                in_index = new_pos[in_index[col_keep]]
            if c.weight.dim() == 2 and c.shape[1] != col_keep.numel():  # flatten boundary: a column per position
                col_keep = col_keep.repeat_interleave(c.shape[1] // col_keep.numel())
            cols = cols[col_keep]
        live = c.live()
        removed_edges += int(live.sum()) - int(live[rows][:, cols].sum())
        if rows.numel() == 0 or cols.numel() == 0:
            edit.remove_param(c.weight)
            del net.connections[name]
            continue
        resize_connection(edit, c, c.weight.detach()[rows][:, cols], rows, cols,
                          in_index=in_index, out_index=out_index)
    edit.replace(target, "bias", target.bias.detach()[kept], (kept,))
    edit.resize_norm(target, kept)
    edit.resize_modulator(target, kept, 0)
    edit.resize_grown(target, kept, 0)
    return removed_edges

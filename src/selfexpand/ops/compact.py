"""Compaction: stored size follows live size, the function unchanged.

Repeated until nothing changes:
1. each connection drops rows and columns with no live edge (they become ``out_index`` /
   ``in_index`` subsets), its mask when every stored entry is live, and itself when nothing is live;
2. each hidden unit read by no live edge is removed; a hidden unit written by no live edge outputs the
   constant ``activation(bias) * factor``, which is folded into the biases of the units it feeds
   before it is removed; a hidden layer left with no unit is removed.
"""

from __future__ import annotations

import torch

from .connection_edit import resize_connection
from .edit import Edit
from .event import GrowthEvent
from .storage import on_dense_storage
from .units import drop_units

__all__ = ["compact"]


@on_dense_storage
def compact(net, *, optimizer=None) -> GrowthEvent:
    """Compact ``net`` in place (see the module docstring)."""
    edit = Edit(net, optimizer, "compact", "graph")
    units_removed = edges_removed = 0
    changed = True
    while changed:
        changed = _compact_connections(edit, net)
        for layer in list(net.hidden_layers()):
            removed, edges = _compact_units(edit, net, layer)
            units_removed += removed
            edges_removed += edges
            changed = changed or removed > 0
    return edit.commit(units_removed=units_removed, edges_removed=edges_removed)


def _compact_connections(edit: Edit, net) -> bool:
    changed = False
    for name in list(net.connections):
        c = net.connections[name]
        if c.mask is None:
            continue
        live = c.live()
        if not bool(live.any()):
            edit.remove_param(c.weight)
            del net.connections[name]
            changed = True
            continue
        rows = torch.nonzero(live.any(1)).flatten()
        cols = torch.nonzero(live.any(0)).flatten()
        if rows.numel() < c.shape[0] or cols.numel() < c.shape[1]:
            n_src, n_tgt = net.layers[c.source].size, net.layers[c.target].size
            all_cols, all_rows = cols.numel() == c.shape[1], rows.numel() == c.shape[0]
            resize_connection(edit, c, c.weight.detach()[rows][:, cols], rows, cols,
                              in_index=c.in_index if all_cols else c.source_units(n_src)[cols],
                              out_index=c.out_index if all_rows else c.target_units(n_tgt)[rows])
            changed = True
        if bool(c.mask.bool().all()):
            c.mask = None
            changed = True
    return changed


def _compact_units(edit: Edit, net, layer: str) -> tuple[int, int]:
    size = net.layers[layer].size
    device = net.layers[layer].bias.device
    has_out = torch.zeros(size, dtype=torch.bool, device=device)
    has_in = torch.zeros(size, dtype=torch.bool, device=device)
    for c in net.connections.values():
        if c.source == layer:
            has_out[c.source_units(size)[c.live().any(0)]] = True
        if c.target == layer:
            has_in[c.target_units(size)[c.live().any(1)]] = True
    constant = has_out & ~has_in
    if bool(constant.any()):
        _fold_constants(net, layer, constant)
    keep = has_out & has_in
    if bool(keep.all()):
        return 0, 0
    if not bool(keep.any()):
        return size, _remove_layer(edit, net, layer)
    return int((~keep).sum()), drop_units(edit, net, layer, keep)


@torch.no_grad()
def _fold_constants(net, layer: str, constant: torch.Tensor) -> None:
    """Add the outputs of units with no live input (constants) to the biases of what they feed."""
    source = net.layers[layer]
    value = source.activation(source.bias.detach())
    factor = source.factor()
    if factor is not None:
        value = value * factor.detach()
    value = torch.where(constant, value, torch.zeros_like(value))
    for c in net.connections.values():
        if c.source != layer:
            continue
        contribution = c.effective_weight().detach() @ value[c.source_units(source.size)]
        target = net.layers[c.target]
        target.bias.index_add_(0, c.target_units(target.size), contribution)


def _remove_layer(edit: Edit, net, layer: str) -> int:
    edges = 0
    for name in list(net.connections):
        c = net.connections[name]
        if layer in (c.source, c.target):
            edges += int(c.live().sum())
            edit.remove_param(c.weight)
            del net.connections[name]
    target = net.layers[layer]
    for param in target.parameters():
        edit.remove_param(param)
    del net.layers[layer]
    net.order.remove(layer)
    return edges

"""The counts of DESIGN.md, one definition each.

- ``params``: live weights + biases of live units + learnable activation coefficients. A unit whose
  modulator factor is 0 is not live, nor are the weights into or out of it. Every target uses this.
- ``weights_active``: live weights only, eps edges included (the edge-expansion reference's count).
- ``stored_params``: what memory holds for the graph: every weight entry (masked included; a sparse
  connection stores only its live edges, ``graph.sparse``), every bias, every activation coefficient.
- ``front_params``: the fixed front's parameters. ``control_params``: modulator parameters.

Conv layers (``graph.conv``): a channel is a unit; every entry of a kernel ``(n_out, n_in, kh, kw)`` is
a weight; a dense connection reading a feature map has one column per channel and position. A batch
norm's affine weight and bias (a conv layer's or a dense layer's) count in ``params`` and
``stored_params`` (its running statistics are buffers, not parameters).
"""

from __future__ import annotations

import torch

__all__ = ["count_params"]


def _numel(module) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


@torch.no_grad()
def count_params(net) -> dict[str, int]:
    """All five counts of ``net`` as plain ints."""
    # the input layer holds no tensor (its mask is made on the CPU): bring every mask to the graph's device
    device = net.layers[net.output_name].bias.device
    live = {name: layer.live_units().to(device) for name, layer in net.layers.items()}
    weights_active = 0
    stored = 0
    for conn in net.connections.values():
        rows = live[conn.target][conn.target_units(net.layers[conn.target].size)]
        cols = live[conn.source][conn.source_units(net.layers[conn.source].size)]
        per_entry = 1  # a kernel's area (a conv connection)
        if conn.weight.dim() == 4:
            per_entry = conn.weight.shape[2] * conn.weight.shape[3]
        elif conn.shape[1] != cols.numel():  # the flatten boundary: a column per channel and position
            cols = cols.repeat_interleave(conn.shape[1] // max(cols.numel(), 1))
        if conn.full:
            weights_active += int(rows.sum()) * int(cols.sum()) * per_entry
        else:
            extra = (1,) * (conn.weight.dim() - 2)
            live_entries = conn.live() & rows.view(-1, 1, *extra) & cols.view(1, -1, *extra)
            weights_active += int(live_entries.sum())
        stored += conn.weight.numel()
    biases = activations = 0
    for name, layer in net.layers.items():
        if layer.is_input:
            continue
        biases += int(live[name].sum())
        stored += layer.bias.numel()
        activations += _numel(layer.activation)
        norm = getattr(layer, "norm", None)
        if norm is not None:  # a batch norm: affine weight and bias per unit (none when not affine)
            biases += (_numel(norm) // max(norm.num_features, 1)) * int(live[name].sum())
            stored += _numel(norm)
    stored += activations
    return {
        "params": weights_active + biases + activations,
        "weights_active": weights_active,
        "stored_params": stored,
        "front_params": _numel(net.front),
        "control_params": sum(_numel(layer.modulator) for layer in net.layers.values()),
    }

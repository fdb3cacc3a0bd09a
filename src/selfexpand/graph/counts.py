"""The counts of DESIGN.md, one definition each.

- ``params``: live weights + biases of live units + learnable activation coefficients. A unit whose
  modulator factor is 0 is not live, nor are the weights into or out of it. Every target uses this.
- ``weights_active``: live weights only, eps edges included (the edge-expansion reference's count).
- ``stored_params``: what memory holds for the graph: every weight entry (masked included), every bias,
  every activation coefficient.
- ``front_params``: the fixed front's parameters. ``control_params``: modulator parameters.
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
        if conn.mask is None:
            weights_active += int(rows.sum()) * int(cols.sum())
        else:
            weights_active += int((conn.live() & rows[:, None] & cols[None, :]).sum())
        stored += conn.weight.numel()
    biases = activations = 0
    for name, layer in net.layers.items():
        if layer.is_input:
            continue
        biases += int(live[name].sum())
        stored += layer.bias.numel()
        activations += _numel(layer.activation)
    stored += activations
    return {
        "params": weights_active + biases + activations,
        "weights_active": weights_active,
        "stored_params": stored,
        "front_params": _numel(net.front),
        "control_params": sum(_numel(layer.modulator) for layer in net.layers.values()),
    }

"""Initial values for new units that several initializers share (PyTorch's ``nn.Linear`` rule).

Incoming weights and biases are Kaiming-uniform with ``a = sqrt(5)``:
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, ``fan_in`` = the columns of the layer's incoming
connections; random outgoing weights are drawn the same way for the connection they join
(``fan_in`` = its columns after growth).

A conv layer's new channels (``add_units`` adds them with ``ops.add_channels``) follow ``nn.Conv2d``'s
rule, the same bound with ``fan_in`` = input channels x kernel area: incoming kernels ``(n, n_in, kh, kw)``
and bias with the layer's ``fan_in``; random outgoing kernels ``(n_out, n, kh, kw)`` with the joined
connection's ``fan_in`` after growth, and for a dense reader (the flatten boundary) ``(n_out, n * P)``
columns with ``fan_in`` = its columns after growth (``P`` positions per channel).
"""

from __future__ import annotations

import math

import torch

from ..graph.conv import ConvConnection, ConvLayer, positions

__all__ = ["kaiming_uniform", "new_unit_values"]


def kaiming_uniform(shape: tuple[int, ...], fan_in: int, gen) -> torch.Tensor:
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``: ``kaiming_uniform_(a=sqrt(5))`` and its bias rule."""
    bound = 1 / math.sqrt(max(fan_in, 1))
    return ((torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound).float()


def _new_channel_values(net, layer: str, n: int, gen, *, outgoing: str) -> dict:
    """:func:`new_unit_values` for a conv layer (the module docstring's rule)."""
    ins = {k: c for k, c in net.connections.items() if c.target == layer and c.out_index is None}
    outs = {k: c for k, c in net.connections.items() if c.source == layer and c.in_index is None}
    fan_in = sum(c.weight[0].numel() for c in ins.values())
    values = {
        "incoming": {k: kaiming_uniform((n, *c.shape[1:]), fan_in, gen) for k, c in ins.items()},
        "bias": kaiming_uniform((n,), fan_in, gen),
        "outgoing": {},
    }
    p = positions(net, layer)
    for k, c in outs.items():
        if isinstance(c, ConvConnection):
            shape, fan = (c.shape[0], n, *c.shape[2:]), (c.shape[1] + n) * c.weight[0, 0].numel()
        else:
            shape, fan = (c.shape[0], n * p), c.shape[1] + n * p
        values["outgoing"][k] = torch.zeros(shape) if outgoing == "zero" else kaiming_uniform(shape, fan, gen)
    return values


def new_unit_values(net, layer: str, n: int, gen, *, outgoing: str) -> dict:
    """``add_units`` keyword arguments for ``n`` units of ``layer``: Kaiming incoming and bias,
    ``outgoing`` = ``"random"`` (Kaiming for the joined connection) or ``"zero"``; for a conv layer's
    channels, ``nn.Conv2d``'s rule (module docstring)."""
    if isinstance(net.layers[layer], ConvLayer):
        return _new_channel_values(net, layer, n, gen, outgoing=outgoing)
    ins = {k: c for k, c in net.connections.items() if c.target == layer and c.out_index is None}
    outs = {k: c for k, c in net.connections.items() if c.source == layer and c.in_index is None}
    fan_in = sum(c.shape[1] for c in ins.values())
    values = {
        "incoming": {k: kaiming_uniform((n, c.shape[1]), fan_in, gen) for k, c in ins.items()},
        "bias": kaiming_uniform((n,), fan_in, gen),
    }
    if outgoing == "zero":
        values["outgoing"] = {k: torch.zeros(c.shape[0], n) for k, c in outs.items()}
    else:
        values["outgoing"] = {k: kaiming_uniform((c.shape[0], n), c.shape[1] + n, gen) for k, c in outs.items()}
    return values

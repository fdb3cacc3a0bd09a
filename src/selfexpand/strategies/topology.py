"""Shape questions several strategies ask of a graph: which layers can grow, what a unit costs, the
chain around a layer, the order to grow sites in, whether a split needs signed units.

Helpers only: nothing here changes the graph.
"""

from __future__ import annotations

from torch import nn

from ..errors import GrowthError
from ..graph.conv import ConvConnection, ConvLayer, positions

__all__ = ["growable_layers", "unit_cost", "chain_connections", "layers_last_first", "resolve_signed"]

_NON_NEGATIVE = (nn.ReLU, nn.Sigmoid, nn.Softplus)


def growable_layers(net) -> list[str]:
    """Hidden layers with at least one incoming connection writing all their units and one outgoing
    connection reading all of them (where new units get inputs and can be read)."""
    out = []
    for name in net.hidden_layers():
        ins = [c for c in net.incoming(name) if c.out_index is None]
        outs = [c for c in net.outgoing(name) if c.in_index is None]
        if ins and outs:
            out.append(name)
    return out


def unit_cost(net, layer: str) -> int:
    """``params`` one new unit of ``layer`` adds: its incoming weights, its bias, its outgoing weights;
    for a conv layer's channel: its incoming kernels, bias, batch-norm weight and bias, and its outgoing
    kernels or its positions' columns in a dense reader."""
    target = net.layers[layer]
    if not isinstance(target, ConvLayer):
        fan_in = sum(c.shape[1] for c in net.incoming(layer) if c.out_index is None)
        fan_out = sum(c.shape[0] for c in net.outgoing(layer) if c.in_index is None)
        return fan_in + 1 + fan_out
    cost = 1 + (2 if target.norm is not None else 0)
    cost += sum(c.weight[0].numel() for c in net.incoming(layer) if c.out_index is None)
    for c in net.outgoing(layer):
        if c.in_index is None:
            cost += c.weight[:, 0].numel() if isinstance(c, ConvConnection) else c.shape[0] * positions(net, layer)
    return cost


def chain_connections(net, layer: str, *, who: str = "this strategy") -> tuple[str, str]:
    """The one full connection into hidden ``layer`` and the one out of it.

    Raises:
        GrowthError: ``layer`` has more or fewer, or one reads or writes an index subset.
    """
    ins = [n for n, c in net.connections.items() if c.target == layer]
    outs = [n for n, c in net.connections.items() if c.source == layer]
    full = all(net.connections[n].in_index is None and net.connections[n].out_index is None for n in ins + outs)
    if len(ins) != 1 or len(outs) != 1 or not full:
        raise GrowthError(f"{who} needs layer {layer!r} to have one full connection in and one out, "
                          f"got in {ins}, out {outs}")
    return ins[0], outs[0]


def layers_last_first(net, sites: list) -> list:
    """``sites`` with units to add, the layer nearest the output first."""
    return sorted((s for s in sites if s.n_units > 0), key=lambda s: -net.order.index(s.layer))


def _layer_non_negative(ctx, layer: str) -> bool:
    model = ctx.model
    if layer == model.input_name:
        return model.front is None and bool(ctx.data.x_train.min() >= 0)
    target = model.layers[layer]
    return isinstance(target.activation, _NON_NEGATIVE) and target.modulator is None


def resolve_signed(signed, ctx, edges: dict | None = None) -> bool:
    """``signed`` as a bool: ``"auto"`` is True when any parent of ``edges`` (default: any layer
    feeding the output) can be negative: the input when the training data has negative entries, a
    hidden layer whose activation is not non-negative (ReLU, sigmoid, softplus are)."""
    if signed != "auto":
        return bool(signed)
    model = ctx.model
    names = list(edges) if edges else model.connection_names(target=model.output_name)
    return not all(_layer_non_negative(ctx, model.connections[n].source) for n in names)

"""Selectors that add a fixed number of units without looking at the data (the baselines' WHERE).

``AllLayersSelector(units)``: every growable hidden layer gets ``units`` new units at each growth.
``RoundRobinSelector(units)``: one growable hidden layer per growth, in turn from the input side.
Both trim to the parameter budget (``--max-params``): a layer gets only as many units as still fit.

Conv layers (a conv start, ``conv=[...]``): a conv layer's units are its channels. It gets
``ceil(channel_fraction * its current channels)`` new channels at each growth (default 0.25: a block
of 4 channels gets 1, one of 64 gets 16, so every block grows at the same relative rate, as the
dense rule's fixed ``units`` would not across widths 4 to 64), never past its cap ``max_channels[i]``
(``i``: the conv layer's place among the conv layers from the input; ``[]``: no cap). Dense hidden
layers keep the ``units`` rule. A channel's cost for the budget counts its kernels in and out, its
bias, its batch norm's weight and bias, and a dense reader's ``positions`` columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...graph.conv import ConvConnection, ConvLayer, positions
from ...settings import setting
from ...spaces import Int
from ...validators import Integer, IntegerList, Number
from ..base import Selector, Site
from ..registry import register_part
from ..topology import growable_layers, unit_cost

__all__ = ["AllLayersSelector", "RoundRobinSelector", "channel_room"]


_CHANNEL_FRACTION = setting(Number(0, low_open=True), 0.25, "new channels of a conv layer at each growth step, as "
                                                             "a fraction of its channels (rounded up)")
_MAX_CHANNELS = setting(IntegerList(1), [], "the most channels of each conv layer, from the input ([]: no cap)")


def _fit(ctx, layer: str, units: int) -> int:
    """How many of ``units`` new units of ``layer`` fit in the context's parameter budget."""
    left = ctx.params_left()
    return units if math.isinf(left) else max(0, min(units, int(left // unit_cost(ctx.model, layer))))


def channel_room(net, layer: str, caps: list) -> float:
    """How many more channels conv ``layer`` may get under ``max_channels`` ``caps`` (``i``-th: the
    ``i``-th conv layer from the input); ``inf`` for a dense layer or one without a cap."""
    if not isinstance(net.layers[layer], ConvLayer):
        return math.inf
    index = [name for name in net.order if isinstance(net.layers[name], ConvLayer)].index(layer)
    return max(0, caps[index] - net.layers[layer].size) if index < len(caps) else math.inf


def _amount(net, layer: str, units: int, fraction: float, caps: list) -> int:
    """New units of ``layer`` at one growth: ``units`` for a dense layer; for a conv layer
    ``ceil(fraction * channels)`` up to its cap."""
    target = net.layers[layer]
    if not isinstance(target, ConvLayer):
        return units
    return int(min(math.ceil(fraction * target.size - 1e-9), channel_room(net, layer, caps)))


@register_part
@dataclass(eq=False)
class AllLayersSelector(Selector):
    """``units`` new units in every growable hidden layer."""

    name = "all-layers"
    grows_channels = True
    units: int = setting(Integer(1), 6, "new units per layer at each growth step",
                         space=Int(1, 32, log=True))
    channel_fraction: float = _CHANNEL_FRACTION
    max_channels: list = _MAX_CHANNELS

    def select(self, ctx) -> list[Site]:
        sites = []
        for layer in growable_layers(ctx.model):
            n = _fit(ctx, layer, _amount(ctx.model, layer, self.units, self.channel_fraction, self.max_channels))
            if n:
                sites.append(Site(layer=layer, n_units=n))
        return _within_budget(ctx, sites)


@register_part
@dataclass(eq=False)
class RoundRobinSelector(Selector):
    """``units`` new units in one growable hidden layer per growth, the layers in turn."""

    name = "round-robin"
    grows_channels = True
    units: int = setting(Integer(1), 6, "new units in the layer whose turn it is",
                         space=Int(1, 32, log=True))
    channel_fraction: float = _CHANNEL_FRACTION
    max_channels: list = _MAX_CHANNELS

    def setup(self) -> None:
        self.next = 0

    def select(self, ctx) -> list[Site]:
        layers = growable_layers(ctx.model)
        if not layers:
            return []
        layer = layers[self.next % len(layers)]
        self.next += 1
        n = _fit(ctx, layer, _amount(ctx.model, layer, self.units, self.channel_fraction, self.max_channels))
        return [Site(layer=layer, n_units=n)] if n else []

    def state_dict(self) -> dict:
        return {"next": self.next}

    def load_state_dict(self, state: dict) -> None:
        self.next = int(state.get("next", 0))


def _within_budget(ctx, sites: list[Site]) -> list[Site]:
    """Drop units from the last sites until the whole step (cross weights between adjacent new
    units included: a kernel's area between new channels, a dense reader's positions) fits the budget."""
    left = ctx.params_left()
    if math.isinf(left):
        return sites
    net = ctx.model
    while sites:
        cost = sum(s.n_units * unit_cost(net, s.layer) for s in sites)
        for a, b in zip(sites, sites[1:]):
            joins = [c for c in net.connections.values() if c.source == a.layer and c.target == b.layer]
            if joins:
                cost += a.n_units * b.n_units * max(
                    c.weight[0, 0].numel() if isinstance(c, ConvConnection) else positions(net, a.layer)
                    for c in joins)
        if cost <= left:
            return sites
        sites[-1].n_units -= 1
        if sites[-1].n_units == 0:
            sites.pop()
    return sites

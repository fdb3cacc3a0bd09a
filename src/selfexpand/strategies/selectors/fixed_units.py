"""Selectors that add a fixed number of units without looking at the data (the baselines' WHERE).

``AllLayersSelector(units)``: every growable hidden layer gets ``units`` new units at each growth.
``RoundRobinSelector(units)``: one growable hidden layer per growth, in turn from the input side.
Both trim to the parameter budget (``--max-params``): a layer gets only as many units as still fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...settings import setting
from ...validators import Integer
from ..base import Selector, Site
from ..registry import register_part
from ..topology import growable_layers, unit_cost

__all__ = ["AllLayersSelector", "RoundRobinSelector"]


def _fit(ctx, layer: str, units: int) -> int:
    """How many of ``units`` new units of ``layer`` fit in the context's parameter budget."""
    left = ctx.params_left()
    return units if math.isinf(left) else max(0, min(units, int(left // unit_cost(ctx.model, layer))))


@register_part
@dataclass(eq=False)
class AllLayersSelector(Selector):
    """``units`` new units in every growable hidden layer."""

    name = "all-layers"
    units: int = setting(Integer(1), 6, "new units per layer at each growth step")

    def select(self, ctx) -> list[Site]:
        sites = []
        for layer in growable_layers(ctx.model):
            n = _fit(ctx, layer, self.units)
            if n:
                sites.append(Site(layer=layer, n_units=n))
        return _within_budget(ctx, sites)


@register_part
@dataclass(eq=False)
class RoundRobinSelector(Selector):
    """``units`` new units in one growable hidden layer per growth, the layers in turn."""

    name = "round-robin"
    units: int = setting(Integer(1), 6, "new units in the layer whose turn it is")

    def setup(self) -> None:
        self.next = 0

    def select(self, ctx) -> list[Site]:
        layers = growable_layers(ctx.model)
        if not layers:
            return []
        layer = layers[self.next % len(layers)]
        self.next += 1
        n = _fit(ctx, layer, self.units)
        return [Site(layer=layer, n_units=n)] if n else []

    def state_dict(self) -> dict:
        return {"next": self.next}

    def load_state_dict(self, state: dict) -> None:
        self.next = int(state.get("next", 0))


def _within_budget(ctx, sites: list[Site]) -> list[Site]:
    """Drop units from the last sites until the whole step (cross weights between adjacent new
    units included) fits the budget."""
    left = ctx.params_left()
    if math.isinf(left):
        return sites
    net = ctx.model
    while sites:
        cost = sum(s.n_units * unit_cost(net, s.layer) for s in sites)
        for a, b in zip(sites, sites[1:]):
            cost += a.n_units * b.n_units if any(c.source == a.layer and c.target == b.layer
                                                 for c in net.connections.values()) else 0
        if cost <= left:
            return sites
        sites[-1].n_units -= 1
        if sites[-1].n_units == 0:
            sites.pop()
    return sites

"""New units with random incoming weights and random, or zero, outgoing weights (baselines, SVoD + random
/ zero in the SWE paper; ALGORITHMS.md §5).

Incoming weights and biases are Kaiming-uniform with ``a = sqrt(5)``, PyTorch's ``nn.Linear`` default:
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, ``fan_in`` = the columns of the layer's incoming connections.
:class:`RandomUnitsInitializer` draws outgoing weights the same way for the connection they join
(``fan_in`` = its columns after growth); :class:`ZeroUnitsInitializer` sets them to 0, which keeps the
network's function unchanged.
"""

from __future__ import annotations

import math

import torch

from ...ops import add_units
from ..base import Initializer, Site

__all__ = ["RandomUnitsInitializer", "ZeroUnitsInitializer", "kaiming_uniform", "new_unit_values",
           "layers_last_first"]


def kaiming_uniform(shape: tuple[int, ...], fan_in: int, gen) -> torch.Tensor:
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``: ``kaiming_uniform_(a=sqrt(5))`` and its bias rule."""
    bound = 1 / math.sqrt(max(fan_in, 1))
    return ((torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound).float()


def new_unit_values(net, layer: str, n: int, gen, *, outgoing: str) -> dict:
    """``add_units`` keyword arguments for ``n`` units of ``layer``: Kaiming incoming and bias,
    ``outgoing`` = ``"random"`` (Kaiming for the joined connection) or ``"zero"``."""
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


def layers_last_first(net, sites: list[Site]) -> list[Site]:
    """``sites`` with units to add, the layer nearest the output first."""
    return sorted((s for s in sites if s.n_units > 0), key=lambda s: -net.order.index(s.layer))


class _NewUnitsInitializer(Initializer):
    outgoing = "random"

    def grow(self, ctx, sites: list[Site]) -> list:
        net, events = ctx.model, []
        for site in layers_last_first(net, sites):
            values = new_unit_values(net, site.layer, site.n_units, ctx.generator, outgoing=self.outgoing)
            events.append(add_units(net, site.layer, site.n_units, optimizer=ctx.optimizer, **values))
        return events


class RandomUnitsInitializer(_NewUnitsInitializer):
    """New units with Kaiming incoming weights and Kaiming (random) outgoing weights."""

    outgoing = "random"


class ZeroUnitsInitializer(_NewUnitsInitializer):
    """New units with Kaiming incoming weights and zero outgoing weights (function preserved)."""

    outgoing = "zero"

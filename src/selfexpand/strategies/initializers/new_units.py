"""New units with random incoming weights and random, or zero, outgoing weights (baselines, SVoD + random
/ zero in the SWE paper; ALGORITHMS.md §5).

Incoming weights and biases are Kaiming-uniform, PyTorch's ``nn.Linear`` default
(:mod:`selfexpand.strategies.unit_values`). :class:`RandomUnitsInitializer` draws outgoing weights the
same way for the connection they join; :class:`ZeroUnitsInitializer` sets them to 0, which keeps the
network's function unchanged.

Both grow conv layers too (``grows_channels``): ``add_units`` on a conv layer adds channels
(``ops.add_channels``) with ``nn.Conv2d``'s Kaiming rule for the incoming kernels and bias, and random
or zero outgoing kernels (or a dense reader's columns); see :mod:`selfexpand.strategies.unit_values`.
"""

from __future__ import annotations

from typing import ClassVar

from ...ops import add_units
from ..base import Initializer, Site
from ..registry import register_part
from ..topology import layers_last_first
from ..unit_values import new_unit_values

__all__ = ["RandomUnitsInitializer", "ZeroUnitsInitializer"]


class _NewUnitsInitializer(Initializer):
    outgoing: ClassVar[str] = "random"
    grows_channels: ClassVar[bool] = True

    def grow(self, ctx, sites: list[Site]) -> list:
        net, events = ctx.model, []
        for site in layers_last_first(net, sites):
            values = new_unit_values(net, site.layer, site.n_units, ctx.generator, outgoing=self.outgoing)
            events.append(add_units(net, site.layer, site.n_units, optimizer=ctx.optimizer, **values))
        return events


@register_part
class RandomUnitsInitializer(_NewUnitsInitializer):
    """New units with Kaiming incoming weights and Kaiming (random) outgoing weights."""

    name = "random"
    outgoing = "random"


@register_part
class ZeroUnitsInitializer(_NewUnitsInitializer):
    """New units with Kaiming incoming weights and zero outgoing weights (function preserved)."""

    name = "zero"
    outgoing = "zero"

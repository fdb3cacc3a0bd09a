"""Net2Net (Chen et al. 2016; ALGORITHMS.md §5): function-preserving width and depth.

:class:`Net2NetWiderInitializer` adds each site's units as copies of existing units of the layer,
drawn uniformly at random from the run's generator, their outgoing weights split with the source
(``ops.split_units``, antisymmetric noise of scale ``noise``). :class:`Net2NetDeeperInitializer`
inserts an identity-initialised layer right after each site's layer (``ops.insert_identity_layer``
on the connection it feeds), in the signed two-unit form when the layer's output can be negative.
Both keep the network's outputs unchanged (up to float rounding).
"""

from __future__ import annotations

import torch

from ...errors import ConfigError, GrowthError
from ...ops import insert_identity_layer
from ...ops.split_units import split_units
from ..base import Initializer, Site
from .edge_split import resolve_signed
from .new_units import layers_last_first

__all__ = ["Net2NetWiderInitializer", "Net2NetDeeperInitializer"]


class Net2NetWiderInitializer(Initializer):
    """New units as noisy-split copies of random existing units of the same layer.

    Args:
        noise: standard deviation of the antisymmetric noise on the split outgoing weights.
    """

    def __init__(self, noise: float = 1e-3):
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
            raise ConfigError(f"noise must be a number >= 0, got noise={noise!r}")
        self.noise = float(noise)

    def grow(self, ctx, sites: list[Site]) -> list:
        net, events = ctx.model, []
        for site in layers_last_first(net, sites):
            size = net.layers[site.layer].size
            sources = torch.randint(0, size, (site.n_units,), generator=ctx.generator)
            events.append(split_units(net, site.layer, sources, noise=self.noise, generator=ctx.generator,
                                      optimizer=ctx.optimizer))
        return events


class Net2NetDeeperInitializer(Initializer):
    """An identity layer after each site's layer (``n_units`` is ignored: the layer's width follows
    from the identity). ``signed``: ``"auto"`` (two units per input where the output can be
    negative), True or False."""

    def __init__(self, signed="auto", activation: str = "relu"):
        if signed not in ("auto", True, False):
            raise ConfigError(f"signed must be 'auto', True or False, got signed={signed!r}")
        self.signed, self.activation = signed, activation

    def grow(self, ctx, sites: list[Site]) -> list:
        net, events = ctx.model, []
        for site in sites:
            outgoing = net.connection_names(source=site.layer)
            if len(outgoing) != 1:
                raise GrowthError(f"a deeper step needs layer {site.layer!r} to feed exactly one connection, "
                                  f"got {outgoing}")
            signed = resolve_signed(self.signed, ctx, {outgoing[0]: None})
            events.append(insert_identity_layer(net, outgoing[0], signed=signed, activation=self.activation,
                                                optimizer=ctx.optimizer))
        return events

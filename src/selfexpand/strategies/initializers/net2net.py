"""Net2Net (Chen et al. 2016; ALGORITHMS.md §5): function-preserving width and depth.

:class:`Net2NetWiderInitializer` adds each site's units as copies of existing units of the layer,
drawn uniformly at random from the run's generator, their outgoing weights split with the source
(``ops.split_units``, antisymmetric noise of scale ``noise``). :class:`Net2NetDeeperInitializer`
inserts an identity-initialised layer right after each site's layer (``ops.insert_identity_layer``
on the connection it feeds), in the signed two-unit form when the layer's output can be negative.
Both keep the network's outputs unchanged (up to float rounding).

The wider one grows conv layers too (``grows_channels``): ``split_units`` on a conv layer copies
channels (``ops.split_channels``: kernels in, bias, batch-norm parameters and running statistics; the
outgoing kernels or a dense reader's position columns shared), exact in eval and training mode alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import GrowthError
from ...graph.activations import make_activation
from ...ops import insert_identity_layer, split_units
from ...settings import setting
from ...spaces import LogFloat
from ...validators import Choice, Number, Text
from ..base import Initializer, Site
from ..registry import register_part
from ..topology import layers_last_first, resolve_signed

__all__ = ["Net2NetWiderInitializer", "Net2NetDeeperInitializer"]


@register_part
@dataclass(eq=False)
class Net2NetWiderInitializer(Initializer):
    """New units as noisy-split copies of random existing units of the same layer."""

    name = "net2net"
    grows_channels = True
    noise: float = setting(Number(0), 1e-3, "standard deviation of the antisymmetric noise on split outgoing weights",
                           space=LogFloat(1e-5, 0.1))

    def grow(self, ctx, sites: list[Site]) -> list:
        net, events = ctx.model, []
        for site in layers_last_first(net, sites):
            size = net.layers[site.layer].size
            sources = torch.randint(0, size, (site.n_units,), generator=ctx.generator)
            events.append(split_units(net, site.layer, sources, noise=self.noise, generator=ctx.generator,
                                      optimizer=ctx.optimizer))
        return events


@register_part
@dataclass(eq=False)
class Net2NetDeeperInitializer(Initializer):
    """An identity layer after each site's layer (``n_units`` is ignored: the layer's width follows
    from the identity)."""

    name = "net2net-deeper"
    signed: object = setting(Choice("auto", True, False), "auto",
                             "two units per input, exact where the layer's output can be negative (auto: where it can)")
    layer_activation: str = setting(Text(), "relu", "activation of the inserted layer")

    def setup(self) -> None:
        make_activation(self.layer_activation)  # an unknown name fails here, before any growth

    def grow(self, ctx, sites: list[Site]) -> list:
        net, events = ctx.model, []
        for site in sites:
            outgoing = net.connection_names(source=site.layer)
            if len(outgoing) != 1:
                raise GrowthError(f"a deeper step needs layer {site.layer!r} to feed exactly one connection, "
                                  f"got {outgoing}")
            signed = resolve_signed(self.signed, ctx, {outgoing[0]: None})
            events.append(insert_identity_layer(net, outgoing[0], signed=signed, activation=self.layer_activation,
                                                optimizer=ctx.optimizer))
        return events

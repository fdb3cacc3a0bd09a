"""Fresh initial values for an existing architecture (the static twin of a grown run)."""

from __future__ import annotations

import math

import torch

__all__ = ["reinitialize"]


@torch.no_grad()
def reinitialize(net, seed: int) -> None:
    """Draw every weight and bias anew like ``nn.Linear``: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``,
    ``fan_in`` being the number of live edges into the layer (at least 1). Masks stay (they are
    part of the architecture); provisional marks are cleared; the front keeps its own values."""
    gen = torch.Generator().manual_seed(seed)
    for name in net.order[1:]:
        incoming = net.incoming(name)
        fan_in = max(1, sum(int(c.live().sum()) for c in incoming) // max(1, net.layers[name].size))
        bound = 1 / math.sqrt(fan_in)
        for c in incoming:
            w = (torch.rand(c.shape, generator=gen) * 2 - 1) * bound
            c.weight.copy_(w.to(c.weight) * (1 if c.mask is None else c.mask))
            c.provisional = None
        layer = net.layers[name]
        layer.bias.copy_(((torch.rand(layer.size, generator=gen) * 2 - 1) * bound).to(layer.bias))
    net.invalidate()

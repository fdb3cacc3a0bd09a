"""Fresh initial values for an existing architecture (the static twin of a grown run)."""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn

__all__ = ["reinitialize", "reset_front"]


@torch.no_grad()
def reinitialize(net, seed: int) -> None:
    """Draw every value anew from ``seed``: a static twin is freshly initialised.

    Graph weights and biases are drawn like ``nn.Linear``: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``,
    ``fan_in`` being the number of live edges into the layer (at least 1). A layer's batch norm starts
    as ``nn.BatchNorm`` does (weight 1, bias 0, running mean 0, variance 1, no batches tracked): the
    grown run's trained affine values and statistics are not the twin's to keep. Masks stay (they are
    part of the architecture); provisional marks and growth marks (``grown``) are cleared. The front, if
    any, is then re-drawn from the same generator by :func:`reset_front`.
    """
    gen = torch.Generator().manual_seed(seed)
    for name in net.order[1:]:
        incoming = net.incoming(name)
        fan_in = max(1, sum(int(c.live().sum()) for c in incoming) // max(1, net.layers[name].size))
        bound = 1 / math.sqrt(fan_in)
        for c in incoming:
            w = (torch.rand(c.shape, generator=gen) * 2 - 1) * bound
            if c.sparse:  # the same draw as its dense storage, live entries kept
                c.weight.copy_(w.to(c.weight)[c.edge_index[0], c.edge_index[1]])
            else:
                c.weight.copy_(w.to(c.weight) * (1 if c.mask is None else c.mask))
            c.provisional = None
        layer = net.layers[name]
        layer.bias.copy_(((torch.rand(layer.size, generator=gen) * 2 - 1) * bound).to(layer.bias))
        if getattr(layer, "norm", None) is not None:
            layer.norm.reset_parameters()
        reset = getattr(layer.activation, "reset_parameters", None)
        if callable(reset):  # a learnable activation starts afresh too (SENN's rational: the identity)
            reset()
    for layer in net.layers.values():
        if getattr(layer, "grown", None) is not None:
            layer.grown = None
    if net.front is not None:
        reset_front(net.front, gen)
    net.invalidate()


@torch.no_grad()
def reset_front(front: nn.Module, generator: torch.Generator) -> None:
    """Re-draw a front's parameters from ``generator`` and reset its batch-norm running statistics.

    A front with ``reset_parameters(generator)`` (the registered conv fronts) draws from the
    generator itself; any other front has every submodule's own ``reset_parameters()`` run under
    torch's global generator, seeded from ``generator`` and restored afterwards.
    """
    reset = getattr(front, "reset_parameters", None)
    if reset is not None and "generator" in inspect.signature(reset).parameters:
        reset(generator=generator)
    else:
        seed = int(torch.randint(2 ** 62, (), generator=generator))
        cuda = sorted({p.device.index or 0 for p in front.parameters() if p.device.type == "cuda"})
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            for module in front.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    for module in front.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()

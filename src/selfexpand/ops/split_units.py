"""Net2Net's wider operation: copy units, splitting each source's outgoing weights with its copy.

Chen et al. 2016 (ALGORITHMS.md §5). A copy of unit ``u`` gets ``u``'s incoming weights and bias, so
both compute the same output; ``u``'s outgoing column ``w`` becomes ``w / 2 - e`` and the copy's
``w / 2 + e``, so their sum, and the network's function, are unchanged while the two can still
diverge in training (``e ~ N(0, noise^2)``, per outgoing weight). A unit copied ``r`` times shares
``w`` in ``r + 1`` equal parts, its copies' noise subtracted from its own part. A layer's batch norm
copies its source's affine values and running statistics (so the copy matches in training mode too:
it sees the same batch statistics). The copies' incoming weights, bias and batch-norm values carry
their source's optimizer state (they are the same values); their outgoing
columns start fresh, as any new entry.
"""

from __future__ import annotations

import torch

from ..errors import GrowthError
from ..graph.conv import ConvLayer
from ..validators import number
from .channels import split_channels
from .checks import require_hidden, split_sources
from .connection_edit import resize_connection
from .edit import Edit, arange_with_new
from .event import GrowthEvent
from .storage import on_dense_storage

__all__ = ["split_units"]


@on_dense_storage
def split_units(net, layer: str, sources, *, noise: float = 0.0, generator: torch.Generator | None = None,
                optimizer=None) -> GrowthEvent:
    """Append one copy of each unit of ``sources`` (indices into hidden ``layer``; repeats allowed).

    The copies' values need no argument: incoming weights and bias copied, outgoing weights shared
    (module docstring), so the function is kept. With the default ``noise=0`` a copy's outgoing share
    equals its source's; ``noise > 0`` adds ``N(0, noise^2)`` (drawn from ``generator``) to the copy's
    share and takes it from the source's, so the two can diverge in training.

    Raises:
        ConfigError: ``noise`` not a finite number >= 0.
        GrowthError: not a hidden layer, no or out-of-range sources, a layer
            with a unit modulator (a copy would start at the modulator's neutral factor, not the
            source's) or written in part by a connection (the copy would miss that input).
    """
    require_hidden(net, layer)
    target = net.layers[layer]
    if isinstance(target, ConvLayer):  # channels: kernels, batch norm, flatten columns
        return split_channels(net, layer, sources, noise=noise, generator=generator, optimizer=optimizer)
    sources = split_sources(net, layer, target.size, sources, "units")
    noise = number("noise", noise, 0)
    if target.modulator is not None:
        raise GrowthError(f"layer {layer!r} has a unit modulator; copying its units would not preserve the function")
    ins = {n: c for n, c in net.connections.items() if c.target == layer}
    outs = {n: c for n, c in net.connections.items() if c.source == layer and c.in_index is None}
    device, k, old = target.bias.device, sources.numel(), target.size
    sources = sources.to(device)

    edit = Edit(net, optimizer, "split_units", layer)
    for c in ins.values():
        w = c.weight.detach()
        resize_connection(edit, c, torch.cat([w, w[sources]], 0), torch.cat([torch.arange(c.shape[0], device=device),
                          sources]), torch.arange(c.shape[1], device=device))
    share = 1 / (torch.bincount(sources, minlength=old) + 1)  # a unit copied r times: r + 1 shares
    for c in outs.values():
        w = c.weight.detach()
        e = (torch.randn((c.shape[0], k), generator=generator, dtype=torch.float64) * noise).to(w)
        copies = w[:, sources] * share[sources].to(w) + e
        w = (w * share.to(w)).index_add(1, sources, -e)
        resize_connection(edit, c, torch.cat([w, copies], 1), torch.arange(c.shape[0], device=device),
                          arange_with_new(c.shape[1], k, device))
    index = torch.cat([torch.arange(old, device=device), sources])
    edit.replace(target, "bias", target.bias.detach()[index], (index,))
    edit.resize_norm(target, index)  # a dense batch norm: a copy takes its source's values and statistics
    edit.resize_grown(target, torch.arange(old, device=device), k)
    edges = sum(c.shape[1] * k for c in ins.values()) + sum(c.shape[0] * k for c in outs.values())
    return edit.commit(units_added=k, edges_added=edges, details={"sources": sources.tolist()})

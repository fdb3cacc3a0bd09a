"""GradMax (Evci et al. 2022; ALGORITHMS.md §5): outgoing weights that maximise the new units'
gradient norm.

For new units of hidden layer ``l`` (one full connection ``l-1 -> l`` in, one ``l -> l+1`` out), let
``M = E[dL/dz_{l+1} a_{l-1}^T]`` over the training set (``z_{l+1}``: layer ``l+1``'s pre-activation,
``a_{l-1}``: layer ``l-1``'s output). The outgoing weights of the ``k`` new units are the top-``k``
left singular vectors of ``M`` (each with its largest entry positive), scaled to the mean column norm
of the existing outgoing weights. ``M`` is read as the gradient of a zero connection ``l-1 -> l+1``
added to a throw-away copy of the model for one gradient pass: that gradient is exactly
``E[dL/dz_{l+1} a_{l-1}^T]``. Incoming weights are random unit directions scaled by ``epsilon``
(with ReLU, ``relu'(0) = 0`` would keep all-zero incoming weights at zero forever), biases 0: the
function is preserved to ``O(epsilon)``, exactly at ``epsilon = 0``. Units beyond the rank bound
``min(n_{l+1}, n_{l-1})`` get zero outgoing weights.

On a conv layer (``isinstance(layer, ConvLayer)``) the same rule acts on channels: outgoing kernels =
top-``k`` left singular vectors of ``M`` built from the unfolded input patches and the next layer's
output gradients (``strategies.initializers.gradmax_conv``, which states the formula). A dense layer
reading a conv layer (the flatten boundary) takes ``a_{l-1}`` as the flattened maps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ...graph.conv import ConvLayer
from ...ops import add_units
from ...settings import setting
from ...spaces import LogFloat
from ...validators import Number
from ..base import Initializer, Site
from ..registry import register_part
from ..topology import chain_connections, layers_last_first
from .gradmax_conv import conv_gradient_cross_moment, grow_conv_site

__all__ = ["GradMaxInitializer", "gradient_cross_moment"]


def gradient_cross_moment(ctx, layer: str) -> torch.Tensor:
    """``M = E[dL/dz_{l+1} a_{l-1}^T]`` for hidden ``layer`` over one pass of the training set (on a
    conv layer: :func:`~.gradmax_conv.conv_gradient_cross_moment`)."""
    net = ctx.model
    if isinstance(net.layers[layer], ConvLayer):
        return conv_gradient_cross_moment(ctx, layer)
    conn_in, conn_out = chain_connections(net, layer, who="GradMax")
    source, target = net.connections[conn_in].source, net.connections[conn_out].target
    probe_net = copy.deepcopy(net)
    rows, cols = net.layers[target].size, net.connections[conn_in].shape[1]  # flattened maps of a conv source
    name = probe_net.add_connection(source, target, torch.zeros(rows, cols).to(net.layers[target].bias))
    probe = probe_net.connections[name].weight
    for p in probe_net.parameters():
        p.requires_grad_(p is probe)
    return ctx.mean_gradients([probe], model=probe_net, batch_size=max(ctx.batch_size, 1024))[0]


@register_part
@dataclass(eq=False)
class GradMaxInitializer(Initializer):
    """New units with GradMax outgoing weights and ``epsilon``-scaled random incoming weights."""

    name = "gradmax"
    grows_channels = True  # conv layers: gradmax_conv.py
    epsilon: float = setting(Number(0), 1e-3,
                             "norm of each new unit's incoming weights (0: function preserved exactly)",
                             space=LogFloat(1e-5, 0.1))

    def grow(self, ctx, sites: list[Site]) -> list:
        net, events = ctx.model, []
        for site in layers_last_first(net, sites):
            if isinstance(net.layers[site.layer], ConvLayer):
                events.append(grow_conv_site(ctx, site.layer, site.n_units, self.epsilon))
                continue
            conn_in, conn_out = chain_connections(net, site.layer, who="GradMax")
            m = gradient_cross_moment(ctx, site.layer)
            k = site.n_units
            u = torch.linalg.svd(m, full_matrices=False).U[:, :k]
            u = u * torch.where(u.gather(0, u.abs().argmax(0, keepdim=True)) < 0, -1.0, 1.0)
            existing = net.connections[conn_out].weight.detach().double()
            scale = existing.norm(dim=0).mean()
            outgoing = torch.zeros(m.shape[0], k, dtype=torch.float64)
            outgoing[:, :u.shape[1]] = u * scale
            incoming = torch.randn(k, net.connections[conn_in].shape[1], generator=ctx.generator, dtype=torch.float64)
            incoming = incoming / incoming.norm(dim=1, keepdim=True).clamp_min(1e-12) * self.epsilon
            events.append(add_units(net, site.layer, k, incoming={conn_in: incoming.float()},
                                    bias=torch.zeros(k), outgoing={conn_out: outgoing.float()},
                                    optimizer=ctx.optimizer))
            events[-1].details["singular_values"] = torch.linalg.svdvals(m)[:k].tolist()
        return events

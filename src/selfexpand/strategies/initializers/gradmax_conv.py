"""GradMax on conv layers (issue #24): new channels whose outgoing kernels maximise the gradient norm
of their (zero) incoming kernels. The dense form is ``strategies.initializers.gradmax``.

Setting. Conv layer ``l`` has one full conv connection in (from ``l-1``, kernel ``k1``, stride ``s1``,
padding ``p1``) and one full connection out: a conv connection to conv layer ``l+1`` (kernel ``k2``,
stride ``s2``, padding ``p2``), or a dense connection across the flatten boundary. A new channel with
incoming kernel ``W`` (``(C_in, k1, k1)``, flattened ``d = (c, u, v)`` as ``F.unfold`` orders its rows)
and outgoing kernel ``V`` (``(C_out, k2, k2)``, flattened ``(o, u', v')``; across the flatten boundary
``(C_out, P)``, flattened ``(o, p)``, ``P`` = the layer's output positions):

    z = conv(a_{l-1}, W)             the channel's pre-activation, ``X = unfold(a_{l-1}, k1, p1, s1)``
    h = T(z)                         batch norm, activation, pooling, linearised at ``z = 0``
    z_{l+1} += conv(h, V)            (or ``V @ flatten(h)``)

With ``W = 0`` the gradient of the mean loss with respect to ``W`` is linear in ``V``:
``dL/dW = M^T V`` with

    M[(o, u', v'), (c, u, v)] = sum_n sum_r g[n, o, r] * TX[n, (c, u, v), r * s2 + (u', v') - p2]
    (flatten boundary:  M[(o, p), (c, u, v)] = sum_n g[n, o] * TX[n, (c, u, v), p])

where ``g = dL/dz_{l+1}`` (gradient of the training set's MEAN loss, so each example carries its
``1/N``; positions are summed, not averaged), ``TX[n, d]`` is ``T`` applied to the map
``X[n, d]`` reshaped to the layer's pre-activation size, and positions outside ``TX`` read 0 (the
padding ``p2``). Maximising ``||M^T V||_F`` over unit-norm ``V`` (``k`` orthogonal ``V``) gives the
top-``k`` LEFT singular vectors of ``M``: those are the new channels' outgoing kernels, each with its
largest entry positive, scaled to the mean norm of the existing channels' outgoing kernels (a channel's
whole ``(C_out, k2, k2)`` block, or its ``(C_out, P)`` columns). This mirrors the dense form exactly
(there ``X = a_{l-1}``, ``T`` = 1, one position). Incoming kernels are random unit directions scaled by
``epsilon`` (zero at ``epsilon = 0``), bias 0; channels beyond ``min(rows, cols)`` of ``M`` get zero
outgoing kernels.

``T`` (the new channel's path from pre-activation to output, linearised where it starts):

- activation: slope 1, as in the dense form and the paper (PyTorch's ``relu'(0) = 0`` is ignored;
  that is why ``epsilon > 0`` is the default).
- batch norm: its TRAINING-mode derivative at a constant channel (the gradient pass runs in training
  mode, as training does) is ``(weight / sqrt(eps)) (I - 11^T / m)``: centring over the batch's examples
  AND positions (``m = N H W``). ``TX`` is centred per gradient-pass batch; the positive factor is
  dropped (it changes neither the singular vectors nor the scaled kernels).
- pooling: average pooling is linear and applied as is. Max pooling of a constant map has no unique
  derivative (any convex combination of a window is a subgradient); it is linearised as AVERAGE
  pooling, the mean routing over windows (PyTorch would route ties to each window's first element).
- dropout (if any): its expectation, the identity.

``M`` is read, as in the dense form, as the gradient of one zero probe parameter on a throw-away copy:
a conv kernel ``K (C_out, D, k2, k2)`` (stride ``s2``, padding ``p2``) applied to ``TX`` taken as a
``D``-channel map (``D = C_in k1^2``), added to ``l+1``'s pre-activation (a dense ``(C_out, D P)``
weight on ``flatten(TX)`` across the flatten boundary); ``dL/dK`` rearranged is ``M``.

Batch norm. Behind batch norm, with ``epsilon > 0``, the new channels' batch-norm weight starts at
``epsilon``, not 1: in training mode batch norm scales the ``epsilon``-sized pre-activation up to unit
variance, and a weight of ``epsilon`` brings the channel's output back to ``epsilon`` size (in
evaluation mode, with the new channels' running statistics at mean 0 and variance 1, it is
``epsilon^2``-sized). Its gradient is not small (``sum dL/dy * y_hat``), so the weight grows in as
training goes, as a residual block's last batch norm started at zero does; the incoming kernels'
gradient is scaled by it (its direction, the one ``M`` maximises, is not). ``epsilon = 0`` keeps the
weight at 1 and the function exactly but leaves a channel behind batch norm and ReLU dead for good: its
pre-activation is a constant, batch norm maps it to 0, and ``relu'(0) = 0`` passes no gradient to its
kernel, its bias or its batch norm (the bench's ``cifar10`` row once ran so and every new channel stayed
inactive).

Function preservation: exact at ``epsilon = 0`` (the new channels output ``act(bn(0))``, 0 for ReLU /
tanh, in training and evaluation mode). With ``epsilon > 0``: ``O(epsilon)``, with batch norm in both
modes too (the weight above).
"""

from __future__ import annotations

import copy
import types

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import GrowthError
from ...graph.conv import ConvConnection, ConvLayer, conv_output_size, spatial_sizes
from ...ops import add_units
from ..topology import chain_connections

__all__ = ["conv_gradient_cross_moment", "grow_conv_site", "transformed_patches"]


def transformed_patches(layer: ConvLayer, conn_in: ConvConnection, a: torch.Tensor) -> torch.Tensor:
    """``TX``: ``(N, D, H', W')``, the unfolded patches of ``a`` (layer ``l-1``'s output) as
    ``D = C_in k1^2`` maps of the layer's pre-activation size, centred over the batch (with batch
    norm) and average-pooled (with pooling, max or avg): see the module docstring."""
    if conn_in.in_index is not None:
        a = a.index_select(1, conn_in.in_index)
    kh, kw = conn_in.kernel_size
    s, p = conn_in.stride, conn_in.padding
    x = F.unfold(a, (kh, kw), padding=p, stride=s)
    h1, w1 = conv_output_size(a.shape[2], kh, s, p), conv_output_size(a.shape[3], kw, s, p)
    x = x.view(a.shape[0], x.shape[1], h1, w1)
    if layer.norm is not None:
        x = x - x.mean(dim=(0, 2, 3), keepdim=True)
    if layer.pool is not None:
        x = F.avg_pool2d(x, layer.pool_size)
    return x


def _conv_chain(net, layer: str) -> tuple[str, str]:
    conn_in, conn_out = chain_connections(net, layer, who="GradMax")
    if not isinstance(net.connections[conn_in], ConvConnection):
        raise GrowthError(f"GradMax needs a conv connection into conv layer {layer!r}")
    return conn_in, conn_out


def conv_gradient_cross_moment(ctx, layer: str) -> torch.Tensor:
    """``M`` of the module docstring for conv ``layer`` over one pass of the training set (float64):
    rows ``(o, u', v')`` (or ``(o, p)`` across the flatten boundary), columns ``(c, u, v)``."""
    net = ctx.model
    conn_in, conn_out = _conv_chain(net, layer)
    cin, cout = net.connections[conn_in], net.connections[conn_out]
    source, target = cin.source, cout.target
    probe_net = copy.deepcopy(net)
    p_layer, p_in = probe_net.layers[layer], probe_net.connections[conn_in]
    d = cin.weight[0].numel()
    conv_out = isinstance(cout, ConvConnection)
    positions = None
    if conv_out:
        shape = (cout.shape[0], d, *cout.kernel_size)
    else:
        hw = spatial_sizes(net)[layer][1]
        positions = hw[0] * hw[1]
        shape = (cout.shape[0], d * positions)
    kernel = nn.Parameter(torch.zeros(shape, dtype=cout.weight.dtype, device=cout.weight.device))
    probe_net.gradmax_probe = kernel  # a parameter of the copy, so gradient_pass clears it
    state: dict = {}

    def capture(a: torch.Tensor) -> None:
        tx = transformed_patches(p_layer, p_in, a.detach())
        state["extra"] = (F.conv2d(tx, kernel, None, cout.stride, cout.padding) if conv_out
                          else F.linear(tx.flatten(1), kernel))

    if source == net.input_name:
        if net.front is not None:
            raise GrowthError("GradMax on a conv layer reading the input needs a network without a front")
        probe_net.register_forward_pre_hook(lambda module, args: capture(args[0]))
    else:
        src = probe_net.layers[source]

        def source_finish(self, pre):
            h = type(self).finish(self, pre)
            capture(h)
            return h
        src.finish = types.MethodType(source_finish, src)
    tgt = probe_net.layers[target]
    if hasattr(type(tgt), "finish"):  # every conv layer (and dense layers, where they have ``finish``)
        def target_finish(self, pre):
            return type(self).finish(self, pre + state.pop("extra"))
        tgt.finish = types.MethodType(target_finish, tgt)
    else:
        tgt.activation = _Shifted(tgt.activation, state)
    for q in probe_net.parameters():
        q.requires_grad_(q is kernel)
    grad = ctx.mean_gradients([kernel], model=probe_net, batch_size=max(ctx.batch_size, 1024))[0]
    if conv_out:
        return grad.permute(0, 2, 3, 1).reshape(-1, d)
    return grad.view(shape[0], d, positions).permute(0, 2, 1).reshape(-1, d)


class _Shifted(nn.Module):
    """A dense target's activation with the probe's contribution added to its pre-activation."""

    def __init__(self, activation: nn.Module, state: dict):
        super().__init__()
        self.inner, self.state = activation, state

    def forward(self, pre: torch.Tensor) -> torch.Tensor:
        return self.inner(pre + self.state.pop("extra"))


def grow_conv_site(ctx, layer: str, k: int, epsilon: float):
    """Add ``k`` GradMax channels to conv ``layer`` (see the module docstring); returns the event."""
    net = ctx.model
    conn_in, conn_out = _conv_chain(net, layer)
    cin, cout = net.connections[conn_in], net.connections[conn_out]
    m = conv_gradient_cross_moment(ctx, layer)
    u = torch.linalg.svd(m, full_matrices=False).U[:, :k]
    u = u * torch.where(u.gather(0, u.abs().argmax(0, keepdim=True)) < 0, -1.0, 1.0)
    w = cout.weight.detach().double()
    n_old, n_out = net.layers[layer].size, cout.shape[0]
    per_channel = w.transpose(0, 1) if isinstance(cout, ConvConnection) else w.view(n_out, n_old, -1).transpose(0, 1)
    scale = per_channel.reshape(n_old, -1).norm(dim=1).mean()
    outgoing = torch.zeros(m.shape[0], k, dtype=torch.float64)
    outgoing[:, :u.shape[1]] = u * scale
    if isinstance(cout, ConvConnection):
        values = outgoing.T.reshape(k, n_out, *cout.kernel_size).transpose(0, 1)  # (n_out, k, kh, kw)
    else:
        values = outgoing.view(n_out, -1, k).permute(0, 2, 1).reshape(n_out, -1)  # channel j: j*P ... j*P+P-1
    incoming = torch.randn(k, *cin.shape[1:], generator=ctx.generator, dtype=torch.float64)
    norms = incoming.flatten(1).norm(dim=1).clamp_min(1e-12).view(k, 1, 1, 1)
    incoming = incoming / norms * epsilon
    dtype = cout.weight.dtype
    event = add_units(net, layer, k, incoming={conn_in: incoming.to(dtype)}, bias=torch.zeros(k, dtype=dtype),
                      outgoing={conn_out: values.contiguous().to(dtype)}, optimizer=ctx.optimizer)
    norm = net.layers[layer].norm
    if norm is not None and norm.affine and epsilon > 0:  # batch-norm weight epsilon (module docstring)
        with torch.no_grad():
            norm.weight[n_old:n_old + k] = epsilon
    event.details["singular_values"] = torch.linalg.svdvals(m)[:k].tolist()
    return event

"""Firefly on conv layers (issue #24): candidate channels and channel splits ranked together by the
loss decrease they promise. The dense form is ``strategies.initializers.firefly``.

Setting. Conv layer ``l`` has one full conv connection in (from ``l-1``, kernel ``k1``, stride ``s1``,
padding ``p1``) and one full connection out: a conv connection to conv layer ``l+1`` (kernel ``k2``,
stride ``s2``, padding ``p2``), or a dense connection across the flatten boundary. The signals come
from one gradient pass over ``sample`` training examples on a throw-away float64 copy in EVALUATION
mode (as the dense form): ``a = a_{l-1}`` (``(N, C_in, H, W)``) and ``delta = dL/dz_{l+1}`` of the
sample's mean loss (``(N, C_out, H2, W2)``, or ``(N, n_out)`` across the flatten boundary).

*New channels*: incoming kernel ``w`` (``(C_in, k1, k1)``), bias ``b``, outgoing kernel ``eps * v``.
The channel's map is ``h = pool(act(bn0(conv(a, w) + b)))`` with the layer's activation and pooling
and a FRESH batch norm in evaluation mode (weight 1, bias 0, running mean 0, variance 1, what
``add_channels`` gives it). Its outgoing kernel's gradient at ``v = 0`` is

    g[o, u', v'] = sum_n sum_r delta[n, o, r] * h[n, r * s2 + (u', v') - p2]     (0 outside h)
    (flatten boundary:  g[o, p] = sum_n delta[n, o] * h[n, p])

the conv analogue of the dense ``E[dL/dz_{l+1} h]``. The decrease at ``eps`` is ``eps * v . g``, best
``v = -g / |g|`` (Frobenius norm over the whole outgoing block) giving ``eps * |g|``.
``candidates_per_unit * k`` candidates (``nn.Conv2d``'s Kaiming-uniform ``w``, ``b = 0``) take
``steps`` Adam steps on their kernels to raise ``sum |g|`` (kernels kept at their norm).

*Channel splits*: channel ``j`` (kernel ``W_j``, bias ``b_j``) becomes two (``ops.split_channels``:
batch norm copied, outgoing kernels halved) with ``(W_j, b_j) +- eps * delta_j`` (``|delta_j| = 1``
over kernel and bias; masked kernel entries stay 0). With ``u = conv(a, delta_j) + delta_j[bias]`` and
``f`` the channel's batch norm (its running statistics, evaluation mode), activation and pooling, the
layer's output changes by ``d_j = (f(z_j + eps u) + f(z_j - eps u)) / 2 - f(z_j)`` and the decrease is
``-sum dL/dh_{l,j} . d_j`` (``dL/dh_l`` = ``delta`` read back through the outgoing kernels): zero at
first order, the second-order term as in the dense form. Each channel draws ``candidates_per_unit``
random directions, takes ``steps`` Adam steps (``split_lr``) and keeps its best.

Function preservation (evaluation mode): a new channel changes the output by ``O(eps)`` (its outgoing
kernels are ``eps``-sized), a split by ``O(eps)``; both are exact at ``eps = 0``. In training mode the
new channel's batch norm normalises it, so the change is of the order of the outgoing kernels.
"""

from __future__ import annotations

import copy
import math
import types

import torch
import torch.nn.functional as F

from ...errors import ConfigError, GrowthError
from ...graph.conv import ConvConnection, ConvLayer
from ...ops import add_units, split_channels
from ..topology import chain_connections

__all__ = ["apply_conv_splits", "candidate_maps", "conv_candidate_gains", "conv_signals", "conv_split_gains",
           "grow_conv_site"]


def _chain(net, layer: str):
    conn_in, conn_out = chain_connections(net, layer, who="Firefly")
    if not isinstance(net.layers[layer], ConvLayer) or not isinstance(net.connections[conn_in], ConvConnection):
        raise GrowthError(f"Firefly on conv layers needs conv layer {layer!r} with a conv connection in")
    return conn_in, conn_out


def conv_signals(ctx, layer: str, sample: int):
    """``(probe, a, delta)``: the float64 evaluation-mode copy, ``a_{l-1}`` and ``dL/dz_{l+1}`` of the
    mean loss over the first ``sample`` training examples (module docstring)."""
    net = ctx.model
    conn_in, conn_out = _chain(net, layer)
    source, target = net.connections[conn_in].source, net.connections[conn_out].target
    probe = copy.deepcopy(net).double().eval()
    for p in probe.parameters():
        p.requires_grad_(False)
    seen: dict = {}
    tgt = probe.layers[target]

    def finish(self, pre):
        zero = torch.zeros_like(pre, requires_grad=True)
        seen["z"] = zero
        return type(self).finish(self, pre + zero)
    tgt.finish = types.MethodType(finish, tgt)
    x, y = ctx.data.x_train[:sample], ctx.data.y_train[:sample]
    outputs = probe.layer_outputs(x.double())
    out = outputs[probe.output_name]
    loss = ctx.loss_fn(out, y.double() if y.is_floating_point() else y)
    (delta,) = torch.autograd.grad(loss, seen["z"])
    del tgt.finish
    return probe, outputs[source].detach(), delta.detach()


def _pool(layer: ConvLayer, h: torch.Tensor) -> torch.Tensor:
    if layer.pool == "max":
        return F.max_pool2d(h, layer.pool_size)
    if layer.pool == "avg":
        return F.avg_pool2d(h, layer.pool_size)
    return h


def candidate_maps(layer: ConvLayer, conn_in: ConvConnection, a, incoming, bias) -> torch.Tensor:
    """``h`` of ``m`` candidate channels, ``(N, m, H', W')``: conv, fresh batch norm (evaluation
    mode), activation, pooling."""
    z = F.conv2d(a, incoming, bias, conn_in.stride, conn_in.padding)
    if layer.norm is not None:
        m = z.shape[1]
        z = F.batch_norm(z, z.new_zeros(m), z.new_ones(m), None, None, False, 0.0, layer.norm.eps)
    return _pool(layer, layer.activation(z))


def conv_candidate_gains(h: torch.Tensor, delta: torch.Tensor, conn_out) -> torch.Tensor:
    """``g`` of the module docstring for every candidate map: ``(C_out, m, k2, k2)`` for a conv
    reader, ``(n_out, m, P)`` across the flatten boundary (``delta`` carries the mean's ``1/N``)."""
    if not isinstance(conn_out, ConvConnection):
        return torch.einsum("no,njp->ojp", delta, h.flatten(2))
    kh, kw = conn_out.kernel_size
    # correlation of h with delta over examples and positions: batch as channels, stride as dilation
    g = F.conv2d(h.transpose(0, 1), delta.transpose(0, 1), None, 1, conn_out.padding, conn_out.stride)
    return g[:, :, :kh, :kw].transpose(0, 1)


def _finish_eval(layer: ConvLayer, z: torch.Tensor) -> torch.Tensor:
    """``f`` of the module docstring (``layer`` from the evaluation-mode copy; no dropout there)."""
    h = z if layer.norm is None else layer.norm(z)
    return _pool(layer, layer.activation(h))


def conv_split_gains(layer: ConvLayer, conn_in: ConvConnection, a, pre, grad_h, directions, eps: float):
    """Predicted decrease ``(C, r)`` of splitting channel ``j`` along ``directions[j, r]``
    (``(C, r, C_in k1^2 + 1)``, the last entry the bias's); ``pre``: the layer's pre-activation,
    ``grad_h``: ``dL/dh_l``."""
    r = directions.shape[1]
    base = _finish_eval(layer, pre)
    scores = []
    for i in range(r):
        d = directions[:, i]
        u = F.conv2d(a, d[:, :-1].reshape(conn_in.shape), d[:, -1], conn_in.stride, conn_in.padding)
        change = (_finish_eval(layer, pre + eps * u) + _finish_eval(layer, pre - eps * u)) / 2 - base
        scores.append(-(grad_h * change).sum(dim=(0, 2, 3)))
    return torch.stack(scores, 1)


def _grad_h(conn_out, delta, shape) -> torch.Tensor:
    w = conn_out.effective_weight().detach()
    if isinstance(conn_out, ConvConnection):
        return torch.nn.grad.conv2d_input(shape, w, delta, conn_out.stride, conn_out.padding)
    return (delta @ w).view(shape)


def apply_conv_splits(net, layer: str, sources, directions, eps: float, optimizer=None):
    """Split each channel of ``sources`` (distinct) in two (``ops.split_channels``), then nudge the
    incoming kernels and bias ``+- eps * directions[i]`` (``(k, C_in k1^2 + 1)``; masked entries stay 0).

    Raises:
        GrowthError: as ``split_channels``, repeated sources, or directions of the wrong shape.
    """
    conn_in, _ = _chain(net, layer)
    conn = net.connections[conn_in]
    sources = torch.as_tensor(sources, dtype=torch.long).flatten()
    directions = torch.as_tensor(directions, dtype=torch.float64)
    d = conn.weight[0].numel()
    if sources.unique().numel() != sources.numel():
        raise GrowthError(f"each channel can be split once per call, got sources={sources.tolist()}")
    if directions.shape != (sources.numel(), d + 1):
        raise GrowthError(f"directions must be ({sources.numel()}, {d + 1}), got {tuple(directions.shape)}")
    old = net.layers[layer].size
    event = split_channels(net, layer, sources, optimizer=optimizer)
    sources = sources.to(conn.weight.device)
    rows = torch.cat([sources, torch.arange(old, old + sources.numel(), device=sources.device)])
    nudge = (eps * directions).to(conn.weight)
    nudge = torch.cat([nudge, -nudge])
    with torch.no_grad():
        conn.weight.index_add_(0, rows, nudge[:, :-1].view(-1, *conn.shape[1:]) * conn.live()[rows])
        net.layers[layer].bias.index_add_(0, rows, nudge[:, -1])
    event.details["split_directions"] = directions.tolist()
    return event


def _unit(v, mask):
    """``v`` masked and scaled to unit norm over its last dimension."""
    v = v * mask
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-30)


def grow_conv_site(init, ctx, site) -> list:
    """Firefly's step on conv ``site.layer`` with ``init``'s settings (a ``FireflyInitializer``)."""
    net = ctx.model
    conn_in, conn_out = _chain(net, site.layer)
    probe, a, delta = conv_signals(ctx, site.layer, init.sample)
    p_layer, p_in, p_out = probe.layers[site.layer], probe.connections[conn_in], probe.connections[conn_out]
    incoming, bias = _candidates(init, ctx, site, p_in)
    if init.steps:
        norm = incoming.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        w = incoming.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=init.step_lr)
        for _ in range(init.steps):
            opt.zero_grad()
            g = conv_candidate_gains(candidate_maps(p_layer, p_in, a, w, bias), delta, p_out)
            (-g.transpose(0, 1).flatten(1).norm(dim=1).sum()).backward()
            opt.step()
            with torch.no_grad():
                w.mul_(norm / w.flatten(1).norm(dim=1).view(-1, 1, 1, 1).clamp_min(1e-30))
        incoming = w.detach()
    with torch.no_grad():
        gains = conv_candidate_gains(candidate_maps(p_layer, p_in, a, incoming, bias), delta, p_out)
    norms = gains.transpose(0, 1).flatten(1).norm(dim=1)
    directions, split_scores = _splits(init, ctx, site, p_layer, p_in, p_out, a, delta)
    scores = torch.cat([init.eps * norms, split_scores])
    top = torch.topk(scores, min(site.n_units, scores.numel())).indices
    split_top, new_top = top[top >= norms.numel()] - norms.numel(), top[top < norms.numel()]
    events = []
    if split_top.numel():
        event = apply_conv_splits(net, site.layer, split_top, directions[split_top], init.eps, ctx.optimizer)
        event.details.update({"chosen": split_top.tolist(), "predicted_decrease": split_scores[split_top].tolist()})
        events.append(event)
    if new_top.numel():
        k = new_top.numel()
        out = -init.eps * gains[:, new_top] / norms[new_top].clamp_min(1e-30).view(1, -1, *(1,) * (gains.dim() - 2))
        if not isinstance(p_out, ConvConnection):
            out = out.reshape(out.shape[0], -1)  # channel j's positions at j * P ... j * P + P - 1
        dtype = net.connections[conn_out].weight.dtype
        event = add_units(net, site.layer, k, incoming={conn_in: incoming[new_top].to(dtype)},
                          bias=bias[new_top].to(dtype), outgoing={conn_out: out.contiguous().to(dtype)},
                          optimizer=ctx.optimizer)
        event.details.update({"chosen": new_top.tolist(), "first_order_decrease": (init.eps * norms[new_top]).tolist()})
        events.append(event)
    return events


def _candidates(init, ctx, site, conn_in):
    shape = tuple(conn_in.shape[1:])
    proposal = site.proposal or {}
    if "incoming" in proposal:
        incoming = torch.as_tensor(proposal["incoming"], dtype=torch.float64)
        bias = torch.as_tensor(proposal.get("bias", torch.zeros(incoming.shape[0])), dtype=torch.float64)
        if incoming.dim() != 4 or tuple(incoming.shape[1:]) != shape or bias.shape != (incoming.shape[0],):
            raise ConfigError(f"proposal incoming must be (m, {', '.join(map(str, shape))}) with bias (m,), "
                              f"got {tuple(incoming.shape)} and {tuple(bias.shape)}")
        return incoming, bias
    m = init.candidates_per_unit * site.n_units
    bound = 1 / math.sqrt(max(math.prod(shape), 1))
    incoming = (torch.rand(m, *shape, generator=ctx.generator, dtype=torch.float64) * 2 - 1) * bound
    return incoming, torch.zeros(m, dtype=torch.float64)


def _splits(init, ctx, site, layer, conn_in, conn_out, a, delta):
    c, d = layer.size, conn_in.weight[0].numel()
    if not init.splits:
        return torch.zeros(0, d + 1, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    pre = F.conv2d(a, conn_in.effective_weight(), layer.bias, conn_in.stride, conn_in.padding)
    grad_h = _grad_h(conn_out, delta, _finish_eval(layer, pre).shape)
    given = init._split_directions(ctx, site, c, d)  # a kernel's entries and its bias, as a unit's weights
    mask = torch.cat([conn_in.live().reshape(c, -1), torch.ones(c, 1, dtype=torch.bool)], 1).double()[:, None, :]
    directions = _unit(given, mask)
    if init.steps:
        v = directions.clone().requires_grad_(True)
        opt = torch.optim.Adam([v], lr=init.split_lr)
        for _ in range(init.steps):
            opt.zero_grad()
            (-conv_split_gains(layer, conn_in, a, pre, grad_h, _unit(v, mask), init.eps).sum()).backward()
            opt.step()
        directions = _unit(v.detach(), mask)
    with torch.no_grad():
        scores = conv_split_gains(layer, conn_in, a, pre, grad_h, directions, init.eps)
    best = scores.argmax(dim=1)
    return directions[torch.arange(c), best], scores[torch.arange(c), best]

"""Firefly (Wu et al. 2020; ALGORITHMS.md §5): new-neuron and split candidates compete; keep the top-k
by predicted loss decrease per added unit.

Hidden layer ``l`` has one full connection ``l-1 -> l`` in and one ``l -> l+1`` out. Every candidate
adds one unit and changes ``z_{l+1}`` (the next layer's pre-activation) by some ``dz_i`` per example;
its score is the loss decrease linearised in that change, ``-sum_i dL/dz_{l+1,i} . dz_i``, with ``dz``
itself computed exactly at the configured ``eps``. Both kinds are thus measured the same way, as the
loss decrease at ``eps`` per added unit.

*New units*: incoming ``w``, bias ``b``, outgoing ``eps * v``. The decrease is ``eps * v . g`` with
``g = E[dL/dz_{l+1} act(w . a_{l-1} + b)]``; the best ``v = -g / |g|`` gives ``eps * |g|``.
``candidates_per_unit * k`` candidates (Kaiming-uniform ``w``, ``b = 0``) take ``steps`` Adam steps on
their incoming weights to increase ``sum |g|`` (rows kept at their norm).

*Splits*: unit ``j`` (incoming ``w_j``, bias ``b_j``) becomes two units with incoming
``(w_j, b_j) +- eps * delta_j`` (``|delta_j| = 1``, over weights and bias; masked incoming edges stay
0) and half of ``j``'s outgoing weights each. With ``u_i = delta_j . [a_{l-1,i}, 1]`` the layer's
output changes by ``d_ij = (act(z_ij + eps u_i) + act(z_ij - eps u_i)) / 2 - act(z_ij)``, so the
decrease is ``-sum_i dL/dh_{l,ij} d_ij``: zero at first order in ``eps`` (the +- nudges cancel), and
at second order ``-eps^2 / 2 delta^T S_j delta`` with Liu et al.'s splitting matrix
``S_j = E[dL/dh_j act''(z_j) x x^T]`` for a smooth activation. For ReLU (``act'' = 0`` almost
everywhere) the finite-``eps`` difference is what ranks splits, as in Firefly's implementation; the
downstream linearisation errs by ``O(eps^3)`` there, below the ``O(eps^2)`` score. Each unit draws
``candidates_per_unit`` random directions, takes ``steps`` Adam steps (``split_lr``, renormalised) on
the decrease, and keeps its best. A split applies ``ops.split_units`` (the optimizer state is
carried, the copy is marked grown) and then the +- nudge: the function changes by ``O(eps)`` and is
unchanged at ``eps = 0``. Layers with a unit modulator get no split candidates (``split_units``
cannot copy a modulated unit).

The per-example ``dL/dz_{l+1}`` and ``a_{l-1}`` come from one gradient pass over ``sample`` training
examples on a throw-away copy. Candidates may also be given as a selector's proposal
(``Site.proposal["incoming"]``, ``["bias"]``, ``["split_directions"]`` of shape ``(size, n_src + 1)``
or ``(size, r, n_src + 1)``). Splits and new units chosen at one site give two events
(``split_units`` first, then ``add_units``).

*Conv layers* (``grows_channels``): on a ``ConvLayer`` the same rule acts on channels, candidate
channels and channel splits (``strategies.initializers.firefly_conv``, which states the formulas).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...errors import ConfigError, GrowthError
from ...graph.conv import ConvLayer
from ...ops import add_units, split_units
from ...settings import setting
from ...spaces import Int, LogFloat
from ...validators import Boolean, Integer, Number
from ..base import Initializer, Site
from ..registry import register_part
from ..topology import chain_connections, layers_last_first
from .firefly_conv import grow_conv_site

__all__ = ["FireflyInitializer", "layer_signals", "candidate_gains", "split_gains", "apply_splits"]


def layer_signals(ctx, layer: str, sample: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example ``a_{l-1}`` (``(n, n_src)``; a conv source's maps flattened) and ``dL/dz_{l+1}`` of
    the sample's mean loss (``(n, n_tgt)``) for hidden ``layer``, over the first ``sample`` training examples."""
    net = ctx.model
    conn_in, conn_out = chain_connections(net, layer, who="Firefly")
    source, target = net.connections[conn_in].source, net.connections[conn_out].target
    probe_net = copy.deepcopy(net).eval()
    for p in probe_net.parameters():
        p.requires_grad_(False)
    # a zero connection into layer l+1: its output adds to z_{l+1}, so its gradient is dL/dz_{l+1}
    rows, cols = net.layers[target].size, net.layers[layer].size
    probe = probe_net.connections[probe_net.add_connection(layer, target, torch.zeros(rows, cols).to(
        net.layers[target].bias))]
    seen = {}
    original = probe.contribution

    def contribution(x):
        out = original(x).requires_grad_(True)
        seen["z"] = out
        return out

    probe.contribution = contribution
    x, y = ctx.data.x_train[:sample], ctx.data.y_train[:sample]
    outputs = probe_net.layer_outputs(x)
    loss = ctx.loss_fn(outputs[probe_net.output_name], y)
    (delta,) = torch.autograd.grad(loss, seen["z"])
    # a conv source (the flatten boundary): its maps flattened channel-major, as the connection reads them
    return outputs[source].detach().flatten(1).double(), delta.detach().double()


def candidate_gains(a: torch.Tensor, delta: torch.Tensor, incoming: torch.Tensor, bias: torch.Tensor,
                    activation=F.relu) -> torch.Tensor:
    """``g_j = sum_i delta_i activation(w_j . a_i + b_j)`` for every candidate: ``(n_tgt, m)``
    (``delta`` already carries the mean's ``1/n``)."""
    return delta.T @ activation(a @ incoming.T + bias)


def split_gains(a: torch.Tensor, pre: torch.Tensor, grad_h: torch.Tensor, directions: torch.Tensor,
                eps: float, activation=F.relu) -> torch.Tensor:
    """Predicted loss decrease ``-sum_i grad_h[i, j] d_ijr`` of splitting unit ``j`` along
    ``directions[j, r]``: ``(size, r)``.

    Args:
        a: the layer's input ``(n, n_src)``; ``pre``: its pre-activations ``(n, size)``.
        grad_h: ``dL/dh_l`` per example ``(n, size)`` (carrying the mean's ``1/n``).
        directions: ``(size, r, n_src + 1)``, the last entry the bias's.
    """
    u = torch.einsum("is,jrs->ijr", a, directions[..., :-1]) + directions[..., -1]
    z = pre[:, :, None]
    change = (activation(z + eps * u) + activation(z - eps * u)) / 2 - activation(z)
    return -torch.einsum("ij,ijr->jr", grad_h, change)


def apply_splits(net, layer: str, sources, directions, eps: float, optimizer=None):
    """Split each unit of ``sources`` (distinct) in two: incoming weights and bias
    ``+- eps * directions[i]`` (masked edges stay 0), outgoing weights halved (``ops.split_units``).

    Raises:
        GrowthError: as ``split_units``, repeated sources, or directions not ``(k, n_src + 1)``.
    """
    conn_in, _ = chain_connections(net, layer, who="Firefly")
    conn = net.connections[conn_in]
    sources = torch.as_tensor(sources, dtype=torch.long).flatten()
    directions = torch.as_tensor(directions, dtype=torch.float64)
    if sources.unique().numel() != sources.numel():
        raise GrowthError(f"each unit can be split once per call, got sources={sources.tolist()}")
    if directions.shape != (sources.numel(), conn.shape[1] + 1):
        raise GrowthError(f"directions must be ({sources.numel()}, {conn.shape[1] + 1}), "
                          f"got {tuple(directions.shape)}")
    old = net.layers[layer].size
    event = split_units(net, layer, sources, optimizer=optimizer)
    sources = sources.to(conn.weight.device)
    rows = torch.cat([sources, torch.arange(old, old + sources.numel(), device=sources.device)])
    nudge = (eps * directions).to(conn.weight)
    nudge = torch.cat([nudge, -nudge])
    bias = net.layers[layer].bias
    with torch.no_grad():
        conn.weight.index_add_(0, rows, nudge[:, :-1] * conn.live()[rows])
        bias.index_add_(0, rows, nudge[:, -1])
    event.details["split_directions"] = directions.tolist()
    return event


_POSITIVE = Number(0, low_open=True)


@register_part
@dataclass(eq=False)
class FireflyInitializer(Initializer):
    """New units and unit splits chosen together by their predicted loss decrease."""

    name = "firefly"
    grows_channels = True  # conv layers: firefly_conv.py
    candidates_per_unit: int = setting(Integer(1), 4, "new-unit candidates per unit to add, and split "
                                                      "directions tried per existing unit", space=Int(1, 8))
    eps: float = setting(_POSITIVE, 1e-2, "scale of the new units' outgoing weights and of the splits' nudge",
                         space=LogFloat(1e-3, 0.1))
    steps: int = setting(Integer(0), 10, "Adam steps on the candidates before choosing", space=Int(0, 20))
    step_lr: float = setting(_POSITIVE, 1e-2, "learning rate of the new units' candidates")
    sample: int = setting(Integer(1), 2048, "training examples used for the signals")
    splits: bool = setting(Boolean(), True, "let splits of existing units compete with new units")
    split_lr: float = setting(_POSITIVE, 0.1, "learning rate of the split directions")

    def grow(self, ctx, sites: list[Site]) -> list:
        net, events = ctx.model, []
        for site in layers_last_first(net, sites):
            if isinstance(net.layers[site.layer], ConvLayer):
                events.extend(grow_conv_site(self, ctx, site))
                continue
            conn_in, conn_out = chain_connections(net, site.layer, who="Firefly")
            activation = net.layers[site.layer].activation
            a, delta = layer_signals(ctx, site.layer, self.sample)
            incoming, bias = self._candidates(ctx, site, a.shape[1])
            incoming = self._optimise(a, delta, incoming, bias, activation)
            gains = candidate_gains(a, delta, incoming, bias, activation)
            norms = gains.norm(dim=0)
            directions, split_scores = self._splits(ctx, site, a, delta)
            scores = torch.cat([self.eps * norms, split_scores])
            top = torch.topk(scores, min(site.n_units, scores.numel())).indices
            split_top, new_top = top[top >= norms.numel()] - norms.numel(), top[top < norms.numel()]
            if split_top.numel():
                event = apply_splits(net, site.layer, split_top, directions[split_top.cpu()], self.eps,
                                     ctx.optimizer)
                event.details.update({"chosen": split_top.tolist(),
                                      "predicted_decrease": split_scores[split_top].tolist()})
                events.append(event)
            if new_top.numel():
                outgoing = -self.eps * gains[:, new_top] / norms[new_top].clamp_min(1e-30)
                event = add_units(net, site.layer, new_top.numel(), incoming={conn_in: incoming[new_top].float()},
                                  bias=bias[new_top].float(), outgoing={conn_out: outgoing.float()},
                                  optimizer=ctx.optimizer)
                event.details.update({"chosen": new_top.tolist(),
                                      "first_order_decrease": (self.eps * norms[new_top]).tolist()})
                events.append(event)
        return events

    def _candidates(self, ctx, site: Site, n_src: int) -> tuple[torch.Tensor, torch.Tensor]:
        proposal = site.proposal or {}
        if "incoming" in proposal:
            incoming = torch.as_tensor(proposal["incoming"], dtype=torch.float64)
            bias = torch.as_tensor(proposal.get("bias", torch.zeros(incoming.shape[0])), dtype=torch.float64)
            if incoming.dim() != 2 or incoming.shape[1] != n_src or bias.shape != (incoming.shape[0],):
                raise ConfigError(f"proposal incoming must be (m, {n_src}) with bias (m,), got "
                                  f"{tuple(incoming.shape)} and {tuple(bias.shape)}")
            return incoming, bias
        m = self.candidates_per_unit * site.n_units
        bound = 1 / math.sqrt(max(n_src, 1))
        incoming = (torch.rand(m, n_src, generator=ctx.generator, dtype=torch.float64) * 2 - 1) * bound
        return incoming, torch.zeros(m, dtype=torch.float64)

    def _optimise(self, a, delta, incoming, bias, activation) -> torch.Tensor:
        if self.steps == 0:
            return incoming
        norm = incoming.norm(dim=1, keepdim=True)
        w = incoming.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=self.step_lr)
        for _ in range(self.steps):
            opt.zero_grad()
            (-candidate_gains(a, delta, w, bias, activation).norm(dim=0).sum()).backward()
            opt.step()
            with torch.no_grad():
                w.mul_(norm / w.norm(dim=1, keepdim=True).clamp_min(1e-30))
        return w.detach()

    def _splits(self, ctx, site: Site, a, delta) -> tuple[torch.Tensor, torch.Tensor]:
        """Each existing unit's best split direction ``(size, n_src + 1)`` and its predicted
        decrease ``(size,)`` (none when splits are off or the layer is modulated)."""
        net, layer = ctx.model, ctx.model.layers[site.layer]
        n_src = a.shape[1]
        if not self.splits or layer.modulator is not None:
            return torch.zeros(0, n_src + 1, dtype=torch.float64), torch.zeros(0, dtype=a.dtype, device=a.device)
        conn_in, conn_out = (net.connections[n] for n in chain_connections(net, site.layer, who="Firefly"))
        w_in = conn_in.effective_weight().detach().to(a)
        pre = a @ w_in.T + layer.bias.detach().to(a)
        grad_h = delta @ conn_out.effective_weight().detach().to(a)
        mask = torch.cat([conn_in.live(), torch.ones(layer.size, 1, dtype=torch.bool,
                                                     device=w_in.device)], 1).to(a)[:, None, :]
        directions = self._split_directions(ctx, site, layer.size, n_src).to(a) * mask
        directions = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        activation = layer.activation
        if self.steps:
            v = directions.clone().requires_grad_(True)
            opt = torch.optim.Adam([v], lr=self.split_lr)
            for _ in range(self.steps):  # on the unit sphere: the score of v / |v|
                opt.zero_grad()
                d = v * mask / (v * mask).norm(dim=-1, keepdim=True).clamp_min(1e-30)
                (-split_gains(a, pre, grad_h, d, self.eps, activation).sum()).backward()
                opt.step()
            with torch.no_grad():
                directions = v * mask / (v * mask).norm(dim=-1, keepdim=True).clamp_min(1e-30)
        scores = split_gains(a, pre, grad_h, directions, self.eps, activation)
        best = scores.argmax(dim=1)
        rows = torch.arange(layer.size, device=best.device)
        return directions[rows, best].cpu(), scores[rows, best]

    def _split_directions(self, ctx, site: Site, size: int, n_src: int) -> torch.Tensor:
        proposal = site.proposal or {}
        if "split_directions" in proposal:
            given = torch.as_tensor(proposal["split_directions"], dtype=torch.float64)
            given = given[:, None, :] if given.dim() == 2 else given
            if given.dim() != 3 or given.shape[0] != size or given.shape[2] != n_src + 1 or given.shape[1] < 1:
                raise ConfigError(f"proposal split_directions must be ({size}, {n_src + 1}) or "
                                  f"({size}, r, {n_src + 1}), got {tuple(given.shape)}")
            return given
        return torch.randn(size, self.candidates_per_unit, n_src + 1, generator=ctx.generator, dtype=torch.float64)

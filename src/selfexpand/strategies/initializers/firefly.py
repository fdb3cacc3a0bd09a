"""Firefly (Wu et al. 2020; ALGORITHMS.md §5), new-neuron candidates: keep the top-k by first-order
loss decrease.

For hidden layer ``l`` (one full connection ``l-1 -> l`` in, one ``l -> l+1`` out), a candidate unit
with incoming weights ``w``, bias ``b`` and outgoing weights ``eps * v`` changes the loss, to first
order in ``eps``, by ``eps * v . g`` with ``g = E[dL/dz_{l+1} relu(w . a_{l-1} + b)]``; the best
``v = -g / |g|`` gives the decrease ``eps * |g|``. Firefly draws ``candidates_per_unit * k``
candidates (Kaiming-uniform ``w``, ``b = 0``), takes ``steps`` Adam steps on their incoming weights
to increase ``sum |g|`` (rows kept at their initial norm), and keeps the ``k`` with the largest
``|g|``. The per-example ``dL/dz_{l+1}`` and ``a_{l-1}`` come from one gradient pass over ``sample``
training examples on a throw-away copy. New units: the chosen ``w``, ``b``, outgoing ``-eps g/|g|``:
the function changes by ``O(eps)``. Candidates may also be given (``Site.proposal["incoming"]``,
``["bias"]``), as a selector's proposal. Splitting existing units (the other half of Firefly) is not
implemented.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from ...errors import ConfigError
from ...ops import add_units
from ..base import Initializer, Site
from .gradmax import _chain_connections
from .new_units import layers_last_first

__all__ = ["FireflyInitializer", "layer_signals", "candidate_gains"]


def layer_signals(ctx, layer: str, sample: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example ``a_{l-1}`` (``(n, n_src)``) and ``dL/dz_{l+1}`` of the sample's mean loss
    (``(n, n_tgt)``) for hidden ``layer``, over the first ``sample`` training examples."""
    net = ctx.model
    conn_in, conn_out = _chain_connections(net, layer)
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
    return outputs[source].detach().double(), delta.detach().double()


def candidate_gains(a: torch.Tensor, delta: torch.Tensor, incoming: torch.Tensor, bias: torch.Tensor,
                    activation=F.relu) -> torch.Tensor:
    """``g_j = sum_i delta_i activation(w_j . a_i + b_j)`` for every candidate: ``(n_tgt, m)``
    (``delta`` already carries the mean's ``1/n``)."""
    return delta.T @ activation(a @ incoming.T + bias)


class FireflyInitializer(Initializer):
    """New units chosen among candidates by their first-order loss decrease.

    Args:
        candidates_per_unit: candidates drawn per unit to add.
        eps: scale of the new units' outgoing weights (the step of the first-order expansion).
        steps: Adam steps on the candidates' incoming weights before choosing (0: none).
        step_lr: their learning rate.
        sample: training examples used for the signals.
    """

    def __init__(self, candidates_per_unit: int = 4, *, eps: float = 1e-2, steps: int = 10,
                 step_lr: float = 1e-2, sample: int = 2048):
        for name, value, low in (("candidates_per_unit", candidates_per_unit, 1), ("steps", steps, 0),
                                 ("sample", sample, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {name}={value!r}")
        for name, value in (("eps", eps), ("step_lr", step_lr)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{name} must be a number > 0, got {name}={value!r}")
        self.candidates_per_unit, self.eps, self.steps = candidates_per_unit, float(eps), steps
        self.step_lr, self.sample = float(step_lr), sample

    def grow(self, ctx, sites: list[Site]) -> list:
        net, events = ctx.model, []
        for site in layers_last_first(net, sites):
            conn_in, conn_out = _chain_connections(net, site.layer)
            a, delta = layer_signals(ctx, site.layer, self.sample)
            incoming, bias = self._candidates(ctx, site, a.shape[1])
            incoming = self._optimise(a, delta, incoming, bias)
            gains = candidate_gains(a, delta, incoming, bias)
            norms = gains.norm(dim=0)
            top = torch.topk(norms, min(site.n_units, norms.numel())).indices
            outgoing = -self.eps * gains[:, top] / norms[top].clamp_min(1e-30)
            k = top.numel()
            event = add_units(net, site.layer, k, incoming={conn_in: incoming[top].float()},
                              bias=bias[top].float(), outgoing={conn_out: outgoing.float()}, optimizer=ctx.optimizer)
            event.details.update({"chosen": top.tolist(), "first_order_decrease": (self.eps * norms[top]).tolist()})
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

    def _optimise(self, a, delta, incoming, bias) -> torch.Tensor:
        if self.steps == 0:
            return incoming
        norm = incoming.norm(dim=1, keepdim=True)
        w = incoming.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=self.step_lr)
        for _ in range(self.steps):
            opt.zero_grad()
            (-candidate_gains(a, delta, w, bias).norm(dim=0).sum()).backward()
            opt.step()
            with torch.no_grad():
                w.mul_(norm / w.norm(dim=1, keepdim=True).clamp_min(1e-30))
        return w.detach()

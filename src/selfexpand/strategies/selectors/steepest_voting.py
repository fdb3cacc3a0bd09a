"""``SteepestVotingSelector``: SVoD, gradient voting decides how many units each layer gets.

ALGORITHMS.md §2. On a throw-away copy of the model:
1. every growable hidden layer gets ``candidates_per_unit * B`` candidate units, incoming weights,
   biases and outgoing weights ``U(-init_scale, init_scale)``;
2. the copy trains one epoch, all parameters, with RMSprop (lr 1e-3, momentum 0.1, alpha 0.9);
3. each unit gets a gate ``g = 0`` multiplying it by ``(1 + g)``, and one pass over the training set
   accumulates the mean ``dL/dg`` without updating anything;
4. the candidates of all layers are pooled and sorted by ``dL/dg`` ascending (most negative first:
   growing that unit lowers the loss fastest); the best ``B`` vote for their layer, and layer ``l``
   gets exactly its number of votes.
The model and its optimizer are never touched; the copy is discarded.

The gate multiplies the unit's output (a unit modulator). For ReLU, ``relu((1 + g) z) = (1 + g)
relu(z)`` near ``g = 0``, so this is the paper's pre-activation gate exactly; for other
activations it is the output gate. ``B`` comes from the trigger (``Decision.amount``, the rounds
schedule) or from ``units``. With a parameter budget, votes are taken in rank order while the
units they add still fit.
"""

from __future__ import annotations

import copy
import logging
import time

import torch

from ...errors import ConfigError, GrowthError
from ...graph.modulators import GateModulator
from ...ops import add_units
from ..base import Selector, Site

__all__ = ["SteepestVotingSelector", "growable_layers", "unit_cost"]

log = logging.getLogger("selfexpand.strategies")


def growable_layers(net) -> list[str]:
    """Hidden layers with at least one incoming connection writing all their units and one outgoing
    connection reading all of them (where new units get inputs and can be read)."""
    out = []
    for name in net.hidden_layers():
        ins = [c for c in net.incoming(name) if c.out_index is None]
        outs = [c for c in net.outgoing(name) if c.in_index is None]
        if ins and outs:
            out.append(name)
    return out


def unit_cost(net, layer: str) -> int:
    """``params`` one new unit of ``layer`` adds: its incoming weights, its bias, its outgoing weights."""
    fan_in = sum(c.shape[1] for c in net.incoming(layer) if c.out_index is None)
    fan_out = sum(c.shape[0] for c in net.outgoing(layer) if c.in_index is None)
    return fan_in + 1 + fan_out


def _uniform(shape, scale: float, gen) -> torch.Tensor:
    return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1).float() * scale


class SteepestVotingSelector(Selector):
    """SVoD: how many of ``B`` new units each hidden layer gets, by gate-gradient votes.

    Args:
        units: ``B`` when the trigger sets no amount.
        candidates_per_unit: candidates per layer = this x ``B`` (the paper: 2).
        init_scale: candidates' initial values are ``U(-init_scale, init_scale)``.
        copy_lr, copy_momentum, copy_alpha: RMSprop settings of the copy's training epoch.
        copy_epochs: epochs the copy trains before the vote.
        gate_batch_size: batch size of the gate-gradient pass (default: the run's; the mean
            gradient over the training set does not depend on it unless the model has batch norm).
    """

    def __init__(self, units: int = 36, *, candidates_per_unit: int = 2, init_scale: float = 0.01,
                 copy_lr: float = 1e-3, copy_momentum: float = 0.1, copy_alpha: float = 0.9,
                 copy_epochs: int = 1, gate_batch_size: int | None = None):
        for name, value in (("units", units), ("candidates_per_unit", candidates_per_unit)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {name}={value!r}")
        if isinstance(copy_epochs, bool) or not isinstance(copy_epochs, int) or copy_epochs < 0:
            raise ConfigError(f"copy_epochs must be an integer >= 0, got copy_epochs={copy_epochs!r}")
        for name, value in (("init_scale", init_scale), ("copy_lr", copy_lr)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{name} must be a number > 0, got {name}={value!r}")
        if gate_batch_size is not None and (not isinstance(gate_batch_size, int) or gate_batch_size < 1):
            raise ConfigError(f"gate_batch_size must be a positive integer or None, got gate_batch_size={gate_batch_size!r}")
        self.units, self.candidates_per_unit, self.init_scale = units, candidates_per_unit, float(init_scale)
        self.copy_lr, self.copy_momentum, self.copy_alpha = float(copy_lr), float(copy_momentum), float(copy_alpha)
        self.copy_epochs, self.gate_batch_size = copy_epochs, gate_batch_size

    def select(self, ctx) -> list[Site]:
        net = ctx.model
        amount = getattr(ctx.decision, "amount", None) or self.units
        layers = growable_layers(net)
        if not layers:
            log.info("SVoD: no growable hidden layer")
            return []
        for name in layers:
            if net.layers[name].modulator is not None:
                raise GrowthError(f"SVoD gates need layers without a unit modulator; layer {name!r} has "
                                  f"{net.layers[name].modulator.spec_name!r}")
        n_cand = self.candidates_per_unit * amount
        start = time.perf_counter()
        trial = self._candidates(net, layers, n_cand, ctx.generator)
        optimizer = torch.optim.RMSprop(trial.parameters(), lr=self.copy_lr, momentum=self.copy_momentum,
                                        alpha=self.copy_alpha)
        for _ in range(self.copy_epochs):
            ctx.train_epoch(trial, optimizer)
        copy_seconds = time.perf_counter() - start
        grads = self._gate_gradients(ctx, trial, layers, n_cand)
        gate_seconds = time.perf_counter() - start - copy_seconds
        votes = self._vote(ctx, net, layers, grads, amount)
        sites = [Site(layer=name, n_units=votes[name], score=float(grads[i].sort().values[:votes[name]].sum()),
                      info={"votes": votes[name], "candidates": n_cand, "copy_seconds": copy_seconds,
                            "gate_seconds": gate_seconds})
                 for i, name in enumerate(layers) if votes[name] > 0]
        log.info("SVoD votes for %d units: %s", amount, votes)
        return sites

    def _candidates(self, net, layers: list[str], n: int, gen) -> torch.nn.Module:
        """A copy of ``net`` with ``n`` candidates appended to every layer of ``layers``."""
        trial = copy.deepcopy(net)
        s = self.init_scale
        for name in layers:
            incoming = {k: _uniform((n, c.shape[1]), s, gen) for k, c in trial.connections.items()
                        if c.target == name and c.out_index is None}
            outgoing = {k: _uniform((c.shape[0], n), s, gen) for k, c in trial.connections.items()
                        if c.source == name and c.in_index is None}
            add_units(trial, name, n, incoming=incoming, bias=_uniform((n,), s, gen), outgoing=outgoing)
        return trial

    def _gate_gradients(self, ctx, trial, layers: list[str], n: int) -> list[torch.Tensor]:
        """Mean ``dL/dg`` of each layer's last ``n`` units over the training set (one pass)."""
        gates = []
        for name in layers:
            layer = trial.layers[name]
            layer.modulator = GateModulator(layer.size).to(layer.bias)
            gates.append(layer.modulator.gate)
        trial.invalidate()
        for p in trial.parameters():
            p.requires_grad_(False)
        for g in gates:
            g.requires_grad_(True)
        batch = self.gate_batch_size or (ctx.batch_size if net_has_batch_statistics(trial) else max(ctx.batch_size, 1024))
        return [g[-n:] for g in ctx.mean_gradients(gates, model=trial, batch_size=batch)]

    def _vote(self, ctx, net, layers: list[str], grads: list[torch.Tensor], amount: int) -> dict[str, int]:
        pooled = torch.cat(grads)
        owner = torch.cat([torch.full((g.numel(),), i) for i, g in enumerate(grads)])
        ranked = owner[torch.sort(pooled, stable=True).indices.cpu()].tolist()
        votes = {name: 0 for name in layers}
        left = ctx.params_left()
        costs = [unit_cost(net, name) for name in layers]
        # a new unit also meets the new units of adjacent growing layers: one weight each
        adjacent = [[j for j, other in enumerate(layers) if any(
            c.in_index is None and c.out_index is None and {c.source, c.target} == {name, other}
            for c in net.connections.values())] for name in layers]
        cast = 0
        for i in ranked:
            if cast == amount:
                break
            cost = costs[i] + sum(votes[layers[j]] for j in adjacent[i])
            if cost <= left:
                votes[layers[i]] += 1
                left -= cost
                cast += 1
        return votes


def net_has_batch_statistics(net) -> bool:
    """True when some module normalises by batch statistics (its gradients depend on the batch size)."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())

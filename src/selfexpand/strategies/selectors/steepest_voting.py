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
from dataclasses import dataclass

import torch

from ...errors import GrowthError
from ...graph.modulators import GateModulator
from ...ops import add_units
from ...settings import setting
from ...validators import Integer, Number, Optional
from ..base import Selector, Site
from ..registry import register_part
from ..topology import growable_layers, unit_cost

__all__ = ["SteepestVotingSelector"]

log = logging.getLogger("selfexpand.strategies")


def _uniform(shape, scale: float, gen) -> torch.Tensor:
    return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1).float() * scale


@register_part
@dataclass(eq=False)
class SteepestVotingSelector(Selector):
    """SVoD: how many of ``B`` new units each hidden layer gets, by gate-gradient votes. ``B`` is the
    trigger's amount (the rounds schedule), else ``units``."""

    name = "svod"
    units: int = setting(Integer(1), 36, "units to distribute when the trigger sets no amount")
    candidates_per_unit: int = setting(Integer(1), 2, "candidates per layer = this x the units to add (the paper: 2)")
    init_scale: float = setting(Number(0, low_open=True), 0.01, "candidates' values are U(-init_scale, init_scale)")
    copy_lr: float = setting(Number(0, low_open=True), 1e-3, "RMSprop learning rate of the copy's training")
    copy_momentum: float = setting(Number(0, 1, high_open=True), 0.1, "RMSprop momentum of the copy's training")
    copy_alpha: float = setting(Number(0, 1, low_open=True, high_open=True), 0.9,
                                "RMSprop smoothing constant of the copy's training")
    copy_epochs: int = setting(Integer(0), 1, "epochs the copy with candidates trains before the vote")
    gate_batch_size: int | None = setting(Optional(Integer(1)), None,
                                          "batch size of the gate-gradient pass (null: the run's under "
                                          "batch norm, else at least 1,024: the mean does not depend on it)")

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

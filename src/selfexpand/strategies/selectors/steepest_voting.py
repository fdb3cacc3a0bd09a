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

**Conv layers** (``grows_channels``; a conv start, ``conv=[...]``): a conv layer's units are its
channels, and its candidates are ``candidates_per_unit * B`` candidate channels: incoming kernels
``(n_in, kh, kw)``, biases and outgoing kernels ``(n_out, kh, kw)`` (or a dense reader's ``P``
position columns, the flatten boundary) ``U(-init_scale, init_scale)``; their batch norm, if any,
starts at weight 1, bias 0. The vote is the dense one with the gate on the channel's output map
``h_j`` (after batch norm, activation and pooling: before the norm a gate would cancel in training
mode): ``h_j -> (1 + g_j) h_j`` on every position, and ``dL/dg_j`` is the training-set mean of
``sum_p dL/dh_jp * h_jp``. It is read off the outgoing weights, with no gate module: every reader is
linear in ``h_j``, so scaling ``h_j`` by ``(1 + g_j)`` is scaling the channel's outgoing kernels (or
columns) ``W_j`` by ``(1 + g_j)``, and ``dL/dg_j = sum (W_j * dL/dW_j)`` over those entries (a mask,
if any, is inside ``W * dL/dW``). Dense and conv candidates are pooled in one ranking by this same
quantity, the rate at which growing the unit (channel) lowers the loss; a vote gives its layer one
unit or one channel. A channel's cost for the budget is ``fixed_units``': its kernels in and out,
bias, batch-norm weight and bias, a dense reader's ``P`` columns; two adjacent growing layers' new
units meet through one weight per pair, a kernel area between conv layers, ``P`` columns at the
flatten boundary. A conv layer at its cap (``max_channels``, as the baselines') takes no more votes:
they go to the next candidates in the ranking.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass

import torch

from ...errors import GrowthError
from ...graph.conv import ConvConnection, ConvLayer, positions
from ...graph.modulators import GateModulator
from ...ops import add_units
from ...settings import same_setting, setting
from ...spaces import Int, LogFloat
from ...validators import Integer, Number, Optional
from ..base import Selector, Site
from ..registry import register_part
from ..topology import growable_layers, unit_cost
from .fixed_units import AllLayersSelector, channel_room

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
    grows_channels = True  # conv layers: candidate channels, voted beside dense units (module docstring)
    units: int = setting(Integer(1), 36, "units to distribute when the trigger sets no amount")
    candidates_per_unit: int = setting(Integer(1), 2, "candidates per layer = this x the units to add (the paper: 2)",
                                       space=Int(1, 4))
    init_scale: float = setting(Number(0, low_open=True), 0.01, "candidates' values are U(-init_scale, init_scale)",
                                space=LogFloat(1e-3, 0.1))
    copy_lr: float = setting(Number(0, low_open=True), 1e-3, "RMSprop learning rate of the copy's training",
                             space=LogFloat(1e-4, 1e-2))
    copy_momentum: float = setting(Number(0, 1, high_open=True), 0.1, "RMSprop momentum of the copy's training")
    copy_alpha: float = setting(Number(0, 1, low_open=True, high_open=True), 0.9,
                                "RMSprop smoothing constant of the copy's training")
    copy_epochs: int = setting(Integer(0), 1, "epochs the copy with candidates trains before the vote")
    max_channels: list = same_setting(AllLayersSelector, "max_channels")
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
        """A copy of ``net`` with ``n`` candidates appended to every layer of ``layers`` (channels of a
        conv layer: kernels in and out, or a dense reader's position columns)."""
        trial = copy.deepcopy(net)
        s = self.init_scale
        for name in layers:
            p = positions(trial, name)
            incoming = {k: _uniform((n, *c.shape[1:]), s, gen) for k, c in trial.connections.items()
                        if c.target == name and c.out_index is None}
            outgoing = {k: _uniform((c.shape[0], n, *c.shape[2:]) if isinstance(c, ConvConnection)
                                    else (c.shape[0], n * p), s, gen)
                        for k, c in trial.connections.items() if c.source == name and c.in_index is None}
            add_units(trial, name, n, incoming=incoming, bias=_uniform((n,), s, gen), outgoing=outgoing)
        return trial

    def _gate_gradients(self, ctx, trial, layers: list[str], n: int) -> list[torch.Tensor]:
        """Mean ``dL/dg`` of each layer's last ``n`` units over the training set (one pass): a dense
        layer's through a gate modulator, a conv layer's from its outgoing weights (module docstring)."""
        tensors, readers = [], []  # readers[i]: the slot of layer i's gate, or [(slot, connection)]
        for name in layers:
            layer = trial.layers[name]
            if isinstance(layer, ConvLayer):
                outs = [c for c in trial.outgoing(name) if c.in_index is None]
                readers.append([(len(tensors) + i, c) for i, c in enumerate(outs)])
                tensors += [c.weight for c in outs]
            else:
                layer.modulator = GateModulator(layer.size).to(layer.bias)
                readers.append(len(tensors))
                tensors.append(layer.modulator.gate)
        trial.invalidate()
        for p in trial.parameters():
            p.requires_grad_(False)
        for t in tensors:
            t.requires_grad_(True)
        batch = self.gate_batch_size or (ctx.batch_size if net_has_batch_statistics(trial) else max(ctx.batch_size, 1024))
        grads = ctx.mean_gradients(tensors, model=trial, batch_size=batch)
        out = []
        for name, read in zip(layers, readers):
            if isinstance(read, int):
                out.append(grads[read][-n:])
                continue
            size, p = trial.layers[name].size, positions(trial, name)
            total = torch.zeros(size, dtype=torch.float64)
            for slot, c in read:
                # W * dL/dW = (W * M) * dL/d(W * M): a mask drops out
                wg = c.weight.detach().double().cpu() * grads[slot]
                if isinstance(c, ConvConnection):
                    total += wg.sum((0, 2, 3))
                else:  # columns c * P + p: channel c's positions
                    total += wg.view(c.shape[0], size, p).sum((0, 2))
            out.append(total[-n:])
        return out

    def _vote(self, ctx, net, layers: list[str], grads: list[torch.Tensor], amount: int) -> dict[str, int]:
        pooled = torch.cat(grads)
        owner = torch.cat([torch.full((g.numel(),), i) for i, g in enumerate(grads)])
        ranked = owner[torch.sort(pooled, stable=True).indices.cpu()].tolist()
        votes = {name: 0 for name in layers}
        left = ctx.params_left()
        costs = [unit_cost(net, name) for name in layers]
        # a new unit also meets the new units of adjacent growing layers: one weight each (a kernel
        # area between conv layers, the source's positions at the flatten boundary)
        place = {name: i for i, name in enumerate(layers)}
        adjacent: list[dict[int, int]] = [{} for _ in layers]
        for c in net.connections.values():
            if c.in_index is None and c.out_index is None and c.source in place and c.target in place:
                a, b, w = place[c.source], place[c.target], _pair_weights(net, c)
                adjacent[a][b] = adjacent[b][a] = max(w, adjacent[a].get(b, 0))
        room = [channel_room(net, name, self.max_channels) for name in layers]
        cast = 0
        for i in ranked:
            if cast == amount:
                break
            cost = costs[i] + sum(votes[layers[j]] * w for j, w in adjacent[i].items())
            if cost <= left and votes[layers[i]] < room[i]:
                votes[layers[i]] += 1
                left -= cost
                cast += 1
        return votes


def _pair_weights(net, c) -> int:
    """Weights connection ``c`` holds between one unit (channel) of its source and one of its target."""
    if isinstance(c, ConvConnection):
        return c.weight[0, 0].numel()
    return positions(net, c.source)


def net_has_batch_statistics(net) -> bool:
    """True when some module normalises by batch statistics (its gradients depend on the batch size)."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())

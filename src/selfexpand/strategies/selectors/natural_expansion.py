"""SENN's selector (ALGORITHMS.md §3): add width and depth where the natural expansion score says so.

At each check (the trigger decides when), on a sample of ``sample_size`` training examples:

**Depth** (when ``layer_cooldown`` checks have passed since the last insertion and a layer slot is
free): for every link ``src -> tgt`` of the chain, propose directions ``theta = (w, b)`` reading
``src``; a new layer of ``k = width(src)`` units with the rational activation at its identity point
adds to ``tgt``'s inputs, to first order, the features ``d phi / d(v, c)`` of each unit:
``2 z / (1 + z^2)`` and ``1 / (1 + z^2)`` with ``z = w . h_src + b``; everything linear in ``h_src``
is already spanned by ``tgt``'s inputs, so the Schur complement projects it out (the current
natural-gradient step). The basis ``B`` is the ``k`` best proposals, its score the exact increase of
``tgt``'s ``eta`` from all ``2k`` features (``depth_score="free"``: outgoing weights free) or from the
two coefficients acting through the fixed ``W B^-1`` (``"tied"``), divided by ``layer_cost_mul``
(times ``k`` when ``layer_cost_per_unit``). The best link passing both thresholds gets the layer; then the check ends.

**Width** otherwise: for every hidden layer ``l`` (``tgt`` = the layer reading it), propose units
reading ``l``'s input, score them by the exact increase of ``tgt``'s ``eta``, pick one by a softmax
over the proposals (temperature ``temperature * eta``; the acceptance test uses the softmax-weighted
mean score) or the best one (``choice="best"``), and accept when ``delta / eta > tau`` and
``delta / E||dL/dy||^2 > alpha``. After an acceptance the unit joins ``tgt``'s inputs and the layer is
proposed to again, until a rejection, ``capacity - 1`` units, or the parameter budget; a re-proposal
starts from the previous population and runs the fraction ``reproposal`` of the search (0.2; 0 only
scores the population again: this project's saving, the population being already near the modes,
which the accepted unit's projection only shifts).

**Conv layers** (issue #24): a conv layer's candidates are channels, ``theta`` its flattened incoming
kernel ``(C_in kh kw)`` and bias; its features are its output map (``pool(act(bn(z)))``, batch norm at
its fresh state, evaluation mode) as the reader's kernel window reads it, and every K-FAC quantity is
over (example, position) pairs (``senn.conv_scores``: ``eta`` and ``delta`` are ``L`` times the dense
scores of the pairs, ``L`` the reader's output positions). A conv layer's pairs are many (1,024
examples x 256 positions behind CIFAR's first block), and the search's cost grows with them: the
layer's check uses the sample's first ``ceil(conv_pairs / L)`` examples, all their positions (the sample
is a random draw; ``conv_pairs=0``: all of it). Depth is not implemented on conv layers: links that read
or write a spatial layer are skipped (logged).

Proposals: MALA (``search="mala"``: ``bursts`` bursts of ``steps`` steps, adapted step size) or
gradient ascent (``search="ascent"``), on ``log p(theta) = score(theta) / T - |theta|^2 / 2`` (a
standard normal prior). ``w = theta_w * prior_scale`` where ``prior_scale`` is ``1`` (the reference)
or ``1 / sqrt(fan_in)`` (``"fan_in"``, this project's default for wide inputs such as images).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import torch

from ...graph.conv import ConvConnection, ConvLayer, is_spatial, spatial_sizes
from ...settings import setting
from ...validators import Boolean, Choice, Integer, IntegerList, Number
from ..base import Selector, Site
from ..registry import register_part
from ..senn.chain_sample import chain_sample, sample_rows
from ..senn.conv_scores import candidate_maps, channel_features, conv_expansion_scores
from ..senn.natural_scores import (
    damp,
    expansion_scores,
    layer_stats,
    natural_score,
    output_gradient_moment,
    tied_expansion_score,
)
from ..senn.proposals import best_choice, gradient_ascent, mala, softmax_choice

__all__ = ["NaturalExpansionSelector"]

log = logging.getLogger(__name__)


def _depth_features(z: torch.Tensor) -> torch.Tensor:
    """``(P, N) -> (P, N, 2)``: the derivatives of the rational activation at identity w.r.t. ``v, c``."""
    q = 1 + z * z
    return torch.stack([2 * z / q, 1 / q], -1)


def _spread_basis(w: torch.Tensor, scores: torch.Tensor, k: int, min_angle: float = 0.3) -> torch.Tensor | None:
    """Indices of ``k`` proposals, best score first, each keeping at least ``min_angle`` of its norm
    outside the span of those taken before (so ``B`` is well conditioned); None if too few do."""
    chosen, q = [], torch.zeros(0, w.shape[1], dtype=w.dtype)
    for i in scores.argsort(descending=True).tolist():
        v = w[i] - q.T @ (q @ w[i])
        if v.norm() >= min_angle * w[i].norm() > 0:
            chosen.append(i)
            q = torch.cat([q, (v / v.norm()).unsqueeze(0)])
            if len(chosen) == k:
                return torch.tensor(chosen)
    return None


_POSITIVE = Number(0, low_open=True)


@register_part
@dataclass(eq=False)
class NaturalExpansionSelector(Selector):
    """See the module docstring. ``capacity`` lists the hidden layer slots: at most
    ``len(capacity)`` hidden layers, the ``j``-th at most ``capacity[j] - 1`` units wide."""

    name = "natural-expansion"
    grows = "units+layers"
    grows_channels = True  # width only: see the module docstring
    tau: float = setting(Number(0), 0.03, "accept a unit or layer when delta / eta exceeds this")
    alpha: float = setting(Number(0), 2.5e-3, "... and when delta / E|dL/dy|^2 exceeds this")
    capacity: list = setting(IntegerList(2, min_length=1), [128],
                             "hidden layer slots: at most len(capacity) layers, the j-th capacity[j] - 1 units wide")
    layer_cost_mul: float = setting(_POSITIVE, 20.0, "a layer's score is divided by this")
    layer_cost_per_unit: bool = setting(Boolean(), False, "divide a layer's score by its width too")
    layer_cooldown: int = setting(Integer(0), 3, "checks between two layer insertions")
    proposals: int = setting(Integer(1), 100, "proposals per layer and link at each check")
    search: str = setting(Choice("mala", "ascent"), "mala", "how proposals are improved")
    choice: str = setting(Choice("softmax", "best"), "softmax", "how a proposal is picked")
    bursts: int = setting(Integer(1), 300, "MALA bursts")
    steps: int = setting(Integer(1), 10, "MALA steps per burst")
    step_size: float = setting(_POSITIVE, 0.3, "MALA's initial step size")
    ascent_steps: int = setting(Integer(1), 50, "gradient-ascent steps (search=ascent)")
    ascent_lr: float = setting(_POSITIVE, 0.1, "gradient-ascent learning rate (search=ascent)")
    temperature: float = setting(Number(0), 0.1, "softmax temperature, times eta")
    prior_scale: str = setting(Choice("unit", "fan_in"), "unit", "incoming weights scaled by 1 or 1 / sqrt(fan_in)")
    sample_size: int = setting(Integer(1), 1024, "training examples sampled at a check")
    damping: float = setting(Number(0), 0.1, "Tikhonov damping of the Fisher factors, relative")
    reproposal: float = setting(Number(0, 1), 0.2, "fraction of the search run again after an acceptance")
    search_size: int = setting(Integer(0), 0, "examples of the sample the search uses (0: all of them)")
    conv_pairs: int = setting(Integer(0), 8192, "a conv layer's check: about this many (example, position) "
                              "pairs, all positions of the sample's first examples (0: the whole sample)")
    depth_score: str = setting(Choice("free", "tied"), "free", "a new layer's outgoing weights free or tied to W B^-1")
    width: bool = setting(Boolean(), True, "add units")
    depth: bool = setting(Boolean(), True, "insert layers")

    def setup(self) -> None:
        self.checks_since_layer = self.layer_cooldown  # the first check may insert a layer
        self.last_check: dict = {}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"checks_since_layer": self.checks_since_layer}

    def load_state_dict(self, state: dict) -> None:
        self.checks_since_layer = int(state.get("checks_since_layer", self.layer_cooldown))

    # ------------------------------------------------------------------ the check
    def select(self, ctx) -> list[Site]:
        net = ctx.model
        rows = sample_rows(ctx.data.x_train.shape[0], self.sample_size, ctx.generator).to(ctx.data.x_train.device)
        sample = chain_sample(net, ctx.data.x_train[rows], ctx.data.y_train[rows], ctx.loss_fn)
        self.last_check = {"output_grad_sq": sample.output_grad_sq, "layers": {}}
        budget = [ctx.params_left()]
        if self.depth and self.checks_since_layer >= self.layer_cooldown:
            site = self._depth_site(ctx, net, sample, budget)
            if site is not None:
                self.checks_since_layer = 0
                log.info("SENN check after epoch %d: a layer at %s (%s)", ctx.epoch, site.layer, self.last_check)
                return [site]
        self.checks_since_layer += 1
        if not self.width:
            return []
        sites = []
        hidden = net.hidden_layers()
        for pos, layer in enumerate(hidden):
            site = self._width_site(ctx, net, sample, layer, self.capacity[pos] - 1 if pos < len(self.capacity) else 0,
                                    budget)
            if site is not None:
                sites.append(site)
        log.info("SENN check after epoch %d: %s", ctx.epoch, self.last_check)
        return sites

    def _stats(self, a: torch.Tensor, d: torch.Tensor, positions: int = 1):
        """The layer's candidate-score statistics (damped ``G``), its undamped ``eta``, the damped ``G``.
        ``positions > 1``: ``a``, ``d`` are (example, position) rows of a conv connection and ``eta`` is
        ``positions`` times the pairs' dense score (``senn.conv_scores``)."""
        g = output_gradient_moment(d, normalise=True)
        grad_w = d.T @ a / a.shape[0]
        eta = float(natural_score(grad_w, a.T @ a / a.shape[0], g))
        if positions != 1:
            eta = positions * eta
        damped = damp(g, self.damping)
        return layer_stats(a, d, damped), eta, damped

    def _accepts(self, delta: float, eta: float, g2: float) -> bool:
        ratio = math.inf if eta <= 0 else delta / eta
        return delta > 0 and ratio > self.tau and delta / max(g2, 1e-30) > self.alpha

    def _search(self, score_fn, dim: int, eta: float, ctx,
                init: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``proposals`` parameter vectors and their scores, improved by MALA or gradient ascent, drawn
        from ``ctx.generator``. A re-proposal (``init`` given: the previous population) runs
        ``reproposal`` of the search (0: the population is only scored again). The growth step's FLOP
        meter (``ctx.growth_meter``) measures the search's first step and counts the others alike."""
        generator, meter = ctx.generator, ctx.growth_meter
        tick = meter.repeats() if meter is not None else None
        fraction = 1.0 if init is None else self.reproposal
        if init is None:
            init = torch.randn(self.proposals, dim, generator=generator, dtype=torch.float64)
        temp = self.temperature * max(eta, 1e-12)
        theta = init
        if self.search == "mala" and round(self.bursts * fraction) > 0:
            def log_density(theta):
                return score_fn(theta) / temp - 0.5 * theta.pow(2).sum(1)

            theta, _, _ = mala(log_density, init, bursts=round(self.bursts * fraction), steps=self.steps,
                               step_size=self.step_size, generator=generator, step_context=tick)
        elif self.search == "ascent" and round(self.ascent_steps * fraction) > 0:
            theta, _ = gradient_ascent(lambda t: score_fn(t) / temp - 0.5 * t.pow(2).sum(1), init,
                                       steps=round(self.ascent_steps * fraction), lr=self.ascent_lr,
                                       step_context=tick)
        with torch.no_grad():
            return theta.detach(), score_fn(theta.detach()).detach()

    def _take(self, s, theta, eta, ctx, sample, record: dict, n_before: int, scale):
        """The softmax / argmax choice among the proposals' scores ``s`` and its acceptance test; the
        record updated either way. Returns ``(index, incoming weights, bias, score)`` or None (refused)."""
        index, delta = self._choose(s, eta, ctx.generator)
        accepted = self._accepts(delta, eta, sample.output_grad_sq)
        record.update(eta=eta, delta=delta, units=n_before + accepted)
        if not accepted:
            return None
        return index, theta[index, :-1] * scale, theta[index, -1], delta

    def _choose(self, scores: torch.Tensor, eta: float, generator) -> tuple[int, float]:
        if self.choice == "best":
            index, value = best_choice(scores)
        else:
            index, value = softmax_choice(scores, self.temperature * max(eta, float(scores.max()), 1e-12), generator)
        return int(index), float(value)

    def _search_rows(self, n: int, generator) -> torch.Tensor | None:
        """A random subset of ``search_size`` of the sample's ``n`` rows for the search (None: all)."""
        if not self.search_size or self.search_size >= n:
            return None
        return torch.randperm(n, generator=generator)[:self.search_size]

    def _scale(self, fan_in: int) -> float:
        return 1.0 if self.prior_scale == "unit" else 1 / math.sqrt(max(fan_in, 1))

    def _width_site(self, ctx, net, sample, layer: str, cap: int, budget: list) -> Site | None:
        if isinstance(net.layers[layer], ConvLayer):
            return self._conv_width_site(ctx, net, sample, layer, cap, budget)
        tgt = net.order[net.order.index(layer) + 1]
        src = net.incoming(layer)[0].source
        x = sample.outputs[src]
        x32 = x.float()  # the (N, n_in) x (n_in, P) product in float32: the search's main cost
        n_in, n_out = x.shape[1], net.layers[tgt].size
        act = copy.deepcopy(net.layers[layer].activation).float().requires_grad_(False)
        scale, cost = self._scale(n_in), n_in + 1 + n_out
        a, d = sample.inputs[tgt], sample.grads[tgt]
        weights, biases, scores, width = [], [], [], net.layers[layer].size
        record = self.last_check["layers"].setdefault(layer, {})
        population = None
        subset = self._search_rows(x.shape[0], ctx.generator)

        def scores_on(stats, xs):
            def score_fn(theta):
                f = act(xs @ (theta[:, :-1] * scale).float().T + theta[:, -1].float()).double()  # (N, P)
                return expansion_scores(stats, f.T.unsqueeze(-1))[0]
            return score_fn

        while width + len(weights) < cap and budget[0] >= cost:
            stats, eta, _ = self._stats(a, d)
            if subset is None:
                theta, s = self._search(scores_on(stats, x32), n_in + 1, eta, ctx, init=population)
            else:  # search on a subset, choose and accept on the whole sample
                theta, _ = self._search(scores_on(self._stats(a[subset], d[subset])[0], x32[subset]), n_in + 1,
                                        eta, ctx, init=population)
                with torch.no_grad():
                    s = scores_on(stats, x32)(theta)
            population = theta
            chosen = self._take(s, theta, eta, ctx, sample, record, len(weights), scale)
            if chosen is None:
                break
            index, w, b, delta = chosen
            weights.append(w)
            biases.append(b)
            scores.append(delta)
            f = act(x32 @ w.float() + b.float()).double().unsqueeze(1)
            a = torch.cat([a[:, :-1], f, a[:, -1:]], 1)  # the unit joins tgt's inputs (before the 1)
            budget[0] -= cost
        if not weights:
            return None
        return Site(layer=layer, n_units=len(weights), score=sum(scores),
                    proposal={"weight": torch.stack(weights).float(), "bias": torch.stack(biases).float()},
                    info={"kind": "width", "scores": scores})

    def _conv_width_site(self, ctx, net, sample, layer: str, cap: int, budget: list) -> Site | None:
        """:meth:`_width_site` for conv ``layer``: channel proposals, scored on (example, position) pairs."""
        tgt = net.order[net.order.index(layer) + 1]
        conn_in, conn_out = net.incoming(layer)[0], net.incoming(tgt)[0]
        target = net.layers[layer]
        positions = sample.positions[tgt]
        n_ex = sample.maps[conn_in.source].shape[0]
        if self.conv_pairs:  # the first examples of the (random) sample, all their positions
            n_ex = min(n_ex, max(1, math.ceil(self.conv_pairs / positions)))
        src_map = sample.maps[conn_in.source][:n_ex]
        patches = torch.nn.functional.unfold(src_map, conn_in.kernel_size, padding=conn_in.padding,
                                             stride=conn_in.stride).float()  # (N, D, L1)
        pre_hw = spatial_sizes(net)[layer][0]
        reader = conn_out if isinstance(conn_out, ConvConnection) else None
        n_in = patches.shape[1]
        per_channel = conn_out.shape[0] * (conn_out.weight[0, 0].numel() if reader is not None
                                           else sample.maps[layer][0, 0].numel())
        cost = n_in + 1 + per_channel + (2 if target.norm is not None and target.norm.affine else 0)
        act_layer = copy.deepcopy(target).float().requires_grad_(False)
        scale = self._scale(n_in)
        a, d = sample.inputs[tgt][:n_ex * positions], sample.grads[tgt][:n_ex * positions]
        weights, biases, scores, width = [], [], [], target.size
        record = self.last_check["layers"].setdefault(layer, {})
        record["pairs"] = n_ex * positions
        population = None

        def features(theta, rows=None):
            p = patches if rows is None else patches[rows]
            maps = candidate_maps(act_layer, p, (theta[:, :-1] * scale).float(), theta[:, -1].float(), pre_hw)
            return channel_features(maps.double(), reader)

        def scores_on(stats, rows=None):
            return lambda theta: conv_expansion_scores(stats, features(theta, rows), positions)[0]

        subset = self._search_rows(src_map.shape[0], ctx.generator)
        while width + len(weights) < cap and budget[0] >= cost:
            stats, eta, _ = self._stats(a, d, positions)
            if subset is None:
                theta, s = self._search(scores_on(stats), n_in + 1, eta, ctx, init=population)
            else:  # search on a subset of the examples (all their positions), choose on the whole sample
                pair = (subset[:, None] * positions + torch.arange(positions)).reshape(-1)
                theta, _ = self._search(scores_on(self._stats(a[pair], d[pair], positions)[0], subset), n_in + 1,
                                        eta, ctx, init=population)
                with torch.no_grad():
                    s = scores_on(stats)(theta)
            population = theta
            chosen = self._take(s, theta, eta, ctx, sample, record, len(weights), scale)
            if chosen is None:
                break
            index, w, b, delta = chosen
            weights.append(w)
            biases.append(b)
            scores.append(delta)
            with torch.no_grad():
                f = features(theta[index:index + 1])[0]  # (rows, k): the channel joins tgt's inputs
            a = torch.cat([a[:, :-1], f, a[:, -1:]], 1)
            budget[0] -= cost
        if not weights:
            return None
        kernels = torch.stack(weights).float().reshape(len(weights), *conn_in.weight.shape[1:])
        return Site(layer=layer, n_units=len(weights), score=sum(scores),
                    proposal={"weight": kernels, "bias": torch.stack(biases).float()},
                    info={"kind": "width", "scores": scores})

    def _depth_site(self, ctx, net, sample, budget: list) -> Site | None:
        hidden = net.hidden_layers()
        if len(hidden) >= len(self.capacity):
            return None
        best = None
        for i, (src, tgt) in enumerate(zip(net.order, net.order[1:])):
            if is_spatial(net, src) or isinstance(net.layers[tgt], ConvLayer):
                log.info("SENN depth %s -> %s: inserting a layer at a conv layer (or across the flatten boundary) "
                         "is not implemented; link skipped", src, tgt)
                continue
            k = net.layers[src].size
            widths = [net.layers[h].size for h in hidden[:i]] + [k] + [net.layers[h].size for h in hidden[i:]]
            if any(w > c - 1 for w, c in zip(widths, self.capacity)):
                continue
            cost = k * k + k + 3  # B, its bias, phi's 3 coefficients (W pinv(B) replaces W: same size)
            if budget[0] < cost or k > self.proposals:
                continue
            x, a, d = sample.outputs[src], sample.inputs[tgt], sample.grads[tgt]
            conn = net.connection_names(source=src, target=tgt)[0]
            stats, eta, damped = self._stats(a, d)
            scale = self._scale(k)

            def score_fn(theta, stats=stats, x=x, scale=scale):
                z = (x @ (theta[:, :-1] * scale).T + theta[:, -1]).T  # (P, N)
                return expansion_scores(stats, _depth_features(z))[0]

            theta, s = self._search(score_fn, k + 1, eta, ctx)
            top = _spread_basis(theta[:, :-1], s, k)
            if top is None:
                log.info("SENN depth %s -> %s: the proposals give no well-conditioned basis; skipped", src, tgt)
                continue
            basis, bias = theta[top, :-1] * scale, theta[top, -1]
            features = _depth_features(x @ basis.T + bias)  # (N, k, 2)
            if self.depth_score == "free":
                raw = expansion_scores(stats, features.reshape(1, x.shape[0], 2 * k))[0][0]
            else:  # v and c act through the fixed W B^-1
                w = net.connections[conn].effective_weight().detach().double().cpu()
                w_out = torch.linalg.solve(basis.T, w.T).T
                jacobian = torch.einsum("ok,nkp->nop", w_out, features)  # (N, n_tgt, 2)
                raw = tied_expansion_score(stats, jacobian, damped)
            delta = float(raw) / (self.layer_cost_mul * (k if self.layer_cost_per_unit else 1))
            self.last_check.setdefault("depth", {})[f"{src}->{tgt}"] = {"eta": eta, "delta": delta}
            if self._accepts(delta, eta, sample.output_grad_sq) and (best is None or delta > best.score):
                best = Site(layer=conn, n_units=k, score=delta, info={"kind": "depth", "cost": cost},
                            proposal={"weight": basis.float(), "bias": bias.float()})
        if best is not None:
            budget[0] -= best.info["cost"]
        return best

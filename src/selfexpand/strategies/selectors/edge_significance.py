"""``EdgeSignificanceSelector``: the most significant edges into the output layer (ALGORITHMS.md §1).

Candidates are the live, non-provisional edges of every connection into the output layer. Their
scores (from :class:`EdgeStatistics`) are min-max normalised to [0, 1] over all candidates; those with
a score ``> tau`` are selected, highest first, at most ``max_new``, and trimmed further so that the
split keeps ``params`` within the run's budget. The selector brings its statistics and the pruning of
the eps edges its splits create (:class:`EpsEdgePruner`, sharing the statistics) as helper parts.

**Past the budget** (``past_budget``, a departure from ALGORITHMS.md §1, which prunes only eps-born
edges and so stops growing at ``--max-params``; off in ``edge-reference``): a split that the budget
cannot hold is paid for by pruning, in the same growth step, as many of the least significant live
edges of the graph (any connection, not only eps-born edges) as it needs beyond the params left, in
the spirit of dynamic sparse training (RigL, Evci et al. 2020), so the structure keeps improving at
constant size. Pruned at most: ``swap_fraction`` of the live weights per step; never an edge of the
selected set, nor a unit's last input or output edge (:func:`ranked_prunable_edges`). "Least
significant" by ``past_budget``: ``magnitude`` ``|w|`` (RigL's drop criterion), ``significance`` the
selection's own statistics on every edge, ``taylor`` ``|w|`` times those statistics (with the default
``abs_grad``/``mean``: ``|w| E|dL/dw|``, the first-order estimate of the loss change of removing the
edge). The pruned edges ride on the site (``info["prune"]``); the initializer prunes them, splits,
then compacts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...settings import same_setting, setting
from ...spaces import Float, Int, LogFloat
from ...validators import Choice, Integer, Number
from ..base import Selector, Site
from ..helpers.edge_pruning import EpsEdgePruner, group_edges, ranked_prunable_edges
from ..helpers.edge_statistics import EdgeStatistics
from ..registry import register_part
from ..topology import resolve_signed

__all__ = ["EdgeSignificanceSelector", "split_cost", "PAST_BUDGET"]

#: ``past_budget`` values: ``False`` (``off`` on the command line; ALGORITHMS.md §1: no growth once the
#: budget is full), else the score by which the least significant live edges are pruned to pay for a
#: split (module docstring).
PAST_BUDGET = (False, "magnitude", "significance", "taylor")


def split_cost(parent_keys: torch.Tensor, n_outputs: int, signed: bool) -> torch.Tensor:
    """``params`` added by splitting the first ``k`` edges, for every ``k`` (1-based positions).

    One new unit per edge (two if signed), each with a bias, an edge from every distinct parent so
    far, and an edge to every output; the split edges themselves are removed.
    """
    k = torch.arange(1, parent_keys.numel() + 1)
    first = torch.ones(parent_keys.numel(), dtype=torch.bool)
    if parent_keys.numel():
        _, inverse = torch.unique(parent_keys, return_inverse=True)
        seen = torch.full((int(inverse.max()) + 1,), parent_keys.numel(), dtype=torch.long)
        seen.scatter_reduce_(0, inverse, torch.arange(parent_keys.numel()), reduce="amin")
        first = seen[inverse] == torch.arange(parent_keys.numel())
    parents = torch.cumsum(first.long(), 0)
    units = 2 * k if signed else k
    return units * (1 + parents + n_outputs) - k


@register_part
@dataclass(eq=False)
class EdgeSignificanceSelector(Selector):
    """The edges into the output layer whose normalised score exceeds ``tau``, at most ``max_new``."""

    name = "edge-significance"
    grows = "edges"
    metric: str = same_setting(EdgeStatistics, "metric")
    aggregation: str = same_setting(EdgeStatistics, "aggregation")
    tau: float = setting(Number(0, 1, high_open=True), 0.7, "edges scoring above this (min-max normalised) are split",
                        space=Float(0.05, 0.9))
    max_new: int = setting(Integer(1), 900, "edges split at most per growth step",
                           space=Int(8, 2048, log=True))
    signed: object = setting(Choice("auto", True, False), "auto",
                             "budget two units per split edge (auto: where a parent can be negative)")
    tau_prune: float = same_setting(EpsEdgePruner, "tau_prune", space=LogFloat(0.005, 0.3))
    prune_after: int = same_setting(EpsEdgePruner, "prune_after")
    tuned_epochs: int | None = same_setting(EpsEdgePruner, "tuned_epochs")
    past_budget: object = setting(Choice(*PAST_BUDGET), False,
                                  "at --max-params, keep splitting, paid for by pruning the least significant "
                                  "live edges by this score (not ALGORITHMS.md §1; false: growth stops)")
    swap_fraction: float = setting(Number(0, 1, low_open=True), 0.05,
                                   "past the budget, at most this fraction of the live weights pruned per step")

    def setup(self) -> None:
        self.statistics = EdgeStatistics(self.metric, self.aggregation,
                                         track_all=self.past_budget in ("significance", "taylor"))
        self.pruner = EpsEdgePruner(self.statistics, self.tau_prune, self.prune_after, self.tuned_epochs)

    def helpers(self) -> list:
        return [self.statistics, self.pruner]

    def select(self, ctx) -> list[Site]:
        model = ctx.model
        names = model.connection_names(target=model.output_name)
        scores = self.statistics.scores(ctx, names)
        values, conn_ids, rows, cols, parents = [], [], [], [], []
        for i, name in enumerate(names):
            c = model.connections[name]
            live = c.live()
            if c.provisional is not None:
                live = live & ~c.provisional
            r, col = torch.nonzero(live, as_tuple=True)
            values.append(scores[name][r, col])
            conn_ids.append(torch.full_like(r, i))
            rows.append(r)
            cols.append(col)
            source_pos = model.order.index(c.source)
            parents.append(source_pos * 1_000_000_000 + c.source_units(model.layers[c.source].size)[col])
        values = torch.cat(values)
        if values.numel() == 0:
            return []
        low, high = values.min(), values.max()
        if not high > low:
            return []
        normalised = (values - low) / (high - low)
        order = torch.argsort(normalised, descending=True, stable=True)
        order = order[normalised[order] > self.tau][: self.max_new]
        conn_ids, rows, cols = torch.cat(conn_ids), torch.cat(rows), torch.cat(cols)
        prune = None
        if ctx.max_params is not None and order.numel():
            signed = resolve_signed(self.signed, ctx)
            cost = split_cost(torch.cat(parents)[order], model.layers[model.output_name].size, signed)
            room = ctx.params_left()
            if self.past_budget is False or not bool(cost[-1] > room):
                order = order[: int((cost <= room).sum())]
            else:
                chosen = group_edges(names, conn_ids[order], rows[order], cols[order])
                ranked = ranked_prunable_edges(model, self.prune_scores(ctx), exclude=chosen)
                available = min(ranked[1].numel(), int(self.swap_fraction * model.counts()["weights_active"]))
                order = order[: int((cost <= room + available).sum())]
                need = int(cost[order.numel() - 1]) - int(room) if order.numel() else 0
                if need > 0:
                    prune = group_edges(ranked[0], *(t[:need] for t in ranked[1:]))
        if order.numel() == 0:
            return []
        edges = group_edges(names, conn_ids[order], rows[order], cols[order])
        info = {"n_edges": int(order.numel())}
        if prune:
            info.update(prune=prune, n_pruned=sum(int(r.numel()) for r, _ in prune.values()))
        return [Site(layer=model.output_name, edges=edges, score=float(normalised[order].mean()), info=info)]

    def prune_scores(self, ctx) -> dict[str, torch.Tensor]:
        """Per connection, the ``past_budget`` score of every stored entry (lower: pruned first)."""
        model = ctx.model
        names = list(model.connections)
        magnitude = {n: model.connections[n].effective_weight().detach().abs() for n in names}
        if self.past_budget == "magnitude":
            return magnitude
        scores = self.statistics.scores(ctx, names)
        if self.past_budget == "significance":
            return scores
        return {n: magnitude[n] * scores[n] for n in names}

"""``EdgeSignificanceSelector``: the most significant edges into the output layer (ALGORITHMS.md §1).

Candidates are the live, non-provisional edges of every connection into the output layer. Their
scores (from :class:`EdgeStatistics`) are min-max normalised to [0, 1] over all candidates; those with
a score ``> tau`` are selected, highest first, at most ``max_new``, and trimmed further so that the
split keeps ``params`` within the run's budget. The selector brings its statistics and the pruning of
the eps edges its splits create (:class:`EpsEdgePruner`, sharing the statistics) as helper parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...settings import same_setting, setting
from ...validators import Choice, Integer, Number
from ..base import Selector, Site
from ..helpers.edge_pruning import EpsEdgePruner
from ..helpers.edge_statistics import EdgeStatistics
from ..registry import register_part
from ..topology import resolve_signed

__all__ = ["EdgeSignificanceSelector", "split_cost"]


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
    tau: float = setting(Number(0, 1, high_open=True), 0.7, "edges scoring above this (min-max normalised) are split")
    max_new: int = setting(Integer(1), 900, "edges split at most per growth step")
    signed: object = setting(Choice("auto", True, False), "auto",
                             "budget two units per split edge (auto: where a parent can be negative)")
    tau_prune: float = same_setting(EpsEdgePruner, "tau_prune")
    prune_after: int = same_setting(EpsEdgePruner, "prune_after")

    def setup(self) -> None:
        self.statistics = EdgeStatistics(self.metric, self.aggregation)
        self.pruner = EpsEdgePruner(self.statistics, self.tau_prune, self.prune_after)

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
        if ctx.max_params is not None and order.numel():
            signed = resolve_signed(self.signed, ctx)
            cost = split_cost(torch.cat(parents)[order], model.layers[model.output_name].size, signed)
            order = order[: int((cost <= ctx.params_left()).sum())]
        if order.numel() == 0:
            return []
        conn_ids, rows, cols = torch.cat(conn_ids)[order], torch.cat(rows)[order], torch.cat(cols)[order]
        edges = {}
        for i, name in enumerate(names):
            mine = conn_ids == i
            if bool(mine.any()):
                edges[name] = (rows[mine], cols[mine])
        return [Site(layer=model.output_name, edges=edges, score=float(normalised[order].mean()),
                     info={"n_edges": int(order.numel())})]

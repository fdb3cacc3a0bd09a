"""``EdgeSignificanceSelector``: the most significant edges into the output layer (ALGORITHMS.md §1).

Candidates are the live, non-provisional edges of every connection into the output layer. Their
scores (from :class:`EdgeStatistics`) are min-max normalised to [0, 1] over all candidates; those with
a score ``> tau`` are selected, highest first, at most ``max_new``, and trimmed further so that the
split keeps ``params`` within the run's budget.
"""

from __future__ import annotations

import torch

from ...errors import ConfigError
from ..base import Selector, Site
from ..edge_statistics import EdgeStatistics
from ..initializers.edge_split import resolve_signed

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


class EdgeSignificanceSelector(Selector):
    def __init__(self, statistics: EdgeStatistics, tau: float = 0.7, max_new: int = 900,
                 signed="auto"):
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 <= tau < 1:
            raise ConfigError(f"tau must be in [0, 1), got tau={tau!r}")
        if isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 1:
            raise ConfigError(f"max_new must be a positive integer, got max_new={max_new!r}")
        if signed not in ("auto", True, False):
            raise ConfigError(f"signed must be 'auto', true or false, got signed={signed!r}")
        self.statistics, self.tau, self.max_new, self.signed = statistics, tau, max_new, signed

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

"""Pruning for edge expansion: the eps edges that did not become useful (ALGORITHMS.md §1), and the
least significant live edges that pay for a split past the budget (a departure from §1).

:class:`EpsEdgePruner`: ``prune_after`` epochs after a split (scaled with the run's length, as the
plateau trigger's), the provisional (eps-born) edges of the new layer's connections are scored with the
same statistics as the selection, min-max normalised jointly, and those whose score is **below**
``tau_prune`` are masked (the reference inverts this); the survivors stop being provisional, and the
graph is compacted so that its storage follows what is left.

:func:`ranked_prunable_edges` (``past_budget``, not in ALGORITHMS.md §1, which prunes only eps-born
edges): every live edge of the graph, least significant first, leaving out those whose removal would
take a unit's last live input edge (hidden or output unit) or a hidden unit's last live output edge,
so that pruning never disconnects a unit and never removes one (every unit keeps a path from the
inputs and, hidden, to the outputs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...ops import compact, prune_edges
from ...settings import setting
from ...validators import Integer, Number
from ..base import GrowthPart
from ..budget import run_length, scale_epochs, tuned_epochs_setting
from .edge_statistics import EdgeStatistics

__all__ = ["EpsEdgePruner", "ranked_prunable_edges", "group_edges", "compact_if_changed"]


@dataclass(eq=False)
class EpsEdgePruner(GrowthPart):
    """Prune a split's eps edges that score below ``tau_prune``, ``prune_after`` epochs after it, by
    the scores of ``statistics`` (shared with the selector)."""

    statistics: EdgeStatistics
    tau_prune: float = setting(Number(0, 1), 0.1, "eps edges scoring below this (min-max normalised) are pruned")
    prune_after: int = setting(Integer(0), 2, "epochs after a split before its eps edges are pruned")
    tuned_epochs: int | None = tuned_epochs_setting()

    def setup(self) -> None:
        self.pending: list[list] = []  # [due_epoch, [connections of the split]]

    def on_grow_end(self, ctx, events: list, reason: str = "", **kwargs) -> None:
        delay = scale_epochs(self.prune_after, self.tuned_epochs, run_length(ctx))  # as the plateau trigger's
        for event in events:
            if event.kind == "split_edges":
                self.pending.append([ctx.epoch + delay, list(event.details["connections"])])

    def on_validation_end(self, ctx, record: dict | None = None, **kwargs) -> list:
        due = {name for epoch, names in self.pending if epoch <= ctx.epoch for name in names}
        if not due:
            return []
        self.pending = [p for p in self.pending if p[0] > ctx.epoch]
        model = ctx.model
        names = [n for n, c in model.connections.items() if n in due and c.provisional is not None]
        if not names:
            return []
        scores = self.statistics.scores(ctx, names)
        candidates = {n: model.connections[n].provisional & model.connections[n].live() for n in names}
        values = torch.cat([scores[n][candidates[n]] for n in names])
        if values.numel() == 0:
            return []
        low, high = values.min(), values.max()
        span = high - low if high > low else torch.ones_like(high)
        edges = {}
        for n in names:
            doomed = candidates[n] & ((scores[n] - low) / span < self.tau_prune)
            rows, cols = torch.nonzero(doomed, as_tuple=True)
            edges[n] = (rows, cols)
        events = []
        if any(r.numel() for r, _ in edges.values()):
            events.append(prune_edges(model, edges, optimizer=ctx.optimizer))
        for n in names:
            model.connections[n].provisional = None
        return events + compact_if_changed(model, optimizer=ctx.optimizer)

    def state_dict(self) -> dict:
        return {"pending": self.pending}

    def load_state_dict(self, state: dict) -> None:
        self.pending = [list(p) for p in state.get("pending", [])]


def compact_if_changed(model, *, optimizer=None) -> list:
    """:func:`selfexpand.ops.compact` ``model``; its event in a list when it changed a count (units or
    edges removed, stored params dropped), else ``[]``, so that no empty compaction is recorded.

    The event's ``details`` gain ``stored_params_before`` / ``stored_params_after``: what compaction
    is for (the live counts of its event stay put while it drops masked storage)."""
    stored_before = model.counts()["stored_params"]
    event = compact(model, optimizer=optimizer)
    stored_after = model.counts()["stored_params"]
    if not (event.units_removed or event.edges_removed or stored_after != stored_before):
        return []
    event.details.update(stored_params_before=int(stored_before), stored_params_after=int(stored_after))
    return [event]


def _rank_in_group(groups: torch.Tensor) -> torch.Tensor:
    """For each position ``i``, how many earlier positions hold the same group as ``i``."""
    index = torch.argsort(groups, stable=True)
    sorted_groups = groups[index]
    position = torch.arange(groups.numel(), device=groups.device)
    start = torch.ones_like(sorted_groups, dtype=torch.bool)
    start[1:] = sorted_groups[1:] != sorted_groups[:-1]
    run_start = torch.cummax(torch.where(start, position, torch.zeros_like(position)), 0).values
    rank = torch.empty_like(position)
    rank[index] = position - run_start
    return rank


def ranked_prunable_edges(model, scores: dict[str, torch.Tensor], exclude: dict | None = None
                          ) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Live edges that may be pruned, lowest ``scores`` first (ties: connection order, then row-major).

    An edge is left out when it is in ``exclude`` (``{connection: (rows, cols)}``), when a unit at
    either end is not live, or when pruning it together with every lower-ranked candidate could take
    the last live input edge of its target unit or (hidden source) the last live output edge of its
    source unit: of a unit with ``d`` live input edges at most ``d - 1`` are ever candidates, the
    lowest-ranked ones (conservative: a candidate left out for one end still counts at the other).
    Every prefix of the ranking can therefore be pruned without disconnecting or removing a unit.

    Args:
        scores: per connection, a score for every stored entry (same shape as its weight).

    Returns:
        ``(names, conn_ids, rows, cols)``: the candidates in order, ``names[conn_ids[i]]`` being the
        connection of the ``i``-th.
    """
    names = list(model.connections)
    sizes = {name: layer.size for name, layer in model.layers.items()}
    offset, total = {}, 0
    for name in model.layers:
        offset[name] = total
        total += sizes[name]
    device = model.layers[model.output_name].bias.device
    live_units = {name: layer.live_units().to(device) for name, layer in model.layers.items()}
    in_degree = torch.zeros(total, dtype=torch.long, device=device)
    out_degree = torch.zeros(total, dtype=torch.long, device=device)
    parts = []
    for i, name in enumerate(names):
        c = model.connections[name]
        tgt = c.target_units(sizes[c.target]).to(device)
        src = c.source_units(sizes[c.source]).to(device)
        live = c.live().to(device) & live_units[c.target][tgt][:, None] & live_units[c.source][src][None, :]
        in_degree.index_add_(0, offset[c.target] + tgt, live.sum(1))
        out_degree.index_add_(0, offset[c.source] + src, live.sum(0))
        if exclude and name in exclude:
            rows, cols = exclude[name]
            live = live.clone()
            live[torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)] = False
        r, col = torch.nonzero(live, as_tuple=True)
        parts.append((torch.full_like(r, i), r, col, scores[name].to(device)[r, col].float(),
                      offset[c.target] + tgt[r], offset[c.source] + src[col],
                      torch.full_like(r, int(model.layers[c.source].is_input), dtype=torch.bool)))
    if not parts:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return names, empty, empty, empty
    conn_ids, rows, cols, values, targets, sources, from_input = (torch.cat(x) for x in zip(*parts))
    order = torch.argsort(values, stable=True)
    conn_ids, rows, cols = conn_ids[order], rows[order], cols[order]
    targets, sources, from_input = targets[order], sources[order], from_input[order]
    keep = _rank_in_group(targets) < in_degree[targets] - 1
    keep &= from_input | (_rank_in_group(sources) < out_degree[sources] - 1)
    return names, conn_ids[keep], rows[keep], cols[keep]


def group_edges(names: list[str], conn_ids: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> dict:
    """``{connection: (rows, cols)}`` of the edges ``(names[conn_ids[i]], rows[i], cols[i])``."""
    edges = {}
    for i, name in enumerate(names):
        mine = conn_ids == i
        if bool(mine.any()):
            edges[name] = (rows[mine], cols[mine])
    return edges

"""``EpsEdgePruner``: remove the eps edges that did not become useful (ALGORITHMS.md §1).

``prune_after`` epochs after a split, the provisional (eps-born) edges of the new layer's connections
are scored with the same statistics as the selection, min-max normalised jointly, and those whose
score is **below** ``tau_prune`` are masked (the reference inverts this); the survivors stop being
provisional, and the graph is compacted so that its storage follows what is left.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...ops import compact, prune_edges
from ...settings import setting
from ...validators import Integer, Number
from ..base import GrowthPart
from .edge_statistics import EdgeStatistics

__all__ = ["EpsEdgePruner"]


@dataclass(eq=False)
class EpsEdgePruner(GrowthPart):
    """Prune a split's eps edges that score below ``tau_prune``, ``prune_after`` epochs after it, by
    the scores of ``statistics`` (shared with the selector)."""

    statistics: EdgeStatistics
    tau_prune: float = setting(Number(0, 1), 0.1, "eps edges scoring below this (min-max normalised) are pruned")
    prune_after: int = setting(Integer(0), 2, "epochs after a split before its eps edges are pruned")

    def setup(self) -> None:
        self.pending: list[list] = []  # [due_epoch, [connections of the split]]

    def on_grow_end(self, ctx, events: list, reason: str = "", **kwargs) -> None:
        for event in events:
            if event.kind == "split_edges":
                self.pending.append([ctx.epoch + self.prune_after, list(event.details["connections"])])

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
        events.append(compact(model, optimizer=ctx.optimizer))
        return events

    def state_dict(self) -> dict:
        return {"pending": self.pending}

    def load_state_dict(self, state: dict) -> None:
        self.pending = [list(p) for p in state.get("pending", [])]

"""``EdgeSplitInitializer``: replace each selected edge by a path through a new unit (ALGORITHMS.md §1).

Delegates to :func:`selfexpand.ops.split_edges` (new layer reading only the parents, eps edges marked
provisional, direct edges masked). ``signed="auto"`` uses the exact two-unit variant only when a
parent layer can output negative values: the input when the training data has negative entries, a
hidden layer whose activation is not non-negative (ReLU, sigmoid, softplus are).

A site may also name live edges to prune first (``info["prune"]``, ``{connection: (rows, cols)}``):
the selector's ``past_budget`` pays for a split at the budget that way (a departure from
ALGORITHMS.md §1). They are pruned (:func:`selfexpand.ops.prune_edges`: weights and first moments
zeroed; the event's ``details["pays_for_split"]`` is true) before the split, and the graph is
compacted after it (their storage and optimizer state go; the compaction is recorded when it changed
something).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...ops import prune_edges, split_edges
from ...settings import setting
from ...validators import Choice, Number
from ..base import Initializer, Site
from ..helpers.edge_pruning import compact_if_changed
from ..registry import register_part
from ..topology import resolve_signed

__all__ = ["EdgeSplitInitializer"]


@register_part
@dataclass(eq=False)
class EdgeSplitInitializer(Initializer):
    """Split the sites' edges (after pruning those a site's ``info["prune"]`` names, then compacting);
    ``eps`` is the scale of the eps edges (``U[0, eps)``)."""

    name = "edge-split"
    grows = "edges"
    eps: float = setting(Number(0), 1e-8, "scale of the new eps edges, U[0, eps)")
    signed: object = setting(Choice("auto", True, False), "auto",
                             "two units per split edge, exact for negative parents (auto: where a parent can be negative)")

    def grow(self, ctx, sites: list[Site]) -> list:
        events = []
        for site in sites:
            if not site.edges:
                continue
            prune = site.info.get("prune")
            if prune:
                events.append(prune_edges(ctx.model, prune, optimizer=ctx.optimizer))
                events[-1].details["pays_for_split"] = True  # past_budget, not the eps pruning
            events.append(split_edges(ctx.model, site.edges, eps=self.eps,
                                      signed=resolve_signed(self.signed, ctx, site.edges),
                                      generator=ctx.generator, optimizer=ctx.optimizer))
            if prune:  # recorded only when it changed something (no empty compaction events)
                events += compact_if_changed(ctx.model, optimizer=ctx.optimizer)
        return events

"""Per-edge statistics for edge expansion, accumulated during the training epoch.

After every training batch (``on_batch_end``, gradients still in ``.grad``) the per-edge quantity of
``metric`` is added to running sums for the tracked connections: those into the output layer (split
candidates) and those with provisional edges (pruning candidates), or every connection when
``track_all`` (the selector's ``past_budget`` scores every live edge for pruning). ``aggregation``
turns them into one score per edge: the mean over the epoch's batches, or the (population) variance
across them. The
variance sums are taken around the first batch's value, so that a small spread is not lost to
cancellation: with the weight metrics it is about the learning rate times the weight, far below
float32's rounding of ``E[q^2] - E[q]^2`` taken on the raw values. No extra pass over the data is
needed; only when the sums do not match the graph any more (a structural change since, or a resumed
run; a change of storage, ``graph.sparse``, is not one: the sums are kept over each connection's
logical shape) does :meth:`EdgeStatistics.scores` run one gradient pass to rebuild them.

Metrics (per batch): ``abs_grad`` ``|dL/dw|`` (the reference's default), ``grad`` ``dL/dw`` (with
``variance``: the gradient variance), ``weight_sq`` ``w^2``, ``abs_weight`` ``|w|``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...settings import setting
from ...validators import Choice
from ..base import GrowthPart

__all__ = ["EdgeStatistics", "METRICS", "AGGREGATIONS"]

METRICS = ("abs_grad", "grad", "weight_sq", "abs_weight")
AGGREGATIONS = ("mean", "variance")


def _quantity(metric: str, conn) -> torch.Tensor:
    """The per-edge quantity over ``conn.shape`` (a sparse connection's scattered, 0 off its edges)."""
    if metric in ("abs_grad", "grad"):
        g = conn.weight.grad
        if g is None:
            g = torch.zeros_like(conn.weight)
        if conn.sparse:
            g = conn.scatter(g)
        return g.abs() if metric == "abs_grad" else g
    w = conn.effective_weight().detach()
    return w * w if metric == "weight_sq" else w.abs()


@dataclass(eq=False)
class EdgeStatistics(GrowthPart):
    """Running per-edge sums of ``metric`` over the current epoch's batches (of every connection when
    ``track_all``, else of :meth:`tracked`'s)."""

    metric: str = setting(Choice(*METRICS), "abs_grad", "per-edge quantity scored after every batch")
    aggregation: str = setting(Choice(*AGGREGATIONS), "mean", "score of an edge over the epoch's batches")
    track_all: bool = False

    def setup(self) -> None:
        self._sums: dict[str, tuple] = {}
        self._shifts: dict[str, torch.Tensor] = {}  # variance: each edge's first quantity
        self._batches = 0

    @staticmethod
    def tracked(model) -> list[str]:
        """Connections into the output layer and connections with provisional edges."""
        return [name for name, c in model.connections.items()
                if c.target == model.output_name or c.provisional is not None]

    def on_epoch_begin(self, ctx, **kwargs) -> None:
        self._reset(ctx.model)

    def _reset(self, model) -> None:
        self._sums = {}
        self._shifts = {}
        for name in (list(model.connections) if self.track_all else self.tracked(model)):
            conn = model.connections[name]
            w = conn.weight.detach()
            zeros = torch.zeros(conn.shape, dtype=w.dtype, device=w.device)
            self._sums[name] = (conn.layout, zeros, zeros.clone())
        self._batches = 0

    @torch.no_grad()
    def on_batch_end(self, ctx, **kwargs) -> None:
        connections = ctx.model.connections
        for name, (_, total, squares) in self._sums.items():
            q = _quantity(self.metric, connections[name])
            if self.aggregation == "variance":
                if name not in self._shifts:
                    self._shifts[name] = q.clone()
                q = q - self._shifts[name]
                squares.addcmul_(q, q)
            total.add_(q)
        self._batches += 1

    def _fresh(self, model, names: list[str]) -> bool:
        return self._batches > 0 and all(
            name in self._sums and self._sums[name][0] == model.connections[name].layout for name in names)

    def scores(self, ctx, names: list[str]) -> dict[str, torch.Tensor]:
        """Aggregated score of every stored edge of connections ``names`` (masked edges included).

        For ``variance`` the sums hold ``q - shift`` (shift: the first batch's ``q``); the variance
        does not depend on the shift."""
        if not self._fresh(ctx.model, names):
            self._reset(ctx.model)
            ctx.gradient_pass(lambda: self.on_batch_end(ctx))
        n = self._batches
        out = {}
        for name in names:
            _, total, squares = self._sums[name]
            mean = total / n
            out[name] = mean if self.aggregation == "mean" else (squares / n - mean * mean).clamp_min(0)
        return out

"""``EdgeSplitInitializer``: replace each selected edge by a path through a new unit (ALGORITHMS.md §1).

Delegates to :func:`selfexpand.ops.split_edges` (new layer reading only the parents, eps edges marked
provisional, direct edges masked). ``signed="auto"`` uses the exact two-unit variant only when a
parent layer can output negative values: the input when the training data has negative entries, a
hidden layer whose activation is not non-negative (ReLU, sigmoid, softplus are).
"""

from __future__ import annotations

import math

from torch import nn

from ...errors import ConfigError
from ...ops import split_edges
from ..base import Initializer, Site

__all__ = ["EdgeSplitInitializer", "resolve_signed"]

_NON_NEGATIVE = (nn.ReLU, nn.Sigmoid, nn.Softplus)


def _layer_non_negative(ctx, layer: str) -> bool:
    model = ctx.model
    if layer == model.input_name:
        return model.front is None and bool(ctx.data.x_train.min() >= 0)
    target = model.layers[layer]
    return isinstance(target.activation, _NON_NEGATIVE) and target.modulator is None


def resolve_signed(signed, ctx, edges: dict | None = None) -> bool:
    """``signed`` as a bool: ``"auto"`` is True when any parent of ``edges`` (default: any layer
    feeding the output) can be negative."""
    if signed != "auto":
        return bool(signed)
    model = ctx.model
    names = list(edges) if edges else model.connection_names(target=model.output_name)
    return not all(_layer_non_negative(ctx, model.connections[n].source) for n in names)


class EdgeSplitInitializer(Initializer):
    """Split the sites' edges; ``eps`` is the scale of the eps edges (``U[0, eps)``)."""

    def __init__(self, eps: float = 1e-8, signed="auto"):
        if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
            raise ConfigError(f"eps must be a finite number >= 0, got eps={eps!r}")
        if signed not in ("auto", True, False):
            raise ConfigError(f"signed must be 'auto', true or false, got signed={signed!r}")
        self.eps, self.signed = eps, signed

    def grow(self, ctx, sites: list[Site]) -> list:
        events = []
        for site in sites:
            if not site.edges:
                continue
            events.append(split_edges(ctx.model, site.edges, eps=self.eps,
                                      signed=resolve_signed(self.signed, ctx, site.edges),
                                      generator=ctx.generator, optimizer=ctx.optimizer))
        return events

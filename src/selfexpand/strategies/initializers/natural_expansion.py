"""SENN's initializer (ALGORITHMS.md §3): the selector's proposals become units and layers, the
network's function unchanged.

- Width: the chosen units join their layer with the proposed incoming weights and biases and zero
  outgoing weights.
- Depth: a layer of ``k = width(src)`` units replaces the link ``src -> tgt``: incoming weights the
  basis ``B`` (``k x k``, invertible), bias ``b``, the rational activation at its identity point, and
  outgoing weights ``W B^-1`` (``W pinv(B)`` for a square, full-rank ``B``); ``tgt``'s bias loses
  ``W B^-1 b``. Then ``tgt`` receives ``W B^-1 (B h + b) + b_tgt - W B^-1 b = W h + b_tgt``: the
  same as before, up to rounding (computed in float64).
"""

from __future__ import annotations

import torch

from ...errors import GrowthError
from ...ops import add_units, insert_layer
from ..base import Initializer, Site
from ..registry import register_part
from ..topology import chain_connections, layers_last_first

__all__ = ["NaturalExpansionInitializer"]


@register_part
class NaturalExpansionInitializer(Initializer):
    """Apply :class:`~selfexpand.strategies.selectors.natural_expansion.NaturalExpansionSelector`'s
    sites (``info["kind"]`` ``"width"`` or ``"depth"``); sites without a proposal are an error.
    Inserted layers use the rational activation, which the selector's depth score assumes."""

    name = "natural-expansion"
    grows = "units+layers"

    def grow(self, ctx, sites: list[Site]) -> list:
        net, events = ctx.model, []
        for site in sites:
            if site.proposal is None:
                raise GrowthError(f"SENN's initializer needs the selector's proposals; site {site.layer!r} has none")
        for site in (s for s in sites if s.info.get("kind") == "depth"):
            events.append(self._insert(ctx, net, site))
        for site in layers_last_first(net, [s for s in sites if s.info.get("kind") != "depth"]):
            conn_in, conn_out = chain_connections(net, site.layer, who="SENN")
            n_out = net.connections[conn_out].shape[0]
            events.append(add_units(net, site.layer, site.n_units, incoming={conn_in: site.proposal["weight"]},
                                    bias=site.proposal["bias"], outgoing={conn_out: torch.zeros(n_out, site.n_units)},
                                    optimizer=ctx.optimizer))
            events[-1].details["scores"] = site.info.get("scores")
        return events

    def _insert(self, ctx, net, site: Site):
        conn = net.connections[site.layer]
        target = net.layers[conn.target]
        basis = site.proposal["weight"].double()
        bias = site.proposal["bias"].double()
        w = conn.effective_weight().detach().double().cpu()
        weight_out = torch.linalg.solve(basis.T, w.T).T  # W B^-1
        event = insert_layer(net, site.layer, site.n_units, weight_in=basis.float(), bias=bias.float(),
                             weight_out=weight_out.float(), activation="rational", optimizer=ctx.optimizer)
        with torch.no_grad():
            target.bias.sub_((weight_out @ bias).to(target.bias))
        event.details["score"] = site.score
        return event

"""SENN's initializer (ALGORITHMS.md §3): the selector's proposals become units and layers, the
network's function unchanged.

- Width: the chosen units join their layer with the proposed incoming weights and biases and zero
  outgoing weights. On a conv layer (issue #24) they are channels: the proposed incoming kernels, zero
  outgoing kernels (or zero position columns in a dense reader across the flatten boundary).
- Depth: a layer of ``k = width(src)`` units replaces the link ``src -> tgt``: incoming weights the
  basis ``B`` (``k x k``, invertible), bias ``b``, the rational activation at its identity point, and
  outgoing weights ``W B^-1`` (``W pinv(B)`` for a square, full-rank ``B``); ``tgt``'s bias loses
  ``W B^-1 b``. Then ``tgt`` receives ``W B^-1 (B h + b) + b_tgt - W B^-1 b = W h + b_tgt``: the
  same as before, up to rounding (computed in float64).
"""

from __future__ import annotations

import torch

from ...errors import GrowthError
from ...graph.conv import ConvConnection, is_spatial, positions
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
    grows_channels = True  # width: channels with the proposed kernels, zero outgoing kernels; no conv depth

    def grow(self, ctx, sites: list[Site]) -> list:
        net, events = ctx.model, []
        for site in sites:
            if site.proposal is None:
                raise GrowthError(f"SENN's initializer needs the selector's proposals; site {site.layer!r} has none")
        for site in (s for s in sites if s.info.get("kind") == "depth"):
            events.append(self._insert(ctx, net, site))
        for site in layers_last_first(net, [s for s in sites if s.info.get("kind") != "depth"]):
            conn_in, conn_out = chain_connections(net, site.layer, who="SENN")
            out = net.connections[conn_out]
            if isinstance(out, ConvConnection):
                zeros = torch.zeros(out.shape[0], site.n_units, *out.shape[2:])
            else:  # a dense reader: P columns per channel across the flatten boundary (P = 1 for a dense layer)
                zeros = torch.zeros(out.shape[0], site.n_units * positions(net, site.layer))
            events.append(add_units(net, site.layer, site.n_units, incoming={conn_in: site.proposal["weight"]},
                                    bias=site.proposal["bias"], outgoing={conn_out: zeros},
                                    optimizer=ctx.optimizer))
            events[-1].details["scores"] = site.info.get("scores")
        return events

    def _insert(self, ctx, net, site: Site):
        conn = net.connections[site.layer]
        if isinstance(conn, ConvConnection) or is_spatial(net, conn.source):
            raise GrowthError(f"SENN cannot insert a layer at {site.layer!r}: depth on conv layers (or across the "
                              "flatten boundary) is not implemented; only width grows conv layers")
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

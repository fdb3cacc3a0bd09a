"""Sparse connection storage: a connection that holds only its live edges.

A sparse :class:`~.parts.Connection` keeps ``weight`` as a ``(n_edges,)`` parameter of the live
edges' values and ``edge_index`` ``(2, n_edges)``, each edge's row and column in its logical
``(n_rows, n_cols)`` weight (``shape``); it has no mask (every stored value is live) and its
``provisional`` marks, when any, are ``(n_edges,)``. Its contribution is an edge-list kernel: gather
the read columns, multiply by the values, add into the rows (``O(batch x edges)``), so a nearly empty
connection costs what its live edges cost instead of its stored rectangle.

**When.** A dense connection of a dense (not conv) target whose live fraction (live / stored entries)
is below the network's ``sparse_below`` (default :data:`SPARSE_BELOW`) is stored sparse, and a sparse
one goes back to dense storage before any op edits the graph (``ops.storage``). The default is the
cut-over measured on the MNIST edge preset's grown network (``benchmarks/bench_grown.py``, table in
``docs/benchmarks.md``, "Where a grown network's time goes"): one connection's forward, backward and
Adam step at batch 256, sparse over masked dense storage, was 0.49-0.93x at 1 % live, 0.80-0.91x at
2 %, 0.90-1.17x at 3 % and 1.02-2.19x at 5 % on four of its connection shapes (332 x 147 down to
35 x 14). Below 3 % the sparse kernel is faster on every shape and stores far less; above it masked
dense storage wins.

Conversions here act on one connection in place (the module object stays, so references held by
ops and strategies stay valid) and return the flat map an optimizer needs to carry each live edge's
state (``ops.optimizer_state``): ``new entry -> old flat index`` (-1: new).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SPARSE_BELOW", "edge_list_contribution", "to_sparse", "to_dense", "live_fraction"]

SPARSE_BELOW = 0.03  # live fraction under which a connection is stored sparse (see the module docstring)


def edge_list_contribution(conn, x: torch.Tensor) -> torch.Tensor:
    """``y[:, r] += x[:, read(c)] * w`` over the edges of sparse ``conn``: ``(batch, n_rows)``.

    Batch-major (gather columns, scale, add into columns): below the cut-over it was as fast as the
    transposed layout or up to 1.4x faster on the fixture's shapes, and slower only well above it."""
    rows, cols = conn.edge_index[0], conn.edge_index[1]
    read = cols if conn.in_index is None else conn.in_index.index_select(0, cols)
    values = x.index_select(1, read) * conn.weight
    return x.new_zeros(x.shape[0], conn.shape[0]).index_add_(1, rows, values)


def live_fraction(conn) -> float:
    """Live entries over stored entries of a dense connection (1.0 without a mask)."""
    if conn.mask is None:
        return 1.0
    return float((conn.mask != 0).sum()) / max(conn.mask.numel(), 1)


@torch.no_grad()
def to_sparse(conn) -> tuple[nn.Parameter, torch.Tensor]:
    """Store masked dense ``conn`` sparse, in place; ``(old weight, flat sources)`` for the optimizer.

    The values kept are exactly the live entries' (row-major order); masked entries are dropped."""
    old = conn.weight
    live = conn.mask != 0
    rows, cols = live.nonzero(as_tuple=True)
    flat = rows * old.shape[1] + cols
    conn._sparse_shape = tuple(old.shape)
    conn.weight = nn.Parameter(old.detach().reshape(-1)[flat].clone(), requires_grad=old.requires_grad)
    conn.edge_index = torch.stack([rows, cols])
    if conn.provisional is not None:
        conn.provisional = conn.provisional[rows, cols]
    conn.mask = None
    return old, flat


@torch.no_grad()
def to_dense(conn) -> tuple[nn.Parameter, torch.Tensor]:
    """Store sparse ``conn`` as masked dense, in place; ``(old weight, sources)`` for the optimizer:
    ``sources[r, c]`` is the edge stored at ``(r, c)``, -1 where none (a masked entry, stored 0)."""
    old = conn.weight
    n_rows, n_cols = conn.shape
    rows, cols = conn.edge_index[0], conn.edge_index[1]
    sources = torch.full((n_rows, n_cols), -1, dtype=torch.long, device=old.device)
    sources[rows, cols] = torch.arange(rows.numel(), device=old.device)
    weight = old.new_zeros(n_rows, n_cols)
    weight[rows, cols] = old.detach()
    mask = old.new_zeros(n_rows, n_cols)
    mask[rows, cols] = 1
    if conn.provisional is not None:
        provisional = torch.zeros(n_rows, n_cols, dtype=torch.bool, device=old.device)
        provisional[rows, cols] = conn.provisional
        conn.provisional = provisional
    conn.edge_index = None
    conn._sparse_shape = None
    conn.weight = nn.Parameter(weight, requires_grad=old.requires_grad)
    conn.mask = mask
    return old, sources

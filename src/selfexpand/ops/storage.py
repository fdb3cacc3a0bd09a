"""Which connections are stored sparse (``graph.sparse``), and the dense view every op works on.

Ops and growth strategies read and write connections as dense ``(n_rows, n_cols)`` weights with a
mask. :func:`dense_storage` gives them that: on entry every sparse connection is stored dense (masked),
on exit :func:`choose_storage` stores sparse each dense connection whose live fraction is below the
network's ``sparse_below``. Scopes nest (only the outermost converts), so an op called inside a growth
step changes no storage until the step ends. Each conversion carries the optimizer state: a live
edge's state moves with it bit for bit, an entry that becomes masked starts as a new one (first
moments 0), which for a masked entry (weight 0, gradient 0) changes nothing.

The public ops are wrapped by :func:`on_dense_storage`, so a user calling them on a network with sparse
connections gets the same result as on the all-dense network.
"""

from __future__ import annotations

import functools
import weakref
from contextlib import contextmanager

from torch.nn.utils import parametrize

from ..graph.conv import ConvLayer
from ..graph.sparse import live_fraction, to_dense, to_sparse
from .optimizer_state import carry_state

__all__ = ["dense_storage", "choose_storage", "on_dense_storage", "sparse_candidates"]


_DEPTH: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # net -> open dense_storage scopes


def sparse_candidates(net) -> list[str]:
    """Connections whose storage may be sparse: dense weights into and out of dense layers (not a conv
    connection, nor a connection reading a feature map), without a parametrization (SWE's donations,
    ``ops.donations``, keep theirs dense until baked)."""
    return [name for name, c in net.connections.items()
            if not parametrize.is_parametrized(c) and c.weight.dim() <= 2
            and not isinstance(net.layers[c.source], ConvLayer) and not isinstance(net.layers[c.target], ConvLayer)
            and (net.input_shape is None or c.source != net.input_name)]


def choose_storage(net, optimizer=None) -> list[str]:
    """Store sparse every candidate whose live fraction is below ``net.sparse_below`` and dense every
    other; carry ``optimizer``'s state. Returns the names of the connections now sparse. Does nothing
    inside a :func:`dense_storage` scope."""
    if _DEPTH.get(net, 0):
        return []
    below = float(getattr(net, "sparse_below", 0.0))
    candidates = set(sparse_candidates(net))

    def sparse(name, conn) -> bool:
        if name not in candidates:
            return False
        if conn.sparse:
            return conn.weight.numel() < below * conn.shape[0] * conn.shape[1]
        return conn.mask is not None and live_fraction(conn) < below

    _convert(net, optimizer, sparse)
    return [name for name, c in net.connections.items() if c.sparse]


def _convert(net, optimizer, sparse) -> None:
    """Store each connection as ``sparse(name, conn)`` says; carry ``optimizer``'s state."""
    replaced = []
    for name, conn in net.connections.items():
        if sparse(name, conn) != conn.sparse:
            old, sources = to_sparse(conn) if not conn.sparse else to_dense(conn)
            replaced.append((old, conn.weight, (sources,)))
    if replaced:
        carry_state(optimizer, replaced)
        net.invalidate()


@contextmanager
def dense_storage(net, optimizer=None):
    """Within the block every connection of ``net`` is stored dense; on leaving it (error or not) the
    storage is chosen again (:func:`choose_storage`). ``optimizer``'s state follows both ways."""
    depth = _DEPTH.get(net, 0)
    if depth == 0:
        _convert(net, optimizer, lambda name, conn: False)
    _DEPTH[net] = depth + 1
    try:
        yield net
    finally:
        _DEPTH[net] = depth
        if depth == 0:
            choose_storage(net, optimizer)


def on_dense_storage(op):
    """Run op ``op(net, ..., optimizer=...)`` inside :func:`dense_storage` of its network."""

    @functools.wraps(op)
    def wrapper(net, *args, **kwargs):
        with dense_storage(net, kwargs.get("optimizer")):
            return op(net, *args, **kwargs)

    return wrapper

"""Edge ops: split edges through new hidden units (edge expansion, ALGORITHMS.md §1), prune edges.

``split_edges`` replaces each selected edge ``p -> c`` (weight ``w``) by a path through a new unit
``v``: ``p -> v`` weight 1, ``v -> c`` weight ``w``, and masks the direct edge. All the new units
form one new layer ``E`` placed before the target layer. ``E`` reads only the distinct parents ``P``
of the selected edges (one connection per source layer, storing ``|E| x |P_s|``) and writes every
unit of the target layer. Every other entry of those two connections is an *eps edge*: drawn from
``U[0, eps)`` and marked provisional, so pruning may remove it later. With ``eps = 0`` the function
is unchanged exactly when the parents are non-negative (``relu(x) * w = w * x``); ``signed=True``
adds a second unit per edge, ``relu(x) w + relu(-x) (-w) = w x``, exact for any sign.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError, GrowthError
from ..graph.activations import make_activation
from ..graph.parts import Layer
from ..validators import boolean, number
from .checks import require_connection
from .edit import Edit
from .event import GrowthEvent
from .optimizer_state import zero_first_moments
from .storage import on_dense_storage

__all__ = ["split_edges", "prune_edges", "normalize_edges"]


def _index_list(name: str, values) -> torch.Tensor:
    """``values`` as a flat long tensor; non-integral or non-finite values are refused, not truncated."""
    try:
        index = torch.as_tensor(values).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"edge indices of {name!r} must be integers, got {values!r}") from None
    if index.is_floating_point() and not bool((torch.isfinite(index) & (index == index.round())).all()):
        raise ConfigError(f"edge indices of {name!r} must be integers, got {index.tolist()}")
    return index.long()


def _pairs(rows: torch.Tensor, cols: torch.Tensor, limit: int = 10) -> str:
    """``[(row, col), ...]`` for a message (at most ``limit`` shown)."""
    shown = [(int(r), int(c)) for r, c in zip(rows[:limit], cols[:limit])]
    return f"{shown}" + (f" (+{rows.numel() - limit} more)" if rows.numel() > limit else "")


def normalize_edges(net, edges) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``edges`` as ``[(connection, rows, cols)]`` from a list of ``(connection, row, col)`` triples
    or a dict ``{connection: (rows, cols)}``; validated: known, in range, distinct, live."""
    if isinstance(edges, dict):
        items = []
        for name, pair in edges.items():
            try:
                rows, cols = pair
            except (TypeError, ValueError):
                raise ConfigError(f"edges[{name!r}] must be a pair (rows, cols), got {pair!r}") from None
            items.append((name, _index_list(name, rows), _index_list(name, cols)))
    else:
        grouped: dict[str, tuple[list, list]] = {}
        for triple in edges:
            try:
                name, row, col = triple
                row, col = int(row), int(col)
                if (row, col) != (triple[1], triple[2]):
                    raise ValueError
            except (TypeError, ValueError, OverflowError):
                raise ConfigError(f"each edge must be (connection, row, col) with integer row and col, "
                                  f"got {triple!r}") from None
            grouped.setdefault(name, ([], []))
            grouped[name][0].append(row)
            grouped[name][1].append(col)
        items = [(n, torch.tensor(r, dtype=torch.long), torch.tensor(c, dtype=torch.long))
                 for n, (r, c) in grouped.items()]
    items = [(n, r, c) for n, r, c in items if r.numel() or c.numel()]
    if not items:
        raise GrowthError("edges must name at least one edge, got none")
    for name, rows, cols in items:
        require_connection(net, name)
        conn = net.connections[name]
        if rows.numel() != cols.numel():
            raise GrowthError(f"edges of {name!r} must pair each row with a col, got {rows.numel()} rows "
                              f"but {cols.numel()} cols")
        n_rows, n_cols = conn.shape
        if bool((rows < 0).any() | (rows >= n_rows).any() | (cols < 0).any() | (cols >= n_cols).any()):
            raise GrowthError(f"edges of {name!r} must lie in its shape {conn.shape}, got rows "
                              f"{rows.min().item()}..{rows.max().item()}, cols {cols.min().item()}..{cols.max().item()}")
        flat = rows * n_cols + cols
        unique, counts = flat.unique(return_counts=True)
        if bool((counts > 1).any()):
            repeated = unique[counts > 1]
            raise GrowthError(f"edges of {name!r} must be distinct, got repeated edges "
                              f"{_pairs(repeated // n_cols, repeated % n_cols)}")
        device = conn.weight.device
        masked = ~conn.live()[rows.to(device), cols.to(device)]
        if bool(masked.any()):
            raise GrowthError(f"edges of {name!r} must be live, got masked edges "
                              f"{_pairs(rows[masked.cpu()], cols[masked.cpu()])}")
    return [(n, r.to(net.connections[n].weight.device), c.to(net.connections[n].weight.device))
            for n, r, c in items]


@on_dense_storage
def split_edges(net, edges, *, eps: float = 1e-8, signed: bool = False, activation="relu",
                generator: torch.Generator | None = None, optimizer=None) -> GrowthEvent:
    """Split ``edges`` (all into one target layer) through one new layer; see the module docstring.

    Defaults: the split paths carry weights 1 and ``w`` (nothing to choose); ``eps=1e-8``: the other
    entries of the new connections (eps edges) are drawn from ``U[0, 1e-8)`` with ``generator``, so the
    function changes by at most about ``1e-8`` times the inputs; ``signed=False``: exact when the parents
    are non-negative (ReLU layers, inputs in [0, 1]); pass ``signed=True`` for parents of any sign and
    ``eps=0`` for an exactly unchanged function.

    Returns:
        The event; ``details`` names the new layer and its connections.

    Raises:
        GrowthError / ConfigError: bad edges (unknown, out of range, repeated, masked, into several
        layers), a negative / non-finite ``eps``, a ``signed`` that is not a bool, or an unknown
        ``activation``.
    """
    eps = number("eps", eps, 0)
    signed = boolean("signed", signed)
    act = make_activation(activation)  # validated before anything changes
    items = normalize_edges(net, edges)
    targets = {net.connections[n].target for n, _, _ in items}
    if len(targets) != 1:
        raise GrowthError(f"split edges must all enter one layer, got targets {sorted(targets)}")
    (target,) = targets
    first = net.connections[items[0][0]]
    device, dtype = first.weight.device, first.weight.dtype

    source_order = [s for s in net.order if s in {net.connections[n].source for n, _, _ in items}]
    source_of, parents, children, weights = [], [], [], []
    for name, rows, cols in items:
        conn = net.connections[name]
        source_of.append(torch.full_like(rows, source_order.index(conn.source)))
        parents.append(conn.source_units(net.layers[conn.source].size)[cols])
        children.append(conn.target_units(net.layers[target].size)[rows])
        weights.append(conn.weight.detach()[rows, cols])
    source_of, parents = torch.cat(source_of), torch.cat(parents)
    children, weights = torch.cat(children), torch.cat(weights)
    k = parents.numel()
    m = 2 * k if signed else k

    edit = Edit(net, optimizer, "split_edges", target)
    name = net.new_layer_name()
    layer = Layer(m, act).to(device=device, dtype=dtype)
    layer.grown = torch.ones(m, dtype=torch.bool, device=device)  # new units (DESIGN.md glossary)
    net.add_layer(name, layer, before=target)
    for param in (net.layers[name].bias, *net.layers[name].activation.parameters()):
        edit.add_param(param, first.weight)

    def eps_weight(shape):
        if eps == 0:
            return torch.zeros(shape, device=device, dtype=dtype)
        return (torch.rand(shape, generator=generator, dtype=dtype) * eps).to(device)

    new_connections = []
    units = torch.arange(k, device=device)
    edges_added = 0
    for s_pos, source in enumerate(source_order):
        mine = source_of == s_pos
        index, pos = torch.unique(parents[mine], sorted=True, return_inverse=True)
        weight = eps_weight((m, index.numel()))
        provisional = torch.ones(m, index.numel(), dtype=torch.bool, device=device)
        weight[units[mine], pos] = 1.0
        provisional[units[mine], pos] = False
        if signed:
            weight[units[mine] + k, pos] = -1.0
            provisional[units[mine] + k, pos] = False
        c = net.add_connection(source, name, weight, in_index=index, provisional=provisional)
        edit.add_param(net.connections[c].weight, first.weight)
        new_connections.append(c)
        edges_added += weight.numel()
    n_target = net.layers[target].size
    weight = eps_weight((n_target, m))
    provisional = torch.ones(n_target, m, dtype=torch.bool, device=device)
    weight[children, units] = weights
    provisional[children, units] = False
    if signed:
        weight[children, units + k] = -weights
        provisional[children, units + k] = False
    c = net.add_connection(name, target, weight, provisional=provisional)
    edit.add_param(net.connections[c].weight, first.weight)
    new_connections.append(c)
    edges_added += weight.numel()

    for conn_name, rows, cols in items:
        _mask_entries(net.connections[conn_name], rows, cols, optimizer)
    return edit.commit(units_added=m, edges_added=edges_added, edges_removed=k,
                       details={"layer": name, "connections": new_connections, "signed": signed,
                                "edges_split": k})


@on_dense_storage
def prune_edges(net, edges, *, optimizer=None) -> GrowthEvent:
    """Mask ``edges`` (as :func:`normalize_edges` accepts); their weights become 0 and stay 0.

    The weight entries are set to 0 and their first-moment optimizer state cleared, so that no
    optimizer (weight decay included) moves them while masked. Run :func:`compact` afterwards to
    drop the storage of what is left with no live edge.
    """
    items = normalize_edges(net, edges)
    edit = Edit(net, optimizer, "prune_edges", ",".join(n for n, _, _ in items))
    removed = 0
    for name, rows, cols in items:
        _mask_entries(net.connections[name], rows, cols, optimizer)
        removed += rows.numel()
    return edit.commit(edges_removed=removed)


def _mask_entries(conn, rows, cols, optimizer) -> None:
    if conn.mask is None:
        conn.mask = torch.ones_like(conn.weight.detach())
    entries = torch.zeros(conn.shape, dtype=torch.bool, device=conn.weight.device)
    entries[rows, cols] = True
    conn.mask[entries] = 0
    if conn.provisional is not None:
        conn.provisional[entries] = False
    with torch.no_grad():
        conn.weight[entries] = 0
    zero_first_moments(optimizer, conn.weight, entries)

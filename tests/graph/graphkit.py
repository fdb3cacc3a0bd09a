"""Random growable graphs and random function-preserving op sequences, shared by the property tests
of ``tests/graph`` and ``tests/ops`` (``tests/ops/conftest.py`` puts this folder on ``sys.path``).

A :class:`Case` is a net, a fixed input batch ``x`` and whether ``x`` is non-negative;
:func:`nonneg` tells whether a layer's outputs are known non-negative (the input when ``x`` is, a
ReLU layer whose modulator factors are all >= 0 at that moment). Values are drawn from a
``torch.Generator`` seeded by hypothesis, so every example replays.

:func:`apply_op` returns the outputs the net must still produce after an op of :data:`OPS`: those
before the op, except for ``prune_compact`` where the pruned net's outputs are the reference (pruning
changes the function; compaction must not).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch
from hypothesis import strategies as st

from selfexpand import ops
from selfexpand.graph import GateModulator, GrowableNet, make_activation

ACTIVATIONS = ("relu", "tanh", "identity")
TOL = dict(rtol=1e-5, atol=1e-5)


@dataclass
class Case:
    net: GrowableNet
    x: torch.Tensor
    input_nonneg: bool
    gen: torch.Generator = None
    log: list = field(default_factory=list)


def draw_case(data, *, modulators: bool = True, max_hidden: int = 3, sparse: bool = False) -> Case:
    """A random MLP: 0..max_hidden hidden layers, widths 1..12, relu/tanh/identity per layer,
    optionally gated hidden layers (factors in [0.5, 1.5], sometimes an exact 0).

    ``sparse``: the net's ``sparse_below`` is drawn from 0.4, 0.7, 1.0 and each connection keeps a
    random 15-70 % of its edges (``prune_edges``, before the case's reference outputs exist), so that
    sparse storage (``graph.sparse``) is chosen for some connections from the start."""
    n_hidden = data.draw(st.integers(0, max_hidden), label="n_hidden")
    widths = data.draw(st.lists(st.integers(1, 12), min_size=n_hidden + 2, max_size=n_hidden + 2),
                       label="widths")
    acts = data.draw(st.lists(st.sampled_from(ACTIVATIONS), min_size=n_hidden, max_size=n_hidden),
                     label="activations")
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    signed_input = data.draw(st.booleans(), label="signed_input")
    gen = torch.Generator().manual_seed(seed)
    net = GrowableNet.mlp(widths, seed=seed)
    for name, act in zip(net.hidden_layers(), acts):
        net.layers[name].activation = make_activation(act)
        if modulators and data.draw(st.booleans(), label=f"gate {name}"):
            mod = GateModulator(net.layers[name].size)
            with torch.no_grad():
                mod.gate.copy_(torch.rand(mod.gate.shape, generator=gen) - 0.5)
                if data.draw(st.booleans(), label=f"dead unit in {name}"):
                    mod.gate[0] = -1.0  # factor exactly 0: a unit that is not live
            net.layers[name].modulator = mod
    net.invalidate()
    batch = 16
    x = torch.randn(batch, widths[0], generator=gen) if signed_input \
        else torch.rand(batch, widths[0], generator=gen)
    case = Case(net, x, not signed_input, gen)
    case.log.append(f"mlp widths={widths} acts={acts} signed_input={signed_input}")
    if sparse:
        net.sparse_below = data.draw(st.sampled_from((0.4, 0.7, 1.0)), label="sparse_below")
        keep = data.draw(st.floats(0.15, 0.7), label="kept fraction")
        edges = {name: torch.nonzero(torch.rand(c.shape, generator=gen) >= keep, as_tuple=True)
                 for name, c in net.connections.items()}
        edges = {n: e for n, e in edges.items() if e[0].numel()}
        if edges:
            ops.prune_edges(net, edges)
        case.log.append(f"sparse_below={net.sparse_below} kept~{keep:.2f} sparse={sparse_names(net)}")
    return case


def sparse_names(net) -> list[str]:
    return [name for name, c in net.connections.items() if c.sparse]


def independent_counts(net) -> dict:
    """The counts of DESIGN.md from raw tensors (gates, masks, a sparse connection's edge list, index
    buffers), not via the code under test: live unit = factor != 0, live edge = mask != 0 (or listed)
    between live units."""
    alive = {}
    for name, layer in net.layers.items():
        if layer.modulator is None:
            alive[name] = torch.ones(layer.size, dtype=torch.bool)
        else:
            alive[name] = (1.0 + layer.modulator.gate.detach()) != 0
    weights = stored = 0
    for c in net.connections.values():
        rows = alive[c.target] if c.out_index is None else alive[c.target][c.out_index]
        cols = alive[c.source] if c.in_index is None else alive[c.source][c.in_index]
        if c.edge_index is not None:
            mask = torch.zeros(len(rows), len(cols), dtype=torch.bool)
            mask[c.edge_index[0], c.edge_index[1]] = True
        else:
            mask = torch.ones(c.weight.shape, dtype=torch.bool) if c.mask is None else c.mask != 0
        weights += int((mask & rows[:, None] & cols[None, :]).sum())
        stored += c.weight.numel()
    biases = sum(int(alive[n].sum()) for n in net.order[1:])
    stored += sum(net.layers[n].bias.numel() for n in net.order[1:])
    gates = sum(l.modulator.gate.numel() for l in net.layers.values() if l.modulator is not None)
    return {"params": weights + biases, "weights_active": weights, "stored_params": stored,
            "front_params": 0, "control_params": gates}


def nonneg(case, layer: str) -> bool:
    """Whether ``layer``'s outputs are non-negative for every input the case feeds."""
    if layer == case.net.input_name:
        return case.input_nonneg
    module = case.net.layers[layer]
    if not isinstance(module.activation, torch.nn.ReLU):
        return False
    factor = module.factor()
    return factor is None or bool((factor.detach() >= 0).all())


def live_edges(net, connections=None) -> list[tuple[str, int, int]]:
    """Every live stored edge ``(connection, row, col)`` of ``connections`` (default all)."""
    out = []
    for name in connections if connections is not None else list(net.connections):
        rows, cols = torch.nonzero(net.connections[name].live(), as_tuple=True)
        out.extend((name, int(r), int(c)) for r, c in zip(rows, cols))
    return out


def _pick(data, items, max_size, label):
    idx = data.draw(st.lists(st.integers(0, len(items) - 1), min_size=1, max_size=max_size,
                             unique=True), label=label)
    return [items[i] for i in idx]


def _as_edges_arg(data, edges):
    """The same edges as a list of triples or as a dict ``{connection: (rows, cols)}``."""
    if data.draw(st.booleans(), label="edges as dict"):
        grouped: dict = {}
        for name, r, c in edges:
            grouped.setdefault(name, ([], []))
            grouped[name][0].append(r)
            grouped[name][1].append(c)
        return grouped
    return list(edges)


def op_add_units(case, data, optimizer=None):
    net = case.net
    hidden = net.hidden_layers()
    if not hidden:
        return None
    layer = data.draw(st.sampled_from(hidden), label="add_units layer")
    n = data.draw(st.integers(1, 3), label="add_units n")
    incoming = {name: torch.rand(n, c.shape[1], generator=case.gen) * 2 - 1
                for name, c in net.connections.items() if c.target == layer and c.out_index is None}
    outgoing = {name: torch.zeros(c.shape[0], n)
                for name, c in net.connections.items() if c.source == layer and c.in_index is None}
    bias = torch.rand(n, generator=case.gen) - 0.5
    case.log.append(f"add_units({layer}, {n})")
    return ops.add_units(net, layer, n, incoming=incoming, bias=bias, outgoing=outgoing,
                         optimizer=optimizer)


def op_remove_silent_units(case, data, optimizer=None):
    """Remove units of a hidden layer that no live non-zero weight reads (function-preserving)."""
    net = case.net
    for layer in net.hidden_layers():
        size = net.layers[layer].size
        read = torch.zeros(size, dtype=torch.bool)
        for c in net.outgoing(layer):
            used = (c.effective_weight().detach() != 0).any(0)
            read[c.source_units(size)[used]] = True
        silent = torch.nonzero(~read).flatten().tolist()
        if silent and len(silent) < size:
            units = _pick(data, silent, len(silent), "silent units")
            case.log.append(f"remove_units({layer}, {units})")
            return ops.remove_units(net, layer, units, optimizer=optimizer)
    return None


def op_insert_identity(case, data, optimizer=None):
    net = case.net
    if not net.connections:
        return None
    name = data.draw(st.sampled_from(sorted(net.connections)), label="identity connection")
    source = net.connections[name].source
    signed = True if not nonneg(case, source) else data.draw(st.booleans(), label="identity signed")
    case.log.append(f"insert_identity_layer({name}, signed={signed})")
    event = ops.insert_identity_layer(net, name, signed=signed, optimizer=optimizer)
    return event


def op_split_edges(case, data, optimizer=None):
    net = case.net
    targets = [t for t in net.order[1:] if live_edges(net, net.connection_names(target=t))]
    if not targets:
        return None
    target = data.draw(st.sampled_from(targets), label="split target")
    candidates = live_edges(net, net.connection_names(target=target))
    edges = _pick(data, candidates, 6, "split edges")
    all_nonneg = all(nonneg(case, net.connections[n].source) for n, _, _ in edges)
    signed = data.draw(st.booleans(), label="split signed") if all_nonneg else True
    case.log.append(f"split_edges({edges}, signed={signed})")
    event = ops.split_edges(net, _as_edges_arg(data, edges), eps=0.0, signed=signed,
                            generator=case.gen, optimizer=optimizer)
    return event


def dense_stored(net) -> int:
    """``stored_params`` as if every connection were stored dense (a sparse one at its ``shape``):
    what compaction shrinks, whichever storage the cut-over then chooses."""
    return net.counts()["stored_params"] + sum(
        c.shape[0] * c.shape[1] - c.weight.numel() for c in net.connections.values() if c.sparse)


def check_compacted(net, stored_before: int) -> None:
    """After compaction: no stored row or column fully masked, no connection without a live edge,
    and no more storage than before (``dense_stored``)."""
    for name, c in net.connections.items():
        live = c.live()
        assert bool(live.any(1).all()), f"{name}: a stored row is fully masked\n{live}"
        assert bool(live.any(0).all()), f"{name}: a stored column is fully masked\n{live}"
    assert dense_stored(net) <= stored_before


def op_prune_compact(case, data, optimizer=None):
    net = case.net
    candidates = live_edges(net)
    if not candidates:
        return None
    edges = _pick(data, candidates, 5, "prune edges")
    case.log.append(f"prune_edges({edges}) + compact")
    ops.prune_edges(net, _as_edges_arg(data, edges), optimizer=optimizer)
    for name, r, c in edges:
        conn = net.connections[name]
        assert not bool(conn.live()[r, c]) and float(conn.effective_weight().detach()[r, c]) == 0
    with torch.no_grad():
        pruned = net(case.x)
    stored = dense_stored(net)
    event = ops.compact(net, optimizer=optimizer)
    check_compacted(net, stored)
    return event, pruned


def op_compact(case, data, optimizer=None):
    case.log.append("compact")
    stored = dense_stored(case.net)
    event = ops.compact(case.net, optimizer=optimizer)
    check_compacted(case.net, stored)
    return event


def spec_round_trip(net) -> GrowableNet:
    spec = json.loads(json.dumps(net.spec()))
    return GrowableNet.from_spec(spec, net.state_dict())


OPS = {
    "add_units": op_add_units,
    "remove_silent_units": op_remove_silent_units,
    "insert_identity": op_insert_identity,
    "split_edges": op_split_edges,
    "prune_compact": op_prune_compact,
    "compact": op_compact,
}


def outputs(net, x) -> torch.Tensor:
    with torch.no_grad():
        return net(x)


def apply_op(case, kind, data, optimizer=None):
    """Apply op ``kind``; return ``(event or None, reference outputs)``."""
    before = outputs(case.net, case.x)
    counts_before = case.net.counts()
    result = OPS[kind](case, data, optimizer)
    if result is None:
        return None, before
    event, reference = result if isinstance(result, tuple) else (result, before)
    if kind != "prune_compact":  # prune events are checked inside; compaction keeps params
        assert event.params_before == counts_before["params"]
    assert event.params_after == case.net.counts()["params"]
    return event, reference

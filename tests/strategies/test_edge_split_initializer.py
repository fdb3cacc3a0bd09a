"""``EdgeSplitInitializer`` through a ``Site``: with eps 0 the function is unchanged, for inputs of
either sign (ALGORITHMS.md §1, "How"; the signed two-unit variant ``relu(x) w + relu(-x) (-w) = w x``).
``signed="auto"`` picks the signed variant exactly when a parent can be negative.
"""

from __future__ import annotations

import pytest
import torch

from edgekit import make_ctx, toy_dataset
from selfexpand.graph import GrowableNet, make_activation
from selfexpand.strategies.base import Site
from selfexpand.strategies.initializers.edge_split import EdgeSplitInitializer

TOL = dict(rtol=1e-6, atol=1e-6)


def random_site(net, gen, n_edges: int) -> Site:
    """``n_edges`` distinct live edges into the output, spread over its incoming connections."""
    pool = []
    for name in net.connection_names(target="output"):
        c = net.connections[name]
        pool += [(name, r, col) for r, col in torch.nonzero(c.live()).tolist()]
    pick = [pool[i] for i in torch.randperm(len(pool), generator=gen)[:n_edges].tolist()]
    edges: dict[str, tuple[list, list]] = {}
    for name, r, col in pick:
        edges.setdefault(name, ([], []))
        edges[name][0].append(r)
        edges[name][1].append(col)
    return Site(layer="output", edges=edges)


@pytest.mark.parametrize("hidden_activation", ["relu", "tanh"])
@pytest.mark.parametrize("signed_data", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_eps_zero_split_is_exact_and_auto_picks_the_variant(seed, signed_data, hidden_activation):
    gen = torch.Generator().manual_seed(seed)
    data = toy_dataset(n=40, d=7, k=4, seed=seed, signed=signed_data)
    # input -> output plus a hidden layer feeding the output too (a second candidate source)
    net = GrowableNet.mlp([7, 5, 4], seed=seed)
    net.layers["h1"].activation = make_activation(hidden_activation)
    net.add_connection("input", "output", torch.randn(4, 7, generator=gen))
    ctx = make_ctx(net, data)
    x = torch.cat([data.x_train, data.x_val])
    expected = net(x).detach()
    outputs_before = net.counts()

    site = random_site(net, gen, 6)
    k = sum(len(r) for r, _ in site.edges.values())
    sources = {net.connections[n].source for n in site.edges}
    negative_parent = (signed_data and "input" in sources) or (hidden_activation == "tanh" and "h1" in sources)
    (event,) = EdgeSplitInitializer(eps=0.0, signed="auto").grow(ctx, [site])
    assert event.kind == "split_edges"
    assert event.details["signed"] is negative_parent
    layer = event.details["layer"]
    assert net.layers[layer].size == (2 * k if negative_parent else k)
    assert event.units_added == net.layers[layer].size and event.edges_removed == k
    torch.testing.assert_close(net(x), expected, **TOL)
    assert net.counts()["params"] == event.params_after > outputs_before["params"]
    # the split edges are masked; the new layer reads only their parents
    for name, (rows, cols) in site.edges.items():
        assert bool((net.connections[name].mask[rows, cols] == 0).all())
    parents = {(net.connections[n].source, int(net.connections[n].source_units(
        net.layers[net.connections[n].source].size)[col])) for n, (_, cs) in site.edges.items() for col in cs}
    read = set()
    for c in net.incoming(layer):
        read |= {(c.source, int(u)) for u in c.source_units(net.layers[c.source].size)}
    assert read == parents


def test_unsigned_split_of_negative_inputs_changes_the_function():
    """The reason for the signed variant (and a check that the exactness test above can fail)."""
    data = toy_dataset(n=40, d=5, k=3, signed=True)
    net = GrowableNet.mlp([5, 3], seed=0)
    ctx = make_ctx(net, data)
    x = data.x_train
    expected = net(x).detach()
    site = Site(layer="output", edges={"input_to_output": ([0, 1, 2], [0, 2, 4])})
    EdgeSplitInitializer(eps=0.0, signed=False).grow(ctx, [site])
    assert not torch.allclose(net(x), expected, **TOL)


def test_auto_is_unsigned_for_non_negative_inputs_and_eps_edges_are_small():
    data = toy_dataset(n=40, d=5, k=3, signed=False)
    assert float(data.x_train.min()) >= 0
    net = GrowableNet.mlp([5, 3], seed=0)
    ctx = make_ctx(net, data, seed=3)
    x = data.x_train
    expected = net(x).detach()
    site = Site(layer="output", edges={"input_to_output": ([0, 1, 2], [0, 2, 2])})
    (event,) = EdgeSplitInitializer(eps=1e-3, signed="auto").grow(ctx, [site])
    assert event.details["signed"] is False and net.layers["h1"].size == 3
    for c in net.incoming("h1") + net.outgoing("h1"):
        eps_entries = c.weight.detach()[c.provisional]
        assert bool(((eps_entries >= 0) & (eps_entries < 1e-3)).all()) and eps_entries.numel() > 0
    # eps edges perturb the outputs by about eps * (sum of inputs) at most
    assert float((net(x).detach() - expected).abs().max()) < 1e-2


def test_sites_without_edges_are_skipped():
    data = toy_dataset(n=20, d=3, k=2)
    net = GrowableNet.mlp([3, 2], seed=0)
    ctx = make_ctx(net, data)
    assert EdgeSplitInitializer().grow(ctx, [Site(layer="output", edges={}), Site(layer="output")]) == []
    assert net.order == ["input", "output"]

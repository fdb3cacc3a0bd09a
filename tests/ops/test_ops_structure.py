"""What each op builds, checked against values computed by hand: the edge split of ALGORITHMS.md §1
(new layer reading only the parents, eps edges provisional in ``[0, eps)``, signed variant), pruning,
compaction keeping masks / provisional marks aligned, width and depth ops, and their events."""

from __future__ import annotations

import json

import pytest
import torch

from selfexpand import ops
from selfexpand.graph import GrowableNet

TOL = dict(rtol=1e-5, atol=1e-5)


def out(net, x):
    with torch.no_grad():
        return net(x)


def test_split_builds_the_expansion_layer():
    net = GrowableNet.mlp([4, 3], seed=0)
    w = net.connections["input_to_output"].weight.detach().clone()
    edges = [("input_to_output", 0, 1), ("input_to_output", 2, 1), ("input_to_output", 1, 3)]
    eps = 1e-3
    event = ops.split_edges(net, edges, eps=eps, generator=torch.Generator().manual_seed(0))
    new = event.details["layer"]
    assert net.order == ["input", new, "output"]
    assert net.layers[new].size == 3 and isinstance(net.layers[new].activation, torch.nn.ReLU)
    c_in = net.connections[event.details["connections"][0]]
    c_out = net.connections[event.details["connections"][1]]
    # E reads the parents P = {1, 3} only; unit 0 <- parent 1, unit 1 <- parent 1, unit 2 <- parent 3
    assert c_in.source == "input" and c_in.in_index.tolist() == [1, 3] and c_in.shape == (3, 2)
    path_in = torch.tensor([[True, False], [True, False], [False, True]])
    assert torch.equal(c_in.weight.detach()[path_in], torch.ones(3))
    # E writes every output unit: unit 0 -> child 0 (w[0,1]), unit 1 -> child 2 (w[2,1]), unit 2 -> child 1
    assert c_out.target == "output" and c_out.in_index is None and c_out.shape == (3, 3)
    path_out = torch.zeros(3, 3, dtype=torch.bool)
    path_out[[0, 2, 1], [0, 1, 2]] = True
    torch.testing.assert_close(c_out.weight.detach()[path_out], torch.stack([w[0, 1], w[1, 3], w[2, 1]]))
    for conn, path in ((c_in, path_in), (c_out, path_out)):
        assert torch.equal(conn.provisional, ~path)  # eps edges, and only they, are provisional
        eps_values = conn.weight.detach()[~path]
        assert bool(((eps_values >= 0) & (eps_values < eps)).all()) and bool((eps_values > 0).any())
    direct = net.connections["input_to_output"]
    split = torch.zeros(3, 4, dtype=torch.bool)
    split[[0, 2, 1], [1, 1, 3]] = True
    assert torch.equal(direct.mask == 0, split)
    assert bool((direct.weight.detach()[split] == 0).all())
    assert torch.equal(direct.weight.detach()[~split], w[~split])
    assert (event.kind, event.site, event.units_added, event.edges_removed, event.edges_added) == \
        ("split_edges", "output", 3, 3, 6 + 9)
    json.dumps(event.to_dict())


def test_split_eps_edges_replay_with_the_same_generator():
    def grown():
        net = GrowableNet.mlp([5, 4], seed=0)
        ops.split_edges(net, {"input_to_output": ([0, 1, 3], [4, 0, 2])}, eps=1e-8,
                        generator=torch.Generator().manual_seed(7))
        return net

    a, b = grown(), grown()
    for key, value in a.state_dict().items():
        assert torch.equal(b.state_dict()[key], value), key


@pytest.mark.parametrize("signed", [False, True])
def test_split_signed_variant_values(signed):
    net = GrowableNet.mlp([3, 2], seed=1)
    w = float(net.connections["input_to_output"].weight.detach()[1, 2])
    event = ops.split_edges(net, [("input_to_output", 1, 2)], eps=0.0, signed=signed)
    c_in, c_out = (net.connections[c] for c in event.details["connections"])
    if signed:  # relu(x) w + relu(-x) (-w) = w x
        assert c_in.weight.detach().flatten().tolist() == [1.0, -1.0]
        torch.testing.assert_close(c_out.weight.detach()[1], torch.tensor([w, -w]))
    else:
        assert c_in.weight.detach().flatten().tolist() == [1.0]
        torch.testing.assert_close(c_out.weight.detach()[1], torch.tensor([w]))
    assert bool((c_out.weight.detach()[0] == 0).all())  # eps edges at eps = 0
    x = torch.tensor([[0.3, -0.7, -2.0], [1.0, 2.0, 1.5]])
    reference = GrowableNet.mlp([3, 2], seed=1)
    diff = (out(net, x) - out(reference, x)).abs().max()
    assert (diff < 1e-6) if signed else (diff > 1e-3)  # unsigned is wrong for the negative x[0, 2]


def test_split_edges_from_two_source_layers():
    net = GrowableNet.mlp([3, 4, 2], seed=2)
    first = ops.split_edges(net, [("h1_to_output", 0, 1)], eps=0.0).details["layer"]
    x = torch.rand(8, 3, generator=torch.Generator().manual_seed(0))
    before = out(net, x)
    edges = [("h1_to_output", 1, 2), (f"{first}_to_output", 0, 0)]
    event = ops.split_edges(net, edges, eps=0.0)
    new = event.details["layer"]
    assert net.order.index(first) < net.order.index(new) < net.order.index("output")
    sources = sorted(net.connections[c].source for c in event.details["connections"][:-1])
    assert sources == sorted(["h1", first])
    torch.testing.assert_close(out(net, x), before, **TOL)


def test_prune_clears_provisional_and_compaction_keeps_marks_aligned():
    net = GrowableNet.mlp([4, 3], seed=0)
    event = ops.split_edges(net, [("input_to_output", 0, 1), ("input_to_output", 2, 1)], eps=1e-3,
                            generator=torch.Generator().manual_seed(0))
    name = event.details["connections"][1]
    conn = net.connections[name]
    ops.prune_edges(net, [(name, 1, 0), (name, 1, 1)])  # row 1 of E -> output: eps edges only
    assert not bool(conn.provisional[1].any()) and bool((conn.mask[1] == 0).all())
    weight, prov, mask = (t.detach().clone() for t in (conn.weight, conn.provisional, conn.mask))
    x = torch.rand(8, 4, generator=torch.Generator().manual_seed(1))
    before = out(net, x)
    ops.compact(net)
    conn = net.connections[name]
    assert conn.out_index.tolist() == [0, 2]
    kept = torch.tensor([0, 2])
    assert torch.equal(conn.weight.detach(), weight[kept])
    assert torch.equal(conn.provisional, prov[kept])
    assert conn.mask is None and bool((mask[kept] == 1).all())  # every stored entry is live again
    torch.testing.assert_close(out(net, x), before, **TOL)


def test_compaction_folds_a_unit_left_without_inputs():
    """A hidden unit read by live edges but fed by none outputs ``act(bias) * factor``: compaction folds
    that constant into the biases it feeds, then drops the unit."""
    net = GrowableNet.mlp([2, 3, 2], seed=3)
    with torch.no_grad():
        net.layers["h1"].bias[1] = 0.4
    ops.prune_edges(net, [("input_to_h1", 1, 0), ("input_to_h1", 1, 1)])
    x = torch.rand(8, 2, generator=torch.Generator().manual_seed(0))
    before = out(net, x)
    w_col = net.connections["h1_to_output"].weight.detach()[:, 1].clone()
    b_out = net.layers["output"].bias.detach().clone()
    ops.compact(net)
    assert net.layers["h1"].size == 2
    torch.testing.assert_close(net.layers["output"].bias.detach(), b_out + 0.4 * w_col)
    torch.testing.assert_close(out(net, x), before, **TOL)


def test_compaction_removes_a_layer_with_no_live_edge_out():
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    ops.split_edges(net, [("h1_to_output", 0, 1)], eps=0.0)
    ops.prune_edges(net, {"h2_to_output": ([0, 1], [0, 0])})
    x = torch.rand(8, 3, generator=torch.Generator().manual_seed(0))
    before = out(net, x)
    event = ops.compact(net)
    assert "h2" not in net.layers and net.order == ["input", "h1", "output"]
    assert not any("h2" in name for name in net.connections)
    assert event.units_removed == 1
    torch.testing.assert_close(out(net, x), before, **TOL)


def test_add_units_places_the_given_values():
    net = GrowableNet.mlp([3, 2, 2], seed=0)
    x = torch.rand(8, 3, generator=torch.Generator().manual_seed(0))
    before = out(net, x)
    a = torch.tensor([[0.5, -1.0, 0.25]])
    b = torch.tensor([0.1])
    v = torch.tensor([[2.0], [-3.0]])
    event = ops.add_units(net, "h1", 1, incoming={"input_to_h1": a}, bias=b,
                          outgoing={"h1_to_output": v})
    assert torch.equal(net.connections["input_to_h1"].weight.detach()[2:], a)
    assert torch.equal(net.layers["h1"].bias.detach()[2:], b)
    assert torch.equal(net.connections["h1_to_output"].weight.detach()[:, 2:], v)
    expected = before + torch.relu(x @ a.T + b) @ v.T  # the new unit's contribution, by hand
    torch.testing.assert_close(out(net, x), expected, **TOL)
    assert (event.kind, event.site, event.units_added, event.edges_added) == ("add_units", "h1", 1, 5)
    assert event.params_after - event.params_before == 3 + 1 + 2


def test_add_units_leaves_subset_readers_alone():
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    ops.split_edges(net, [("h1_to_output", 0, 2)], eps=0.0)
    reader = net.connections["h1_to_h2"]
    ops.add_units(net, "h1", 2, incoming={"input_to_h1": torch.ones(2, 3)},
                  outgoing={"h1_to_output": torch.zeros(2, 2)})
    assert reader.in_index.tolist() == [2] and reader.shape == (1, 1)
    assert net.connections["h1_to_output"].mask.shape == (2, 6)


def test_remove_units_keeps_the_other_weights():
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    w_in = net.connections["input_to_h1"].weight.detach().clone()
    w_out = net.connections["h1_to_output"].weight.detach().clone()
    event = ops.remove_units(net, "h1", [0, 2])
    assert torch.equal(net.connections["input_to_h1"].weight.detach(), w_in[[1, 3]])
    assert torch.equal(net.connections["h1_to_output"].weight.detach(), w_out[:, [1, 3]])
    assert (event.units_removed, event.edges_removed) == (2, 2 * 3 + 2 * 2)


def test_insert_layer_with_given_values():
    net = GrowableNet.mlp([3, 2], seed=0)
    b_out = net.layers["output"].bias.detach().clone()
    a = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    b = torch.tensor([0.0, -0.2])
    v = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    event = ops.insert_layer(net, "input_to_output", 2, weight_in=a, bias=b, weight_out=v,
                             activation="tanh")
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out(net, x), torch.tanh(x @ a.T + b) @ v.T + b_out, **TOL)
    assert "input_to_output" not in net.connections and net.is_chain()
    assert (event.units_added, event.edges_removed, event.edges_added) == (2, 6, 6 + 4)


@pytest.mark.parametrize("signed", [False, True])
def test_identity_layer_keeps_mask_and_indices(signed):
    net = GrowableNet.mlp([4, 3], seed=0)
    ops.prune_edges(net, [("input_to_output", r, 0) for r in range(3)] + [("input_to_output", 1, 2)])
    ops.compact(net)  # column 0 dropped: the connection reads input units [1, 2, 3] with a mask
    conn = net.connections["input_to_output"]
    assert conn.in_index.tolist() == [1, 2, 3] and conn.mask is not None
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0)) if signed \
        else torch.rand(8, 4, generator=torch.Generator().manual_seed(0))
    before = out(net, x)
    event = ops.insert_identity_layer(net, "input_to_output", signed=signed)
    c_in, c_out = (net.connections[c] for c in event.details["connections"])
    assert c_in.in_index.tolist() == [1, 2, 3]
    assert net.layers[event.details["layer"]].size == (6 if signed else 3)
    assert int(c_out.live().sum()) == (2 if signed else 1) * 8
    torch.testing.assert_close(out(net, x), before, **TOL)


@pytest.mark.parametrize("signed", [False, True])
def test_identity_layer_keeps_provisional_marks(signed):
    """Eps edges stay prunable after an identity layer takes their connection's place."""
    net = GrowableNet.mlp([4, 3], seed=0)
    event = ops.split_edges(net, [("input_to_output", 0, 1), ("input_to_output", 2, 3)], eps=1e-8)
    out_conn = event.details["connections"][-1]
    marks = net.connections[out_conn].provisional.clone()
    assert bool(marks.any())
    inserted = ops.insert_identity_layer(net, out_conn, signed=signed)
    new_out = net.connections[inserted.details["connections"][1]]
    expected = torch.cat([marks, marks], 1) if signed else marks
    assert new_out.provisional is not None and torch.equal(new_out.provisional, expected)

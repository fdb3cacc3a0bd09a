"""Sparse connection storage (``graph.sparse``, ``ops.storage``) passes what dense storage passes.

Random graphs whose connections start pruned to 15-70 % and whose ``sparse_below`` is 0.4-1.0, so
that storage is chosen sparse for some connections and converted back and forth by the ops: every op
preserves the outputs, the counts equal an independent tally, spec and export round trip; with an
optimizer the state follows each live edge bit for bit; sparse and all-dense storage train alike.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from graphkit import OPS, TOL, apply_op, draw_case, independent_counts, outputs, sparse_names, spec_round_trip
from optkit import FIRST_MOMENTS, OPTIMIZERS, SECOND_MOMENTS
from selfexpand import ops
from selfexpand.errors import ConfigError
from selfexpand.graph import GateModulator, GrowableNet
from selfexpand.graph.sparse import SPARSE_BELOW
from selfexpand.ops.storage import choose_storage, dense_storage
from selfexpand.train.flops import flop_breakdown

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STEPS = ("spec_round_trip", "export", "restorage")


def _restorage(case, data, optimizer=None):
    """A new ``sparse_below`` (0: all dense, 1: every masked connection sparse) and the choice made."""
    case.net.sparse_below = data.draw(st.sampled_from((0.0, 0.5, 1.0)), label="new sparse_below")
    case.log.append(f"choose_storage(sparse_below={case.net.sparse_below})")
    choose_storage(case.net, optimizer)


def _check_storage(net) -> None:
    """After every op: the choice holds (sparse exactly where a masked candidate is below the cut-over)."""
    for name, c in net.connections.items():
        fraction = (c.weight.numel() if c.sparse else int(c.live().sum())) / (c.shape[0] * c.shape[1])
        masked = c.sparse or c.mask is not None
        assert c.sparse == (masked and fraction < net.sparse_below), (name, fraction, net.sparse_below)
        if c.sparse:
            assert c.mask is None and c.weight.shape == (c.edge_index.shape[1],)
            if c.provisional is not None:
                assert c.provisional.shape == c.weight.shape


@SETTINGS
@given(data=st.data())
def test_random_op_sequences_on_sparse_storage(data):
    case = draw_case(data, sparse=True)
    seen, back = set(sparse_names(case.net)), False
    kinds = data.draw(st.lists(st.sampled_from(sorted(OPS) + list(STEPS)), min_size=1, max_size=6), label="ops")
    for kind in kinds:
        reference = outputs(case.net, case.x)
        if kind == "spec_round_trip":
            case.net = spec_round_trip(case.net)
        elif kind == "export":
            torch.testing.assert_close(outputs(case.net.export(), case.x), reference, **TOL,
                                       msg=lambda m: f"export: {m}\n{case.log}")
        elif kind == "restorage":
            _restorage(case, data)
        else:
            _, reference = apply_op(case, kind, data)
        torch.testing.assert_close(outputs(case.net, case.x), reference, **TOL, msg=lambda m: f"{m}\n{case.log}")
        assert case.net.counts() == independent_counts(case.net), case.log
        _check_storage(case.net)
        back = back or any(name in case.net.connections and not case.net.connections[name].sparse for name in seen)
        seen |= set(sparse_names(case.net))
    event(f"a connection stored sparse: {bool(seen)}")
    event(f"a sparse connection stored dense again: {back}")


@SETTINGS
@given(data=st.data())
def test_random_op_sequences_on_sparse_storage_with_an_optimizer(data):
    """With Adam after real steps: outputs kept, the optimizer holds exactly the current parameters and
    state shaped like them, training runs on."""
    case = draw_case(data, sparse=True)
    optimizer = torch.optim.Adam(case.net.parameters(), lr=1e-3)
    for _ in range(2):
        optimizer.zero_grad()
        case.net(case.x).pow(2).mean().backward()
        optimizer.step()
    for kind in data.draw(st.lists(st.sampled_from(sorted(OPS) + ["restorage"]), min_size=1, max_size=5),
                          label="ops"):
        reference = outputs(case.net, case.x)
        if kind == "restorage":
            _restorage(case, data, optimizer)
        else:
            _, reference = apply_op(case, kind, data, optimizer=optimizer)
        torch.testing.assert_close(outputs(case.net, case.x), reference, **TOL, msg=lambda m: f"{m}\n{case.log}")
        held = [p for g in optimizer.param_groups for p in g["params"]]
        assert {id(p) for p in held} == {id(p) for p in case.net.parameters()} and len(held) == len(set(map(id, held)))
        for p, state in optimizer.state.items():
            for key, value in state.items():
                if torch.is_tensor(value) and value.dim() > 0:
                    assert value.shape == p.shape, (key, case.log)
    optimizer.zero_grad()
    case.net(case.x).pow(2).mean().backward()
    optimizer.step()
    assert all(bool(torch.isfinite(p).all()) for p in case.net.parameters())


# ---------------------------------------------------------------- fixed examples
def pruned_net(keep: float = 0.2, seed: int = 0, dtype=torch.float64) -> GrowableNet:
    """784-... style: a 3-layer MLP whose first connection keeps ``keep`` of its edges."""
    net = GrowableNet.mlp([30, 20, 10, 4], seed=seed).to(dtype)
    gen = torch.Generator().manual_seed(seed)
    c = net.connections["input_to_h1"]
    ops.prune_edges(net, {"input_to_h1": torch.nonzero(torch.rand(c.shape, generator=gen) >= keep, as_tuple=True)})
    return net


def adam_steps(net, optimizer, x, n):
    for _ in range(n):
        optimizer.zero_grad()
        net(x).pow(2).mean().backward()
        optimizer.step()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_conversions_carry_each_live_edge_state_bit_for_bit(name):
    net = pruned_net()
    optimizer = OPTIMIZERS[name](net.parameters())
    x = torch.rand(16, 30, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    adam_steps(net, optimizer, x, 3)
    c = net.connections["input_to_h1"]
    live = c.live()
    before = {k: v.clone() for k, v in optimizer.state[c.weight].items()}
    weight = c.weight.detach().clone()

    net.sparse_below = 0.5
    assert choose_storage(net, optimizer) == ["input_to_h1"]
    assert c.sparse and c.weight.numel() == int(live.sum())
    state = optimizer.state[c.weight]
    for key, value in before.items():
        if torch.is_tensor(value) and value.dim() > 0:
            assert torch.equal(state[key], value[live]), key  # row-major order of the live edges
        else:
            assert torch.equal(torch.as_tensor(state[key]), torch.as_tensor(value)), key
    assert torch.equal(c.weight.detach(), weight[live])

    net.sparse_below = 0.0  # back to dense: live edges as they were, masked entries start as new
    choose_storage(net, optimizer)
    assert not c.sparse and torch.equal(c.mask.bool(), live) and torch.equal(c.weight.detach(), weight)
    state = optimizer.state[c.weight]
    for key, value in before.items():
        if not (torch.is_tensor(value) and value.dim() > 0):
            continue
        assert torch.equal(state[key][live], value[live]), key
        if key in FIRST_MOMENTS:
            assert bool((state[key][~live] == 0).all()), key
        elif key in SECOND_MOMENTS:
            torch.testing.assert_close(state[key][~live], value[live].mean().expand(int((~live).sum())))


def test_sparse_and_dense_storage_train_alike_through_growth():
    """Same start, same steps and ops: one network stores its pruned connection sparse, the other
    dense; after Adam steps, a split, a prune + compact and more steps, parameters agree (float64)."""
    x = torch.rand(32, 30, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    nets = []
    for below in (1.0, 0.0):
        net = pruned_net()
        net.sparse_below = below
        choose_storage(net)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
        adam_steps(net, optimizer, x, 5)
        ops.split_edges(net, [("input_to_h1", *map(int, torch.nonzero(net.connections["input_to_h1"].live())[0]))],
                        eps=1e-3, generator=torch.Generator().manual_seed(3), optimizer=optimizer)
        adam_steps(net, optimizer, x, 5)
        c = net.connections["input_to_h1"]
        r, col = torch.nonzero(c.live(), as_tuple=True)
        ops.prune_edges(net, {"input_to_h1": (r[::3], col[::3])}, optimizer=optimizer)
        ops.compact(net, optimizer=optimizer)
        adam_steps(net, optimizer, x, 5)
        nets.append(net)
    sparse, dense = nets
    assert sparse_names(sparse) and not sparse_names(dense)
    assert sparse.counts()["params"] == dense.counts()["params"]
    assert sparse.counts()["stored_params"] < dense.counts()["stored_params"]
    with dense_storage(sparse):
        for name, p in sparse.named_parameters():
            torch.testing.assert_close(p, dict(dense.named_parameters())[name], rtol=1e-9, atol=1e-10)
    assert sparse_names(sparse)  # the scope chose sparse storage again on leaving


def test_outputs_and_gradients_equal_all_dense_storage():
    net = pruned_net(keep=0.1)
    twin = copy.deepcopy(net)
    net.sparse_below = 1.0
    choose_storage(net)
    assert sparse_names(net) == ["input_to_h1"] and not sparse_names(twin)
    x = torch.randn(8, 30, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    outs = [n(x) for n in (net, twin)]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-12)
    for out in outs:
        out.pow(2).sum().backward()
    c, d = net.connections["input_to_h1"], twin.connections["input_to_h1"]
    torch.testing.assert_close(c.scatter(c.weight.grad), d.weight.grad * d.mask, rtol=0, atol=1e-12)
    for name, p in twin.named_parameters():
        if name != "connections.input_to_h1.weight":
            torch.testing.assert_close(dict(net.named_parameters())[name].grad, p.grad, rtol=0, atol=1e-12)


def test_spec_save_and_load_keep_sparse_storage(tmp_path):
    net = pruned_net()
    net.sparse_below = 0.5
    choose_storage(net)
    spec = json.loads(json.dumps(net.spec()))
    assert spec["connections"]["input_to_h1"]["edges"] == net.connections["input_to_h1"].weight.numel()
    assert spec["sparse_below"] == 0.5
    x = torch.rand(4, 30, dtype=torch.float64)
    loaded = GrowableNet.load(net.save(tmp_path / "net.safetensors"))
    assert loaded.connections["input_to_h1"].sparse and loaded.sparse_below == 0.5
    torch.testing.assert_close(loaded.to(torch.float64)(x), net(x), rtol=0, atol=0)
    assert "sparse_below" not in GrowableNet.mlp([3, 2]).spec() and GrowableNet.mlp([3, 2]).sparse_below == SPARSE_BELOW


def test_a_failing_op_leaves_storage_and_state_as_they_were():
    net = pruned_net()
    net.sparse_below = 0.5
    choose_storage(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    adam_steps(net, optimizer, torch.rand(8, 30, dtype=torch.float64), 2)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    state = {k: v.clone() for k, v in optimizer.state[net.connections["input_to_h1"].weight].items()}
    with pytest.raises(Exception):
        ops.remove_units(net, "h1", [99], optimizer=optimizer)
    assert net.connections["input_to_h1"].sparse
    for n, p in net.named_parameters():
        assert torch.equal(p.detach(), before[n]), n
    after = optimizer.state[net.connections["input_to_h1"].weight]
    assert all(torch.equal(after[k], v) for k, v in state.items())


def test_sparse_connection_arguments_are_checked():
    with pytest.raises(ConfigError, match="edge_index and shape together"):
        GrowableNet.mlp([3, 2]).connections["input_to_output"].__class__(
            "input", "output", torch.zeros(2), edge_index=torch.zeros(2, 2, dtype=torch.long))


@pytest.mark.parametrize("gated", [False, True])
def test_flops_follow_the_stored_edges(gated):
    """Live FLOPs do not depend on storage; stored FLOPs of a sparse connection are those of its edges."""
    dense = pruned_net(keep=0.1)
    if gated:  # a dead unit of h1: its edges are not live
        dense.layers["h1"].modulator = GateModulator(20)
        with torch.no_grad():
            dense.layers["h1"].modulator.gate[3] = -1.0
        dense.invalidate()
    sparse = copy.deepcopy(dense)
    sparse.sparse_below = 1.0
    choose_storage(sparse)
    a, b = flop_breakdown(dense), flop_breakdown(sparse)
    assert a.forward_live == b.forward_live and a.backward_live == b.backward_live
    c = sparse.connections["input_to_h1"]
    assert a.forward - b.forward == 2 * (c.shape[0] * c.shape[1] - c.weight.numel())
    assert (b.forward_live < b.forward) == gated  # sparse: every stored entry is live, but for a dead unit


@pytest.mark.parametrize("metric", ["abs_grad", "grad", "abs_weight"])
def test_edge_statistics_see_a_sparse_connection_as_its_dense_twin(metric):
    """Edge expansion's per-edge sums over a sparse connection equal the dense twin's, and a storage
    change does not make them stale (no gradient pass is asked for: the context has none)."""
    from types import SimpleNamespace

    from selfexpand.strategies.helpers.edge_statistics import EdgeStatistics

    dense = pruned_net(keep=0.1)
    sparse = copy.deepcopy(dense)
    sparse.sparse_below = 1.0
    choose_storage(sparse)
    x = torch.rand(16, 30, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    scores = []
    for net in (sparse, dense):
        stats = EdgeStatistics(metric=metric, track_all=True)
        stats.setup()
        ctx = SimpleNamespace(model=net)
        stats.on_epoch_begin(ctx)
        for _ in range(2):
            net.zero_grad()
            net(x).pow(2).sum().backward()
            stats.on_batch_end(ctx)
        if net is sparse:
            net.sparse_below = 0.0
            choose_storage(net)  # now dense: the sums still describe the same edges
            assert not sparse_names(net)
        scores.append(stats.scores(ctx, list(net.connections)))
    for name, s in scores[1].items():
        torch.testing.assert_close(scores[0][name], s, rtol=0, atol=1e-12, msg=name)
    assert bool((scores[0]["input_to_h1"] != 0).any())

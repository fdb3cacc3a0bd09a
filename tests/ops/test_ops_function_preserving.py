"""Property tests: random MLPs and random sequences of function-preserving ops (DESIGN.md, "Growth
operations"): after every op the outputs agree with those before it within 1e-5 (float32); pruning
changes the function, and the compaction that follows must keep the pruned net's outputs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphkit import OPS, TOL, apply_op, check_compacted, draw_case, live_edges, outputs, spec_round_trip
from selfexpand import ops
from selfexpand.graph import GrowableNet

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _params_tracked(optimizer, net) -> None:
    """The optimizer holds exactly the net's current parameters, and state only for them."""
    held = [p for g in optimizer.param_groups for p in g["params"]]
    assert len(held) == len({id(p) for p in held}), "a parameter is listed twice"
    assert {id(p) for p in held} == {id(p) for p in net.parameters()}
    assert {id(p) for p in optimizer.state} <= {id(p) for p in net.parameters()}


def _train_steps(net, optimizer, x, n=2):
    for _ in range(n):
        optimizer.zero_grad()
        net(x).pow(2).mean().backward()
        optimizer.step()


@SETTINGS
@given(data=st.data())
def test_random_op_sequences_preserve_outputs(data):
    case = draw_case(data)
    kinds = data.draw(st.lists(st.sampled_from(sorted(OPS) + ["spec_round_trip", "export"]),
                               min_size=1, max_size=6), label="ops")
    for kind in kinds:
        if kind == "spec_round_trip":
            reference = outputs(case.net, case.x)
            case.net = spec_round_trip(case.net)
        elif kind == "export":
            reference = outputs(case.net, case.x)
            torch.testing.assert_close(outputs(case.net.export(), case.x), reference, **TOL,
                                       msg=lambda m: f"export: {m}\n{case.log}")
        else:
            _, reference = apply_op(case, kind, data)
        after = outputs(case.net, case.x)
        torch.testing.assert_close(after, reference, **TOL, msg=lambda m: f"{m}\n{case.log}")


@SETTINGS
@given(data=st.data())
def test_random_op_sequences_with_an_optimizer(data):
    """Same ops with an Adam optimizer passed (after real steps): outputs preserved, the optimizer
    tracks exactly the current parameters, and training still runs afterwards."""
    case = draw_case(data)
    optimizer = torch.optim.Adam(case.net.parameters(), lr=1e-3)
    _train_steps(case.net, optimizer, case.x)
    kinds = data.draw(st.lists(st.sampled_from(sorted(OPS)), min_size=1, max_size=5), label="ops")
    for kind in kinds:
        _, reference = apply_op(case, kind, data, optimizer=optimizer)
        torch.testing.assert_close(outputs(case.net, case.x), reference, **TOL,
                                   msg=lambda m: f"{m}\n{case.log}")
        _params_tracked(optimizer, case.net)
        for p, state in optimizer.state.items():
            for key, value in state.items():
                if torch.is_tensor(value) and value.dim() > 0:
                    assert value.shape == p.shape, f"{key} of shape {value.shape} for {p.shape}"
    _train_steps(case.net, optimizer, case.x, n=1)
    assert all(bool(torch.isfinite(p).all()) for p in case.net.parameters())


@SETTINGS
@given(data=st.data())
def test_compaction_alone_preserves_outputs_and_shrinks_storage(data):
    """Prune a random set of edges (no compaction in between), then compact once."""
    case = draw_case(data)
    for kind in data.draw(st.lists(st.sampled_from(["split_edges", "insert_identity", "add_units"]),
                                   max_size=3), label="growth"):
        apply_op(case, kind, data)
    edges = live_edges(case.net)
    chosen = data.draw(st.lists(st.sampled_from(edges), min_size=1, max_size=len(edges), unique=True),
                       label="prune")
    ops.prune_edges(case.net, chosen)
    pruned = outputs(case.net, case.x)
    stored = case.net.counts()["stored_params"]
    event = ops.compact(case.net)
    check_compacted(case.net, stored)
    torch.testing.assert_close(outputs(case.net, case.x), pruned, **TOL)
    assert event.params_after == case.net.counts()["params"]
    # compaction is idempotent: a second pass changes nothing
    spec, stored = case.net.spec(), case.net.counts()["stored_params"]
    ops.compact(case.net)
    assert case.net.spec()["connections"] == spec["connections"]
    assert case.net.counts()["stored_params"] == stored


@pytest.mark.parametrize("signed_input, signed", [(False, False), (True, True), (False, True)])
def test_split_with_eps_zero_is_exact_on_a_fixed_example(signed_input, signed):
    """A deterministic anchor for the property above (no hypothesis)."""

    gen = torch.Generator().manual_seed(3)
    net = GrowableNet.mlp([5, 4, 3], seed=1)
    x = torch.randn(32, 5, generator=gen) if signed_input else torch.rand(32, 5, generator=gen)
    before = outputs(net, x)
    ops.split_edges(net, {"input_to_h1": ([0, 1, 3], [2, 2, 4])}, eps=0.0, signed=signed)
    torch.testing.assert_close(outputs(net, x), before, **TOL)


def test_unsigned_split_of_signed_inputs_is_not_exact():
    """The property test can fail: with negative parent values the unsigned split changes outputs."""

    net = GrowableNet.mlp([3, 2], seed=0)
    x = -torch.ones(4, 3)
    before = outputs(net, x)
    ops.split_edges(net, [("input_to_output", 0, 0)], eps=0.0, signed=False)
    assert not torch.allclose(outputs(net, x), before, **TOL)

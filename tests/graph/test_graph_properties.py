"""Property tests on random grown graphs (random MLPs, then random function-preserving ops from
``graphkit``): export reproduces the outputs, the spec + state dict rebuild the graph exactly, the
counts agree with an independent tally, and a float64 graph stays float64 and exact."""

from __future__ import annotations

import json

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from graphkit import OPS, TOL, apply_op, draw_case, independent_counts, outputs
from selfexpand.graph import ExportedGraph, GrowableNet, UnitModulator

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def grown_case(data, **kw):
    case = draw_case(data, **kw)
    for kind in data.draw(st.lists(st.sampled_from(sorted(OPS)), max_size=5), label="ops"):
        apply_op(case, kind, data)
    return case


@SETTINGS
@given(data=st.data())
def test_export_of_random_grown_graphs(data):
    case = grown_case(data)
    net = case.net
    exported = net.export()
    torch.testing.assert_close(outputs(exported, case.x), outputs(net, case.x), **TOL,
                               msg=lambda m: f"{m}\n{case.log}")
    every_layer_live = all(bool(net.layers[n].live_units().any()) for n in net.order)
    expected = nn.Sequential if net.is_chain() and every_layer_live else ExportedGraph
    assert isinstance(exported, expected), case.log
    assert not any("mask" in n or "provisional" in n for n, _ in exported.named_buffers())
    assert not any(isinstance(m, UnitModulator) for m in exported.modules())
    n_exported = sum(p.numel() for p in exported.parameters())
    counts = net.counts()
    # the export stores live units only, but dense: masked entries between live units stay as zeros
    assert n_exported >= counts["params"]
    if all(c.full for c in net.connections.values()):
        assert n_exported == counts["params"], case.log


@SETTINGS
@given(data=st.data())
def test_spec_round_trip_of_random_grown_graphs(data):
    case = grown_case(data)
    net = case.net
    spec = net.spec()
    text = json.dumps(spec)  # plain JSON
    rebuilt = GrowableNet.from_spec(json.loads(text), net.state_dict())
    assert rebuilt.spec() == spec
    # same keys (registration order may differ: the spec lists layers in topological order)
    assert sorted(rebuilt.state_dict()) == sorted(net.state_dict())
    for key, value in net.state_dict().items():
        other = rebuilt.state_dict()[key]
        assert other.dtype == value.dtype and torch.equal(other, value), key
    torch.testing.assert_close(outputs(rebuilt, case.x), outputs(net, case.x), rtol=0, atol=0)
    assert rebuilt.counts() == net.counts()
    # the rebuilt graph grows on like the original
    kind = data.draw(st.sampled_from(sorted(OPS)), label="op after rebuild")
    case.net = rebuilt
    _, reference = apply_op(case, kind, data)
    torch.testing.assert_close(outputs(rebuilt, case.x), reference, **TOL)


@SETTINGS
@given(data=st.data())
def test_counts_of_random_grown_graphs(data):
    case = grown_case(data)
    counts = case.net.counts()
    assert counts == independent_counts(case.net), case.log
    assert counts["stored_params"] == sum(p.numel() for p in case.net.parameters()) \
        - counts["control_params"]
    assert counts["weights_active"] <= counts["params"] <= counts["stored_params"]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_float64_graphs_stay_float64_and_exact(data):
    case = draw_case(data, modulators=False)
    case.net.to(torch.float64)
    case.x = case.x.double()
    for kind in data.draw(st.lists(st.sampled_from(sorted(OPS)), min_size=1, max_size=4), label="ops"):
        _, reference = apply_op(case, kind, data)
        assert {p.dtype for p in case.net.parameters()} == {torch.float64}, case.log
        torch.testing.assert_close(outputs(case.net, case.x), reference, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(outputs(case.net.export(), case.x), outputs(case.net, case.x),
                               rtol=1e-10, atol=1e-10)

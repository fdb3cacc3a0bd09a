"""The ``grown`` marks of a layer (new units, DESIGN.md glossary) follow every op that changes its
units: add_units appends True, remove_units and compaction keep the surviving units' marks, new
layers (insert_layer, split_edges) are all True; the spec says which layers carry marks, and specs and
state dicts made before the marks existed still load."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphkit import OPS, apply_op, draw_case, spec_round_trip
from selfexpand import ops
from selfexpand.checkpoint import load_checkpoint, save_checkpoint
from selfexpand.errors import ConfigError, GrowthError
from selfexpand.graph import GrowableNet

F, T = False, True


def marks(net, layer):
    grown = net.layers[layer].grown
    return None if grown is None else grown.tolist()


def widen(net, layer, n, out_value=0.0):
    """``add_units`` with random incoming rows and constant outgoing columns."""
    gen = torch.Generator().manual_seed(n)
    incoming = {name: torch.rand(n, c.shape[1], generator=gen) - 0.5
                for name, c in net.connections.items() if c.target == layer and c.out_index is None}
    outgoing = {name: torch.full((c.shape[0], n), out_value)
                for name, c in net.connections.items() if c.source == layer and c.in_index is None}
    return ops.add_units(net, layer, n, incoming=incoming, outgoing=outgoing)


def test_a_fresh_mlp_has_no_marks_and_no_new_units():
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    assert all(layer.grown is None for layer in net.layers.values())
    assert net.layers["h1"].new_units().tolist() == [F] * 4
    assert "layers.h1.grown" not in net.state_dict()


def test_add_units_appends_true_marks():
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    widen(net, "h1", 2)
    assert marks(net, "h1") == [F, F, F, F, T, T]
    widen(net, "h1", 1)
    assert marks(net, "h1") == [F, F, F, F, T, T, T]
    assert net.layers["h1"].new_units().tolist() == marks(net, "h1")
    assert marks(net, "output") is None and marks(net, "input") is None


def test_remove_units_keeps_the_marks_of_the_kept_units():
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    widen(net, "h1", 3)
    ops.remove_units(net, "h1", [1, 4])
    assert marks(net, "h1") == [F, F, F, T, T]
    ops.remove_units(net, "h1", [0, 1, 2])
    assert marks(net, "h1") == [T, T]


def test_remove_units_without_marks_keeps_none():
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    ops.remove_units(net, "h1", [0])
    assert net.layers["h1"].grown is None


def test_a_failing_op_leaves_the_marks_alone():
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    with pytest.raises((GrowthError, ConfigError)):
        ops.add_units(net, "h1", 2, incoming={"input_to_h1": torch.zeros(2, 9)},
                      outgoing={"h1_to_output": torch.zeros(2, 2)})
    assert net.layers["h1"].grown is None
    widen(net, "h1", 1)
    with pytest.raises(GrowthError):
        ops.remove_units(net, "h1", [7])
    assert marks(net, "h1") == [F, F, F, F, T]


def test_insert_layer_marks_the_whole_new_layer():
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    event = ops.insert_identity_layer(net, "h1_to_output")
    new = event.details["layer"]
    assert marks(net, new) == [T] * 4
    assert marks(net, "h1") is None
    event = ops.insert_layer(net, "input_to_h1", 2, weight_in=torch.ones(2, 3), bias=torch.zeros(2),
                             weight_out=torch.ones(4, 2))
    assert marks(net, event.details["layer"]) == [T, T]


@pytest.mark.parametrize("signed", [False, True])
def test_split_edges_marks_the_whole_new_layer(signed):
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    event = ops.split_edges(net, [("h1_to_output", 0, 1), ("h1_to_output", 1, 2)], eps=0.0, signed=signed)
    assert marks(net, event.details["layer"]) == [T] * (4 if signed else 2)
    assert marks(net, "h1") is None and marks(net, "output") is None


def test_compaction_keeps_the_marks_of_the_surviving_units():
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    widen(net, "h1", 2, out_value=0.5)  # h1: [F, F, F, F, T, T]
    # units 1 and 4 lose every outgoing edge: compaction removes them
    ops.prune_edges(net, {"h1_to_output": ([0, 1, 0, 1], [1, 1, 4, 4])})
    event = ops.compact(net)
    assert event.units_removed == 2
    assert net.layers["h1"].size == 4 and marks(net, "h1") == [F, F, F, T]


def test_compaction_removing_a_new_layer_takes_its_marks_along():
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    event = ops.split_edges(net, [("h1_to_output", 0, 1)], eps=0.0)
    new = event.details["layer"]
    ops.prune_edges(net, [(c, r, k) for c in event.details["connections"] if net.connections[c].source == new
                          for r, k in torch.nonzero(net.connections[c].live()).tolist()])
    ops.compact(net)
    assert new not in net.layers
    assert all(len(layer.grown) == layer.size for layer in net.layers.values() if layer.grown is not None)


def test_spec_records_which_layers_carry_marks_and_round_trips():
    net = GrowableNet.mlp([3, 4, 4, 2], seed=0)
    widen(net, "h1", 2)
    ops.remove_units(net, "h1", [0])
    spec = json.loads(json.dumps(net.spec()))
    assert spec["layers"]["h1"]["grown"] is True and spec["layers"]["h2"]["grown"] is False
    assert spec["layers"]["output"]["grown"] is False and "grown" not in spec["layers"]["input"]
    twin = GrowableNet.from_spec(spec, net.state_dict())
    assert marks(twin, "h1") == [F, F, F, T, T] and twin.layers["h2"].grown is None
    x = torch.rand(5, 3)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), net(x), rtol=0, atol=0)


def test_an_old_spec_and_state_dict_without_marks_still_load():
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    spec = json.loads(json.dumps(net.spec()))
    for entry in spec["layers"].values():
        entry.pop("grown", None)  # as written before the marks existed
    state = net.state_dict()
    assert not any(key.endswith("grown") for key in state)
    old = GrowableNet.from_spec(spec, state)
    assert all(layer.grown is None for layer in old.layers.values())
    widen(old, "h1", 1)  # growth after loading marks the new unit
    assert marks(old, "h1") == [F, F, F, F, T]


def test_a_spec_that_promises_marks_needs_them_in_the_state_dict():
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    widen(net, "h1", 1)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("grown")}
    with pytest.raises(RuntimeError, match="grown"):
        GrowableNet.from_spec(net.spec(), state)


def test_checkpoint_round_trip_keeps_the_marks(tmp_path):
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    widen(net, "h1", 2)
    ops.split_edges(net, [("h1_to_output", 0, 5)], eps=0.0)
    save_checkpoint(tmp_path / "m.safetensors", net)
    loaded = load_checkpoint(tmp_path / "m.safetensors").model
    for name, layer in net.layers.items():
        assert marks(loaded, name) == marks(net, name), name
        if layer.grown is not None:
            assert loaded.layers[name].grown.dtype == torch.bool


def test_marks_stay_bool_through_dtype_changes():
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    widen(net, "h1", 1)
    net.to(torch.float64)
    assert net.layers["h1"].grown.dtype == torch.bool and marks(net, "h1") == [F, F, F, F, T]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_op_sequences_keep_marks_aligned(data):
    """Units are never reordered: a layer of the starting MLP reads [False..., True...] (old units,
    then new ones); a layer made by growth is all True. Without removals, the new units are exactly
    the units added by growth events."""
    case = draw_case(data)
    original = set(case.net.order)
    kinds = data.draw(st.lists(st.sampled_from(sorted(OPS) + ["spec_round_trip"]), min_size=1,
                               max_size=6), label="ops")
    added, removals = 0, False
    for kind in kinds:
        if kind == "spec_round_trip":
            case.net = spec_round_trip(case.net)
            continue
        event, _ = apply_op(case, kind, data)
        if event is None:
            continue
        added += event.units_added
        removals = removals or event.units_removed > 0
    net = case.net
    total_new = 0
    for name in net.order:
        layer = net.layers[name]
        new = layer.new_units()
        assert new.shape == (layer.size,) and new.dtype == torch.bool, (name, case.log)
        total_new += int(new.sum())
        if name in original:
            n_old = int((~new).sum())
            assert new.tolist() == [F] * n_old + [T] * (layer.size - n_old), (name, case.log)
        else:
            assert bool(new.all()), (name, case.log)
    assert total_new <= added, case.log
    if not removals:
        assert total_new == added, case.log

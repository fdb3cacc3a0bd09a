"""``net.save(path)`` / ``GrowableNet.load(path)``: one safetensors file, no pickle; a grown network comes
back exactly (spec, every tensor with its dtype, grown marks, masks, outputs bit for bit), and a missing,
truncated, tampered or foreign file raises a ``CheckpointError`` naming the file."""

from __future__ import annotations

import json

import pytest
import torch
from graphkit import OPS, apply_op, draw_case
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from selfexpand import ops
from selfexpand.errors import CheckpointError
from selfexpand.graph import GrowableNet, front_for
from selfexpand.graph.saving import FORMAT, _digest
from selfexpand.graph.size_nets import size_weight_net


def assert_same(loaded, net, x):
    assert type(loaded) is type(net)
    assert loaded.spec() == net.spec()
    mine, theirs = loaded.state_dict(), net.state_dict()
    assert set(mine) == set(theirs)  # layers come back in topological order, which forward follows
    assert [k for k in mine if k.startswith("connections.")] == [k for k in theirs if k.startswith("connections.")]
    for key, value in theirs.items():
        assert mine[key].dtype == value.dtype and torch.equal(mine[key], value), key
    for name, layer in net.layers.items():
        grown = loaded.layers[name].grown
        assert (grown is None) == (layer.grown is None) and (grown is None or torch.equal(grown, layer.grown))
    loaded.eval(), net.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def grown_edges():
    gen = torch.Generator().manual_seed(0)
    net = GrowableNet.mlp([5, 6, 3], seed=0)
    ops.split_edges(net, [("h1_to_output", 0, 1), ("h1_to_output", 2, 4)], eps=1e-2, activation="rational",
                    generator=gen)
    net.layers["h2"].activation.set_coefficients(0.2, -0.1, 0.9)
    ops.prune_edges(net, [("input_to_h1", 0, 0)] + [("h1_to_output", 1, c) for c in range(6)])
    ops.compact(net)
    ops.add_units(net, "h1", 2, generator=gen)
    return net, torch.randn(8, 5, generator=gen)


def grown_senn():
    net = GrowableNet.mlp([4, 3, 2], "tanh", seed=1)
    ops.insert_layer(net, "h1_to_output", activation="rational")
    net.layers["h2"].activation.set_coefficients(0.5, 0.2, 0.7)
    return net, torch.randn(8, 4)


def with_front():
    front, spec = front_for("conv-small", [1, 8, 8], generator=torch.Generator().manual_seed(2))
    net = GrowableNet.mlp([front.out_features, 5, 3], seed=2, front=front, front_spec=spec)
    with torch.no_grad():
        net(torch.randn(6, 1, 8, 8))  # batch norm statistics move
    ops.add_units(net, "h1", 1, generator=torch.Generator().manual_seed(2))
    return net, torch.randn(4, 1, 8, 8)


def float64_size_weight():
    net = size_weight_net(3, 4, n_start=2.5, seed=3).double()
    return net, torch.randn(8, 3, dtype=torch.float64)


@pytest.mark.parametrize("build", [grown_edges, grown_senn, with_front, float64_size_weight])
def test_round_trip_is_exact(build, tmp_path):
    net, x = build()
    path = net.save(tmp_path / "sub" / "net.safetensors")
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    assert_same(GrowableNet.load(path), net, x)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_round_trip_of_random_grown_graphs(data, tmp_path):
    case = draw_case(data)
    for kind in data.draw(st.lists(st.sampled_from(sorted(OPS)), max_size=5), label="ops"):
        apply_op(case, kind, data)
    path = case.net.save(tmp_path / "net.safetensors")
    assert_same(GrowableNet.load(path), case.net, case.x)


def test_a_fresh_net_cannot_simply_load_a_grown_state_dict(tmp_path):
    """Why save / load exist: the grown state does not fit the start architecture."""
    net, x = grown_edges()
    with pytest.raises(RuntimeError):
        GrowableNet.mlp([5, 6, 3]).load_state_dict(net.state_dict())
    assert_same(GrowableNet.load(net.save(tmp_path / "n.safetensors")), net, x)


@pytest.fixture
def saved(tmp_path):
    net, _ = grown_edges()
    return net.save(tmp_path / "net.safetensors")


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _header_size(path):
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.unlink(), "not found"),
    (lambda p: p.write_bytes(p.read_bytes()[:-7]), "not a readable safetensors file"),
    (lambda p: p.write_bytes(p.read_bytes()[:20]), "not a readable safetensors file"),
    (lambda p: p.write_bytes(b"PK\x03\x04 a zip, not ours"), "not a readable safetensors file"),
    (lambda p: _flip(p, _header_size(p) + 5), "is damaged"),  # one bit of a tensor
    (lambda p: _flip(p, p.stat().st_size - 1), "is damaged"),  # the last byte of the last tensor
])
def test_damaged_files_raise_checkpoint_errors_naming_them(saved, damage, message):
    damage(saved)
    with pytest.raises(CheckpointError, match=message) as info:
        GrowableNet.load(saved)
    assert str(saved) in str(info.value)


def test_a_bit_flip_in_the_spec_is_caught(saved):
    header = saved.read_bytes()[:_header_size(saved)]
    at = header.index(b"next_id")  # a letter inside the spec's JSON
    _flip(saved, at)
    with pytest.raises(CheckpointError, match="damaged|not a readable") as info:
        GrowableNet.load(saved)
    assert str(saved) in str(info.value)


def test_a_file_of_other_tensors_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.ones(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a selfexpand network file") as info:
        GrowableNet.load(path)
    assert str(path) in str(info.value)


def test_a_spec_that_does_not_fit_its_tensors_is_refused(tmp_path):
    """A well-formed file (digest right) whose spec says another shape: an error, not a wrong net."""
    net, _ = grown_edges()
    spec = net.spec()
    spec["connections"]["input_to_h1"]["shape"][0] += 1
    spec_json = json.dumps(spec)
    tensors = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path), metadata={"format": FORMAT, "spec": spec_json,
                                            "sha256": _digest(spec_json, tensors)})
    with pytest.raises(CheckpointError, match="do not fit together") as info:
        GrowableNet.load(path)
    assert str(path) in str(info.value)

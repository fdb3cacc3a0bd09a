"""A ``GrowableNet`` behaves as an ordinary ``nn.Module``: ``.to(dtype)``, ``state_dict``,
``torch.no_grad``, gradients, ``deepcopy``; and its spec is plain JSON that rebuilds it."""

from __future__ import annotations

import copy
import io
import json

import pytest
import torch
from torch import nn

from selfexpand import ops
from selfexpand.errors import ConfigError
from selfexpand.graph import GateModulator, GrowableNet

TOL = dict(rtol=1e-5, atol=1e-5)


def grown_net():
    """Masks, index buffers, provisional marks, a gate: every kind of tensor a graph holds."""
    net = GrowableNet.mlp([4, 5, 3], seed=0)
    net.layers["h1"].modulator = GateModulator(5)
    with torch.no_grad():
        net.layers["h1"].modulator.gate.copy_(torch.tensor([0.1, -0.2, 0.0, 0.3, -1.0]))
    net.invalidate()
    ops.split_edges(net, [("h1_to_output", 0, 1), ("h1_to_output", 2, 3)], eps=1e-3,
                    generator=torch.Generator().manual_seed(1))
    ops.prune_edges(net, [("input_to_h1", 0, 0), ("input_to_h1", 1, 0)])
    return net


def x_batch(n_in=4, dtype=torch.float32):
    return torch.rand(16, n_in, generator=torch.Generator().manual_seed(0)).to(dtype)


def test_to_float64_converts_everything_floating():
    net = grown_net()
    x = x_batch()
    with torch.no_grad():
        out32 = net(x)
    net64 = net.to(torch.float64)
    assert net64 is net
    for name, p in net.named_parameters():
        assert p.dtype == torch.float64, name
    for name, b in net.named_buffers():
        expected = {"in_index": torch.long, "out_index": torch.long, "provisional": torch.bool,
                    "grown": torch.bool, "mask": torch.float64}[name.rsplit(".", 1)[1]]
        assert b.dtype == expected, name
    with torch.no_grad():
        out64 = net(x.double())
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out32, **TOL)
    net.float()
    with torch.no_grad():
        torch.testing.assert_close(net(x), out32, rtol=0, atol=0)


OPS_64 = {
    "insert_identity": lambda net: ops.insert_identity_layer(net, "h1_to_output"),
    "insert_identity_signed": lambda net: ops.insert_identity_layer(net, "input_to_h1", signed=True),
    "split": lambda net: ops.split_edges(net, [("h1_to_output", 1, 0)], eps=0.0),
    "split_signed": lambda net: ops.split_edges(net, [("input_to_h1", 2, 1)], eps=0.0, signed=True),
    "add_units": lambda net: ops.add_units(
        net, "h1", 2, incoming={"input_to_h1": torch.ones(2, 4)},
        outgoing={"h1_to_output": torch.zeros(3, 2)}),
    "prune_compact": lambda net: (ops.prune_edges(net, [("h1_to_output", 1, 4), ("h1_to_output", 0, 4)]),
                                  ops.prune_edges(net, [("h1_to_output", 2, 4)]), ops.compact(net)),
    "remove_units": lambda net: ops.remove_units(net, "h1", [4]),
}


@pytest.mark.parametrize("op", list(OPS_64))
def test_ops_on_a_float64_net_keep_float64(op):
    net = GrowableNet.mlp([4, 5, 3], seed=0).to(torch.float64)
    with torch.no_grad():  # unit 4 of h1 is read by no live edge after "prune_compact"
        net.connections["h1_to_output"].weight[:, 4] = 0.0
    x = x_batch(dtype=torch.float64)
    with torch.no_grad():
        before = net(x)
    OPS_64[op](net)
    assert {p.dtype for p in net.parameters()} == {torch.float64}
    assert {b.dtype for n, b in net.named_buffers() if n.endswith("mask")} <= {torch.float64}
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, rtol=1e-12, atol=1e-12)
    net(x).sum().backward()  # and it still trains


def test_state_dict_round_trip_into_a_rebuilt_graph():
    net = grown_net()
    state = net.state_dict()
    names = set(state)
    assert "connections.input_to_h1.mask" in names
    assert "connections.h1_to_h2.in_index" in names
    assert "connections.h1_to_h2.provisional" in names
    assert "layers.h1.modulator.gate" in names
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)
    spec = json.loads(json.dumps(net.spec()))
    rebuilt = GrowableNet.from_spec(spec)
    assert set(rebuilt.state_dict()) == names
    rebuilt.load_state_dict(loaded)
    for key, value in net.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
    x = x_batch()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), net(x), rtol=0, atol=0)
    assert rebuilt.spec() == net.spec()
    assert rebuilt.counts() == net.counts()


def test_no_grad_and_gradients():
    net = grown_net()
    x = x_batch()
    with torch.no_grad():
        out = net(x)
    assert not out.requires_grad and out.grad_fn is None
    net.zero_grad()
    net(x).pow(2).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
    grad = net.connections["input_to_h1"].weight.grad
    assert float(grad[0, 0]) == 0.0 and float(grad[1, 0]) == 0.0  # masked entries get no gradient
    assert bool((grad[2:] != 0).any())
    assert net.layers["h1"].modulator.gate.grad.abs().sum() > 0


def test_deepcopy_train_eval_and_modules():
    net = grown_net()
    twin = copy.deepcopy(net)
    x = x_batch()
    with torch.no_grad():
        torch.testing.assert_close(twin(x), net(x), rtol=0, atol=0)
        next(twin.parameters()).add_(1.0)
        assert not torch.equal(twin(x), net(x))
    net.eval()
    assert all(not m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_forward_flattens_image_like_inputs():
    net = GrowableNet.mlp([4, 3, 2], seed=0)
    x = torch.rand(5, 2, 2)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(x.flatten(1)), rtol=0, atol=0)


BAD_SPECS = {
    "format": (lambda s: s.update(format="other/9"), "format"),
    "missing order": (lambda s: s.pop("order"), "malformed"),
    "unknown activation": (lambda s: s["layers"]["h1"].update(activation="swishy"), "'swishy'"),
    "unknown modulator": (lambda s: s["layers"]["h1"].update(modulator={"type": "nope"}), "'nope'"),
    "connection to unknown layer": (lambda s: s["connections"]["h1_to_output"].update(source="h9"),
                                    "'h9'"),
    "unknown front": (lambda s: s.update(front={"type": "nope"}), "front type"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_raises_config_error(case):
    spec = copy.deepcopy(GrowableNet.mlp([3, 4, 2], seed=0).spec())
    mutate, fragment = BAD_SPECS[case]
    mutate(spec)
    with pytest.raises(ConfigError) as info:
        GrowableNet.from_spec(spec)
    assert fragment in str(info.value)


def test_unregistered_activation_cannot_be_specified():
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    net.layers["h1"].activation = nn.Hardswish()
    with pytest.raises(ConfigError, match="register_activation"):
        net.spec()


@pytest.mark.parametrize("sizes, name", [((True, 3), "input_size"), ((3, False), "output_size"),
                                         ((0, 3), "input_size"), ((3, 2.0), "output_size")])
def test_sizes_must_be_positive_integers_not_bools(sizes, name):
    with pytest.raises(ConfigError, match=f"{name} must be a positive integer, got {name}="):
        GrowableNet(*sizes)


@pytest.mark.parametrize("widths", [[4, True, 2], [True, 2], [4], (4, 0, 2), 4])
def test_mlp_widths_must_be_two_or_more_positive_integers(widths):
    with pytest.raises(ConfigError, match="widths must be a list of at least 2 positive integers, got widths="):
        GrowableNet.mlp(widths)


def test_mlp_takes_any_sequence_of_widths():
    assert GrowableNet.mlp((4, 3, 2), seed=0).widths() == GrowableNet.mlp(iter([4, 3, 2]), seed=0).widths() == [4, 3, 2]

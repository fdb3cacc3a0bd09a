"""The fixed conv fronts (``graph/fronts.py``): shapes, flat inputs, spec round trip, counts, errors,
seeded re-draws, and ``reinitialize`` of a net behind a front."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from selfexpand.errors import ConfigError
from selfexpand.graph import ConvFront, GrowableNet, front_for
from selfexpand.graph.init import reinitialize
from selfexpand.graph.spec import FRONTS

# name, in_shape, out_features, front params (conv weights without bias + batch norm scale and shift)
SHAPES = [
    ("conv", [3, 32, 32], 64 * 8 * 8, 3 * 32 * 9 + 32 * 32 * 9 + 32 * 64 * 9 + 64 * 64 * 9 + 2 * (32 + 32 + 64 + 64)),
    ("conv", [1, 28, 28], 64 * 7 * 7, 1 * 32 * 9 + 32 * 32 * 9 + 32 * 64 * 9 + 64 * 64 * 9 + 2 * (32 + 32 + 64 + 64)),
    ("conv-small", [3, 32, 32], 32 * 4 * 4, 3 * 16 * 9 + 16 * 32 * 9 + 2 * (16 + 32)),
    ("conv-small", [1, 28, 28], 32 * 3 * 3, 1 * 16 * 9 + 16 * 32 * 9 + 2 * (16 + 32)),
    ("conv-small", [1, 8, 8], 32, 1 * 16 * 9 + 16 * 32 * 9 + 2 * (16 + 32)),
]


def _net(name: str, in_shape, hidden=(8,), seed: int = 0) -> GrowableNet:
    torch.manual_seed(seed)
    front = FRONTS[name](in_shape=in_shape)
    spec = {"type": name, "in_shape": list(in_shape)}
    return GrowableNet.mlp([front.out_features, *hidden, 10], seed=seed, front=front, front_spec=spec)


def _train_step(net: GrowableNet, x: torch.Tensor) -> None:
    """One SGD step in train mode, so that weights and batch-norm statistics leave their initial values."""
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net(x).square().mean().backward()
    optimizer.step()
    net.eval()


def test_both_fronts_are_registered_on_import():
    assert {"conv", "conv-small"} <= set(FRONTS)


@pytest.mark.parametrize("name, in_shape, features, params", SHAPES)
def test_output_features_and_params(name, in_shape, features, params):
    front = FRONTS[name](in_shape=in_shape)
    assert front.out_features == features
    assert sum(p.numel() for p in front.parameters()) == params
    front.eval()
    with torch.no_grad():
        assert front(torch.randn(2, *in_shape)).shape == (2, features)


@pytest.mark.parametrize("name", ["conv", "conv-small"])
def test_flat_and_channelless_inputs_are_reshaped(name):
    front = FRONTS[name](in_shape=[1, 28, 28]).eval()
    images = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        expected = front(images)
        assert torch.equal(front(images.flatten(1)), expected)
        assert torch.equal(front(images[:, 0]), expected)  # (N, H, W) when C == 1


def test_wrong_input_shape_is_an_error_naming_both_shapes():
    front = FRONTS["conv-small"](in_shape=[3, 32, 32])
    with pytest.raises(ConfigError, match=r"in_shape \[3, 32, 32\].*got shape \(2, 100\)"):
        front(torch.randn(2, 100))


@pytest.mark.parametrize("name, in_shape, features, params", SHAPES[::2])
def test_spec_round_trip_gives_identical_outputs(name, in_shape, features, params):
    net = _net(name, in_shape)
    x = torch.randn(6, *in_shape)
    _train_step(net, x)
    assert net.front.body[1].num_batches_tracked.item() == 1
    spec = net.spec()
    assert spec["front"] == {"type": name, "in_shape": in_shape}
    rebuilt = GrowableNet.from_spec(spec, net.state_dict()).eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))
        assert torch.equal(rebuilt(x.flatten(1)), net(x))


def test_export_keeps_the_front():
    net = _net("conv-small", [3, 32, 32])
    x = torch.randn(4, 3, 32, 32)
    _train_step(net, x)
    exported = net.export().eval()
    with torch.no_grad():
        torch.testing.assert_close(exported(x), net(x))


@pytest.mark.parametrize("name", ["conv", "conv-small"])
def test_front_params_are_counted_apart(name):
    net = _net(name, [3, 32, 32])
    plain = GrowableNet.mlp([net.front.out_features, 8, 10], seed=0)
    counts = net.counts()
    assert counts["front_params"] == sum(p.numel() for p in net.front.parameters()) > 0
    for key in ("params", "weights_active", "stored_params", "control_params"):
        assert counts[key] == plain.counts()[key], key
    assert plain.counts()["front_params"] == 0


BAD_IN_SHAPES = [
    ("conv", [3, 32], "three positive integers"),
    ("conv", [3, 32, 32, 1], "three positive integers"),
    ("conv", [0, 32, 32], "three positive integers"),
    ("conv", [3, 32.0, 32], "three positive integers"),
    ("conv", [True, 32, 32], "three positive integers"),
    ("conv", "3x32x32", "three positive integers"),
    ("conv", [3, 2, 32], "at least 4"),
    ("conv-small", [1, 4, 4], "at least 8"),
]


@pytest.mark.parametrize("name, in_shape, rule", BAD_IN_SHAPES)
def test_bad_in_shape_states_the_rule_and_echoes_it(name, in_shape, rule):
    with pytest.raises(ConfigError, match=rule) as info:
        FRONTS[name](in_shape=in_shape)
    message = str(info.value)
    assert f"front {name!r}" in message
    assert f"in_shape={in_shape!r}" in message or f"in_shape={list(in_shape)}" in message


# input_shape, raw_shape -> in_shape
DERIVED = [
    ((3, 32, 32), None, [3, 32, 32]),
    ((784,), (28, 28), [1, 28, 28]),
    ((64,), [8, 8], [1, 8, 8]),
]


@pytest.mark.parametrize("input_shape, raw_shape, in_shape", DERIVED)
def test_front_for_derives_in_shape(input_shape, raw_shape, in_shape):
    front, spec = front_for("conv-small", input_shape, raw_shape)
    assert spec == {"type": "conv-small", "in_shape": in_shape}
    assert isinstance(front, ConvFront) and list(front.in_shape) == in_shape


@pytest.mark.parametrize("input_shape, raw_shape", [((64,), None), ((4,), None), ((784,), (27, 28)),
                                                     ((2, 784), None)])
def test_front_for_refuses_inputs_that_are_not_images(input_shape, raw_shape):
    with pytest.raises(ConfigError, match="front 'conv' needs image inputs") as info:
        front_for("conv", input_shape, raw_shape)
    assert f"input_shape={list(input_shape)}" in str(info.value)


def test_front_for_refuses_an_unknown_name():
    with pytest.raises(ConfigError, match=r"front must be one of .*got front='resnet'"):
        front_for("resnet", (3, 32, 32))


def _values(module: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in (*module.parameters(), *module.buffers())]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_construction_follows_the_global_seed():
    torch.manual_seed(5)
    first = _values(FRONTS["conv"](in_shape=[3, 32, 32]))
    torch.manual_seed(5)
    assert _same(_values(FRONTS["conv"](in_shape=[3, 32, 32])), first)


def test_reset_from_a_generator_is_deterministic_and_clears_running_stats():
    front = FRONTS["conv-small"](in_shape=[3, 32, 32])
    _train_step(GrowableNet.mlp([front.out_features, 10], front=front), torch.randn(4, 3, 32, 32))
    bn = front.body[1]
    assert bn.running_mean.abs().sum() > 0 and bn.num_batches_tracked.item() == 1
    front.reset_parameters(torch.Generator().manual_seed(1))
    first = _values(front)
    assert bn.running_mean.abs().sum() == 0 and bn.num_batches_tracked.item() == 0
    assert torch.equal(bn.weight, torch.ones_like(bn.weight))
    front.reset_parameters(torch.Generator().manual_seed(1))
    assert _same(_values(front), first)
    front.reset_parameters(torch.Generator().manual_seed(2))
    assert not torch.equal(front.body[0].weight, first[0])


def test_front_for_with_a_generator_draws_from_it():
    a, _ = front_for("conv", (3, 32, 32), generator=torch.Generator().manual_seed(3))
    torch.manual_seed(123)  # the global generator plays no part
    b, _ = front_for("conv", (3, 32, 32), generator=torch.Generator().manual_seed(3))
    assert _same(_values(a), _values(b))


def test_reinitialize_redraws_the_front_from_the_seed():
    net = _net("conv-small", [3, 32, 32])
    x = torch.randn(4, 3, 32, 32)
    _train_step(net, x)
    trained = _values(net.front)
    reinitialize(net, 7)
    drawn = _values(net.front)
    assert not torch.equal(drawn[0], trained[0])
    assert net.front.body[1].running_mean.abs().sum() == 0
    _train_step(net, x)
    reinitialize(net, 7)
    assert _same(_values(net.front), drawn)


def test_reinitialize_redraws_any_front_without_touching_the_global_generator():
    front = nn.Sequential(nn.Linear(12, 6), nn.BatchNorm1d(6))
    net = GrowableNet.mlp([6, 4, 3], seed=0, front=front)
    _train_step(net, torch.randn(8, 12))
    state = torch.get_rng_state()
    reinitialize(net, 3)
    assert torch.equal(torch.get_rng_state(), state)
    drawn = _values(front)
    assert front[1].running_mean.abs().sum() == 0
    _train_step(net, torch.randn(8, 12))
    reinitialize(net, 3)
    assert _same(_values(front), drawn)


def test_reinitialize_clears_growth_marks():
    net = _net("conv-small", [1, 8, 8])
    layer = net.layers["h1"]
    layer.grown = torch.ones(layer.size, dtype=torch.bool)
    reinitialize(net, 0)
    assert layer.grown is None


def test_front_for_draws_a_registered_plain_module_from_the_generator():
    from selfexpand.graph import register_front

    class Flat(nn.Module):
        def __init__(self, in_shape):
            super().__init__()
            self.linear = nn.Linear(in_shape[0] * in_shape[1] * in_shape[2], 5)
            self.out_features = 5

        def forward(self, x):
            return self.linear(x.flatten(1))

    register_front("test-fronts-flat", Flat)
    try:
        a, spec = front_for("test-fronts-flat", (64,), (8, 8), generator=torch.Generator().manual_seed(4))
        b, _ = front_for("test-fronts-flat", (64,), (8, 8), generator=torch.Generator().manual_seed(4))
        assert spec == {"type": "test-fronts-flat", "in_shape": [1, 8, 8]}
        assert _same(_values(a), _values(b))
    finally:
        del FRONTS["test-fronts-flat"]

"""``RandomUnitsInitializer`` / ``ZeroUnitsInitializer`` (SVoD + random / zero) and
``NonNegativeBiases``: values as specified, zero outgoing weights preserve the function."""

from __future__ import annotations

import math

import pytest
import torch

from edgekit import make_ctx, toy_dataset
from selfexpand.graph import GrowableNet
from selfexpand.strategies.base import Site
from selfexpand.strategies.initializers.new_units import RandomUnitsInitializer, ZeroUnitsInitializer
from selfexpand.strategies.helpers.start_values import NonNegativeBiases


def world(seed=0):
    net = GrowableNet.mlp([6, 5, 4, 3], seed=seed)
    return net, make_ctx(net, toy_dataset(n=32, d=6, k=3, seed=seed), seed=seed)


@pytest.mark.parametrize("seed", range(5))
def test_zero_outgoing_preserves_the_function_and_grows_last_layer_first(seed):
    net, ctx = world(seed)
    x = torch.randn(20, 6)
    before = net(x)
    events = ZeroUnitsInitializer().grow(ctx, [Site("h1", 3), Site("h2", 2), Site("h1", 0)])
    assert [(e.kind, e.site) for e in events] == [("add_units", "h2"), ("add_units", "h1")]
    assert net.widths() == [6, 8, 6, 3]
    assert torch.allclose(net(x), before, atol=1e-6, rtol=0)
    # the new h1 units feed h2's new units with zero weights too (both grew)
    assert net.connections["h1_to_h2"].weight[:, 5:].abs().sum() == 0


def test_random_units_draw_kaiming_bounds_in_and_out():
    net, ctx = world(0)
    RandomUnitsInitializer().grow(ctx, [Site("h1", 400)])
    w_in = net.connections["input_to_h1"].weight.detach()[5:]
    bias = net.layers["h1"].bias.detach()[5:]
    w_out = net.connections["h1_to_h2"].weight.detach()[:, 5:]
    for values, fan_in in ((w_in, 6), (bias, 6), (w_out, 405)):
        bound = 1 / math.sqrt(fan_in)
        assert float(values.abs().max()) <= bound
        assert float(values.abs().max()) > 0.9 * bound  # uniform over the whole range
    assert float(w_out.abs().min()) >= 0 and float(w_out.abs().sum()) > 0


def test_random_units_depend_on_the_seed_only():
    draws = []
    for seed in (1, 1, 2):
        net = GrowableNet.mlp([6, 5, 4, 3], seed=0)
        ctx = make_ctx(net, toy_dataset(n=32, d=6, k=3, seed=0), seed=seed)
        RandomUnitsInitializer().grow(ctx, [Site("h2", 3)])
        draws.append(net.state_dict())
    assert all(torch.equal(draws[0][k], draws[1][k]) for k in draws[0])
    assert not all(torch.equal(draws[0][k], draws[2][k]) for k in draws[0])


def test_nonnegative_biases_at_the_start_only():
    net, ctx = world(3)
    assert any(bool((layer.bias < 0).any()) for layer in net.layers.values() if layer.bias is not None)
    ctx.epoch = 2  # a resumed run: left alone
    NonNegativeBiases().on_train_begin(ctx)
    assert any(bool((layer.bias < 0).any()) for layer in net.layers.values() if layer.bias is not None)
    before = {name: layer.bias.detach().clone() for name, layer in net.layers.items() if layer.bias is not None}
    ctx.epoch = 0
    NonNegativeBiases().on_train_begin(ctx)
    for name, value in before.items():
        assert torch.equal(net.layers[name].bias.detach(), value.abs())

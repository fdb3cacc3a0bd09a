"""Net2Net (``ops.split_units``, ``Net2NetWiderInitializer``, ``Net2NetDeeperInitializer``): the
function is preserved within 1e-5 on random graphs, the copies differ by the noise, the split
outgoing weights sum to the source's, and bad requests leave the graph unchanged."""

from __future__ import annotations

import pytest
import torch

from edgekit import make_ctx, toy_dataset
from selfexpand.errors import ConfigError, GrowthError
from selfexpand.graph import GrowableNet
from selfexpand.graph.modulators import GateModulator
from selfexpand.ops import add_units
from selfexpand.ops.split_units import split_units
from selfexpand.strategies.base import Site
from selfexpand.strategies.initializers.net2net import Net2NetDeeperInitializer, Net2NetWiderInitializer


def world(seed: int, widths=(6, 5, 4, 3), signed=True):
    net = GrowableNet.mlp(list(widths), seed=seed)
    return net, make_ctx(net, toy_dataset(n=32, d=widths[0], k=widths[-1], seed=seed, signed=signed), seed=seed)


@pytest.mark.parametrize("seed", range(20))
def test_wider_preserves_the_function(seed):
    net, ctx = world(seed)
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(seed))
    before = net(x)
    n1, n2 = 1 + seed % 4, 1 + (seed * 7) % 5
    events = Net2NetWiderInitializer(noise=0.05).grow(ctx, [Site("h1", n1), Site("h2", n2)])
    assert [(e.kind, e.site) for e in events] == [("split_units", "h2"), ("split_units", "h1")]
    assert net.widths() == [6, 5 + n1, 4 + n2, 3]
    assert torch.allclose(net(x), before, atol=1e-5, rtol=0)


def test_split_units_copies_and_splits_with_antisymmetric_noise():
    net = GrowableNet.mlp([4, 3, 2], seed=1)
    w_in = net.connections["input_to_h1"].weight.detach().clone()
    b = net.layers["h1"].bias.detach().clone()
    w_out = net.connections["h1_to_output"].weight.detach().clone()
    split_units(net, "h1", [2, 0, 2], noise=0.1, generator=torch.Generator().manual_seed(0))
    new_in = net.connections["input_to_h1"].weight.detach()
    new_out = net.connections["h1_to_output"].weight.detach()
    assert torch.equal(new_in[3:], w_in[[2, 0, 2]]) and torch.equal(net.layers["h1"].bias.detach()[3:], b[[2, 0, 2]])
    # unit 2 copied twice: three parts summing to its old column; unit 0 once: two parts; unit 1 untouched
    assert torch.allclose(new_out[:, 2] + new_out[:, 3] + new_out[:, 5], w_out[:, 2], atol=1e-6)
    assert torch.allclose(new_out[:, 0] + new_out[:, 4], w_out[:, 0], atol=1e-6)
    assert torch.equal(new_out[:, 1], w_out[:, 1])
    assert not torch.allclose(new_out[:, 3], new_out[:, 5])  # the noise makes the copies differ
    assert torch.allclose(new_out[:, 4], w_out[:, 0] / 2, atol=0.5) and not torch.equal(new_out[:, 4], w_out[:, 0] / 2)
    assert net.layers["h1"].grown.tolist() == [False] * 3 + [True] * 3


def test_split_units_without_noise_halves_exactly():
    net = GrowableNet.mlp([4, 3, 2], seed=2)
    w_out = net.connections["h1_to_output"].weight.detach().clone()
    split_units(net, "h1", [1])
    new_out = net.connections["h1_to_output"].weight.detach()
    assert torch.equal(new_out[:, 1], w_out[:, 1] / 2) and torch.equal(new_out[:, 3], w_out[:, 1] / 2)


@pytest.mark.parametrize("kwargs, match, error", [
    ({"sources": []}, "sources", GrowthError), ({"sources": [3]}, "sources", GrowthError),
    ({"sources": [-1]}, "sources", GrowthError), ({"sources": [0], "noise": -1.0}, "noise=-1.0", ConfigError),
    ({"layer": "output", "sources": [0]}, "hidden layer", GrowthError),
])
def test_split_units_refuses_cleanly(kwargs, match, error):
    net = GrowableNet.mlp([4, 3, 2], seed=0)
    spec, state = net.spec(), {k: v.clone() for k, v in net.state_dict().items()}
    kwargs = {"layer": "h1", **kwargs}
    with pytest.raises(error, match=match):
        split_units(net, kwargs.pop("layer"), kwargs.pop("sources"), **kwargs)
    assert net.spec() == spec and all(torch.equal(net.state_dict()[k], v) for k, v in state.items())


def test_split_units_refuses_a_modulated_layer():
    net = GrowableNet.mlp([4, 3, 2], seed=0)
    net.layers["h1"].modulator = GateModulator(3)
    with pytest.raises(GrowthError, match="modulator"):
        split_units(net, "h1", [0])


def test_split_units_carries_the_optimizer_state():
    net, ctx = world(3)
    torch.nn.functional.cross_entropy(net(ctx.data.x_train), ctx.data.y_train).backward()
    ctx.optimizer.step()
    w_in, w_out = net.connections["input_to_h1"].weight, net.connections["h1_to_h2"].weight
    before_in = {k: v.clone() for k, v in ctx.optimizer.state[w_in].items()}
    before_out = {k: v.clone() for k, v in ctx.optimizer.state[w_out].items()}
    split_units(net, "h1", [2], optimizer=ctx.optimizer)
    state_in = ctx.optimizer.state[net.connections["input_to_h1"].weight]
    state_out = ctx.optimizer.state[net.connections["h1_to_h2"].weight]
    # the copy's incoming row is the source's row, state included; old entries keep theirs
    assert torch.equal(state_in["exp_avg"][5], before_in["exp_avg"][2])
    assert torch.equal(state_in["exp_avg"][:5], before_in["exp_avg"])
    # its outgoing column is a new entry: first moment 0, second moment the mean of the old ones
    assert torch.equal(state_out["exp_avg"][:, 5], torch.zeros(4))
    assert torch.allclose(state_out["exp_avg_sq"][:, 5], before_out["exp_avg_sq"].mean().expand(4))
    assert torch.equal(state_out["exp_avg"][:, :5], before_out["exp_avg"])


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("signed_data", [True, False])
def test_deeper_preserves_the_function(seed, signed_data):
    net, ctx = world(seed, widths=(6, 5, 3), signed=signed_data)
    x = ctx.data.x_train
    before = net(x)
    events = Net2NetDeeperInitializer().grow(ctx, [Site("h1"), Site("input")])
    assert [e.kind for e in events] == ["insert_layer", "insert_layer"]
    assert len(net.hidden_layers()) == 3
    assert torch.allclose(net(x), before, atol=1e-5, rtol=0)


def test_deeper_needs_a_single_outgoing_connection():
    net, ctx = world(0)
    add_units(net, "h1", 1, incoming={"input_to_h1": torch.zeros(1, 6)}, outgoing={"h1_to_h2": torch.zeros(4, 1)})
    net.add_connection("h1", "output", torch.zeros(3, 6))
    with pytest.raises(GrowthError, match="exactly one connection"):
        Net2NetDeeperInitializer().grow(ctx, [Site("h1")])


@pytest.mark.parametrize("cls, kwargs, match", [
    (Net2NetWiderInitializer, {"noise": -0.1}, "noise"), (Net2NetDeeperInitializer, {"signed": "yes"}, "signed"),
])
def test_bad_settings(cls, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        cls(**kwargs)

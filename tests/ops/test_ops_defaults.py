"""The ops called as a user would call them, with no initial values (``selfexpand.ops`` docstring):
``add_units`` (Kaiming-uniform incoming, zero bias, zero outgoing), ``insert_layer`` (identity: signed for
ReLU, plain for identity-valued activations), ``split_units`` and ``split_edges`` keep the function on
random graphs, the defaults have the documented values, and the optimizer state is carried."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from graphkit import TOL, draw_case, live_edges, nonneg, outputs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfexpand import ops
from selfexpand.errors import ConfigError, GrowthError
from selfexpand.graph import GrowableNet

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _adam(net, x):
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(2):
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()
    return opt


def _held(opt) -> set[int]:
    return {id(p) for g in opt.param_groups for p in g["params"]}


def _default_add_units(case, data, opt):
    hidden = case.net.hidden_layers()
    if hidden:
        layer = data.draw(st.sampled_from(hidden), label="add_units layer")
        ops.add_units(case.net, layer, data.draw(st.integers(1, 4), label="n"), optimizer=opt, generator=case.gen)


def _default_insert_layer(case, data, opt):
    conn = data.draw(st.sampled_from(sorted(case.net.connections)), label="insert_layer connection")
    activation = data.draw(st.sampled_from(["relu", "identity", "rational"]), label="activation")
    ops.insert_layer(case.net, conn, activation=activation, optimizer=opt)


def _default_split_units(case, data, opt):
    plain = [n for n in case.net.hidden_layers() if case.net.layers[n].modulator is None]
    if plain:
        layer = data.draw(st.sampled_from(plain), label="split_units layer")
        ops.split_units(case.net, layer, [0, case.net.layers[layer].size - 1], optimizer=opt)


def _default_split_edges(case, data, opt):
    net = case.net
    edges = [e for e in live_edges(net, net.connection_names(target=net.output_name))
             if nonneg(case, net.connections[e[0]].source)]  # the unsigned default is exact there
    if edges:
        ops.split_edges(net, edges[:3], optimizer=opt, generator=case.gen)


DEFAULT_OPS = {"add_units": _default_add_units, "insert_layer": _default_insert_layer,
               "split_units": _default_split_units, "split_edges": _default_split_edges}


@SETTINGS
@given(data=st.data())
def test_defaults_keep_the_function_on_random_graphs(data):
    case = draw_case(data)
    net = case.net
    opt = _adam(net, case.x)
    kinds = data.draw(st.lists(st.sampled_from(sorted(DEFAULT_OPS)), min_size=2, max_size=5), label="ops")
    for kind in kinds:
        before = outputs(net, case.x)
        DEFAULT_OPS[kind](case, data, opt)
        torch.testing.assert_close(outputs(net, case.x), before, **TOL,
                                   msg=lambda m, kind=kind: f"{m}\n{kind} {case.log}")
        assert _held(opt) == {id(p) for p in net.parameters()}
        opt.zero_grad()
        net(case.x).pow(2).mean().backward()
        opt.step()  # the optimizer runs on with the grown net (the function may then change)


def test_add_units_defaults_are_kaiming_uniform_zero_and_zero():
    net = GrowableNet.mlp([4, 5, 3], seed=0)
    ops.split_edges(net, [("input_to_h1", 0, 1), ("input_to_h1", 2, 3)], eps=0.0)  # h1 reads input and h2
    fan_in = sum(c.shape[1] for c in net.incoming("h1"))
    assert fan_in == 4 + 2 and len(net.incoming("h1")) == 2
    n = 400
    ops.add_units(net, "h1", n, generator=torch.Generator().manual_seed(0))
    bound = 1 / math.sqrt(fan_in)
    rows = torch.cat([c.weight.detach()[-n:] for c in net.incoming("h1")], 1)
    assert rows.abs().max() <= bound
    assert rows.abs().max() > 0.99 * bound and abs(float(rows.mean())) < 0.05 * bound
    assert abs(float(rows.std()) - bound / math.sqrt(3)) < 0.05 * bound  # uniform, not normal or constant
    assert torch.equal(net.layers["h1"].bias.detach()[-n:], torch.zeros(n))
    assert torch.equal(net.connections["h1_to_output"].weight.detach()[:, -n:], torch.zeros(3, n))
    assert bool(net.layers["h1"].grown[-n:].all())


def test_add_units_default_draws_replay_with_a_generator():
    def grow(seed):
        net = GrowableNet.mlp([3, 4, 2], seed=0)
        ops.add_units(net, "h1", 3, generator=torch.Generator().manual_seed(seed))
        return net.connections["input_to_h1"].weight.detach()[-3:]
    assert torch.equal(grow(1), grow(1)) and not torch.equal(grow(1), grow(2))


def test_add_units_default_carries_the_optimizer_state():
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    x = torch.rand(16, 3, generator=torch.Generator().manual_seed(0))
    opt = _adam(net, x)
    old_w = net.connections["input_to_h1"].weight
    old = {k: v.clone() for k, v in opt.state[old_w].items()}
    ops.add_units(net, "h1", 2, optimizer=opt)
    new_w = net.connections["input_to_h1"].weight
    state = opt.state[new_w]
    assert new_w is not old_w and id(new_w) in _held(opt) and id(old_w) not in _held(opt)
    assert torch.equal(state["exp_avg"][:4], old["exp_avg"]) and torch.equal(state["exp_avg_sq"][:4], old["exp_avg_sq"])
    assert torch.equal(state["exp_avg"][4:], torch.zeros(2, 3))
    torch.testing.assert_close(state["exp_avg_sq"][4:], old["exp_avg_sq"].mean().expand(2, 3))
    assert torch.equal(state["step"], old["step"])


@pytest.mark.parametrize("activation, size", [("relu", 6), ("identity", 3), ("rational", 3)])
def test_insert_layer_default_is_an_identity_layer(activation, size):
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    x = torch.randn(32, 3, generator=torch.Generator().manual_seed(1))  # signed: ReLU needs the signed form
    before = outputs(net, x)
    event = ops.insert_layer(net, "input_to_h1", activation=activation)
    layer = net.layers[event.details["layer"]]
    assert layer.size == size and torch.equal(layer.bias.detach(), torch.zeros(size))
    torch.testing.assert_close(outputs(net, x), before, **TOL)


def test_insert_layer_default_keeps_the_mask_and_takes_a_matching_size():
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    ops.prune_edges(net, [("input_to_h1", 1, 2)])
    x = torch.randn(8, 3)
    before = outputs(net, x)
    event = ops.insert_layer(net, "input_to_h1", 6)
    out = net.connections[event.details["connections"][1]]
    assert out.mask is not None and int((out.mask == 0).sum()) == 2  # the pruned edge, on both signs
    torch.testing.assert_close(outputs(net, x), before, **TOL)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(activation="tanh"), GrowthError, "no identity default for the activation Tanh"),
    (dict(size=5), ConfigError, "size must be 6 for the identity default"),
    (dict(bias=torch.zeros(6)), ConfigError, "bias given without weight_in and weight_out"),
    (dict(weight_in=torch.eye(3)), ConfigError, "weight_in and weight_out together"),
])
def test_insert_layer_default_refusals_change_nothing(kwargs, error, message):
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    state, spec = copy.deepcopy(net.state_dict()), net.spec()
    with pytest.raises(error, match=message):
        ops.insert_layer(net, "input_to_h1", **kwargs)
    assert net.spec() == spec
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def test_the_guide_call_works_with_no_values():
    """``add_units(net, layer, n, optimizer=opt)`` exactly as written in the issue."""
    net = GrowableNet.mlp([64, 16, 10], seed=0)
    x = torch.rand(8, 64)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    before = outputs(net, x)
    event = ops.add_units(net, "h1", 4, optimizer=opt)
    assert event.units_added == 4 and net.layers["h1"].size == 20
    torch.testing.assert_close(outputs(net, x), before, **TOL)

"""SENN's learnable rational activation (``graph/rational.py``) and everywhere a ``GrowableNet`` goes:
counts, spec round trip, export, safetensors checkpoint, growth ops."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from selfexpand import ops
from selfexpand.checkpoint import load_checkpoint, save_checkpoint
from selfexpand.errors import ConfigError
from selfexpand.graph import ExportedGraph, GrowableNet, make_activation
from selfexpand.graph.activations import activation_name
from selfexpand.graph.init import reinitialize
from selfexpand.graph.rational import NORM_FLOOR, RationalActivation, rational

TOL = dict(rtol=1e-5, atol=1e-5)


def _by_hand(x: float, v: float, c: float, l: float) -> float:  # noqa: E741
    return ((2 * v * x + c) / (1 + x * x) + l * x) / math.sqrt(v * v + c * c + l * l)


def _rational_net(seed=0, widths=(3, 5, 4, 2), coefficients=((0.7, -0.4, 1.3), (-0.2, 0.5, 0.8))):
    """An MLP whose hidden layers use the rational activation at non-identity coefficients."""
    net = GrowableNet.mlp(list(widths), seed=seed)
    for name, values in zip(net.hidden_layers(), coefficients):
        act = make_activation("rational")
        act.set_coefficients(*values)
        net.layers[name].activation = act
    net.invalidate()
    return net


def _x(n_in, seed=0, n=32):
    return torch.randn(n, n_in, generator=torch.Generator().manual_seed(seed)) * 2


# ------------------------------------------------------------------------------ the function
def test_registered_by_name_and_named_back():
    act = make_activation("rational")
    assert isinstance(act, RationalActivation) and activation_name(act) == "rational"
    assert [n for n, _ in act.named_parameters()] == ["coefficients"]
    assert act.coefficients.shape == (3,) and act.coefficients.tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identity_at_init(dtype):
    act = RationalActivation().to(dtype)
    x = torch.randn(1000, 7, generator=torch.Generator().manual_seed(1), dtype=dtype) * 10
    assert (act(x) - x).abs().max() <= 1e-7


@pytest.mark.parametrize("v, c, l", [(0.7, -0.4, 1.3), (2.0, 1.0, 0.0), (0.0, -3.0, 0.5)])
def test_formula_against_a_hand_computation(v, c, l):  # noqa: E741
    act = RationalActivation(v, c, l, dtype=torch.float64)
    xs = [-5.0, -1.0, -1 + 1e-9, -0.3, 0.0, 0.25, 1.0, 1 + 1e-9, 2.0, 40.0, 1e8]
    got = act(torch.tensor(xs, dtype=torch.float64)).tolist()
    assert got == pytest.approx([_by_hand(x, v, c, l) for x in xs], rel=1e-12, abs=1e-12)
    assert (act.v, act.c, act.l) == (v, c, l)


def test_gradcheck_in_coefficients_and_inputs():
    x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 3
    x = x.requires_grad_()  # values on both sides of |x| = 1, where the computation switches to 1 / x
    assert bool((x.abs() > 1).any()) and bool((x.abs() < 1).any())
    coefficients = torch.tensor([0.7, -0.4, 1.3], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rational, (x, coefficients))
    assert torch.autograd.gradgradcheck(rational, (x, coefficients))


def test_module_gradient_reaches_the_coefficients():
    act = RationalActivation(0.3, 0.1, 0.9)
    act(torch.linspace(-3, 3, 50)).pow(2).sum().backward()
    assert act.coefficients.grad is not None and bool(torch.isfinite(act.coefficients.grad).all())
    assert float(act.coefficients.grad.abs().sum()) > 0


@pytest.mark.parametrize("dtype, big", [(torch.float32, 3e38), (torch.float32, 1e30), (torch.float64, 1e300)])
def test_finite_at_large_inputs(dtype, big):
    act = RationalActivation(0.7, -0.4, 0.9).to(dtype)
    x = torch.tensor([-big, -1e10, 1e10, big], dtype=dtype, requires_grad=True)
    y = act(x)
    assert bool(torch.isfinite(y).all())
    # the rational part vanishes: phi(x) -> l x / norm
    expected = x.detach() * (0.9 / math.sqrt(0.7 ** 2 + 0.4 ** 2 + 0.9 ** 2))
    torch.testing.assert_close(y.detach(), expected, rtol=1e-5, atol=0)
    y.sum().backward()
    assert bool(torch.isfinite(x.grad).all()) and bool(torch.isfinite(act.coefficients.grad).all())


def test_finite_as_the_coefficients_approach_zero():
    x = torch.linspace(-4, 4, 41, dtype=torch.float64)
    reference = RationalActivation(0.7, -0.4, 1.3, dtype=torch.float64)(x)
    for scale in (1e-3, 1e-8):  # above the floor, phi only depends on the direction of (v, c, l)
        act = RationalActivation(0.7 * scale, -0.4 * scale, 1.3 * scale, dtype=torch.float64)
        torch.testing.assert_close(act(x), reference, rtol=1e-9, atol=1e-12)
    for scale in (1e-20, 0.0):  # below the floor the norm is clamped at NORM_FLOOR: tends to 0
        act = RationalActivation(0.7 * scale, -0.4 * scale, 1.3 * scale, dtype=torch.float64)
        y = act(x)
        assert bool(torch.isfinite(y).all()) and float(y.detach().abs().max()) <= 10 * scale / NORM_FLOOR + 1e-300
        y.sum().backward()
        assert bool(torch.isfinite(act.coefficients.grad).all())
    for dtype in (torch.float32, torch.float64):
        zero = RationalActivation(0.0, 0.0, 0.0).to(dtype)
        out = zero(x.to(dtype))
        out.sum().backward()
        assert torch.equal(out, torch.zeros_like(out)) and bool(torch.isfinite(zero.coefficients.grad).all())


@pytest.mark.parametrize("bad", [{"v": float("nan")}, {"c": float("inf")}, {"l": "1"}, {"l": True}])
def test_bad_coefficients_raise(bad):
    with pytest.raises(ConfigError, match=f"coefficient {next(iter(bad))} must be a finite number"):
        RationalActivation(**bad)


def test_set_and_reset_keep_the_same_parameter():
    act = RationalActivation()
    param = act.coefficients
    act.set_coefficients(1.0, 2.0, 3.0)
    assert act.coefficients is param and param.tolist() == [1.0, 2.0, 3.0]
    act.reset_parameters()
    assert act.coefficients is param and param.tolist() == [0.0, 0.0, 1.0]


# ------------------------------------------------------------------------ in a GrowableNet
def test_params_count_three_per_rational_layer():
    plain = GrowableNet.mlp([3, 5, 4, 2], seed=0, activation="tanh")
    net = _rational_net()
    a, b = plain.counts(), net.counts()
    assert b["params"] == a["params"] + 6 and b["stored_params"] == a["stored_params"] + 6
    assert b["weights_active"] == a["weights_active"] and b["control_params"] == a["control_params"] == 0
    assert b["params"] == sum(p.numel() for p in net.parameters())  # nothing masked or gated


def test_width_growth_needs_no_change_to_the_activation():
    net = _rational_net()
    act = net.layers["h1"].activation
    x = _x(3)
    with torch.no_grad():
        before = net(x)
    params_before = net.counts()["params"]
    incoming = {"input_to_h1": torch.randn(2, 3)}
    outgoing = {"h1_to_h2": torch.zeros(4, 2)}
    ops.add_units(net, "h1", 2, incoming=incoming, bias=torch.zeros(2), outgoing=outgoing)
    assert net.layers["h1"].activation is act and net.layers["h1"].size == 7
    assert net.counts()["params"] == params_before + 2 * 3 + 2 + 2 * 4
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, **TOL)


def test_spec_and_state_dict_reproduce_the_outputs():
    net = _rational_net()
    spec = json.loads(json.dumps(net.spec()))
    assert spec["layers"]["h1"]["activation"] == "rational"
    assert "layers.h1.activation.coefficients" in net.state_dict()
    rebuilt = GrowableNet.from_spec(spec, net.state_dict())
    assert isinstance(rebuilt.layers["h2"].activation, RationalActivation)
    assert rebuilt.layers["h2"].activation.coefficients.tolist() == pytest.approx([-0.2, 0.5, 0.8])
    x = _x(3)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))
    assert rebuilt.spec() == net.spec() and rebuilt.counts() == net.counts()


def test_float64_conversion_reaches_the_coefficients():
    net = _rational_net().double()
    assert net.layers["h1"].activation.coefficients.dtype == torch.float64
    assert net(_x(3).double()).dtype == torch.float64


def _non_chain(net):
    ops.split_edges(net, [("h2_to_output", 0, 1), ("h2_to_output", 1, 3)], eps=1e-3,
                    activation="rational", generator=torch.Generator().manual_seed(0))
    return net


@pytest.mark.parametrize("build, kind", [(_rational_net, nn.Sequential),
                                         (lambda: _non_chain(_rational_net()), ExportedGraph)])
def test_export_keeps_the_outputs_and_the_coefficients(build, kind):
    net = build()
    exported = net.export()
    assert isinstance(exported, kind)
    # plain forms (traced torch.fx modules), not RationalActivation: the coefficients survive as parameters
    assert not any(isinstance(m, RationalActivation) for m in exported.modules())
    coefficients = [p for n, p in exported.named_parameters() if n.endswith("coefficients")]
    assert len(coefficients) == sum(isinstance(net.layers[n].activation, RationalActivation) for n in net.order[1:])
    assert all(p is not net.layers["h1"].activation.coefficients for p in coefficients)  # copies
    x = _x(3)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), net(x), **TOL)


def _train(net, optimizer, x, y, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(net(x), y).backward()
        optimizer.step()


def test_checkpoint_round_trip_and_resume(tmp_path):
    x, y = _x(3, seed=5), _x(2, seed=6)
    reference = _rational_net()
    _train(reference, torch.optim.Adam(reference.parameters(), lr=1e-2), x, y, 5)
    net = _rational_net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    _train(net, opt, x, y, 2)
    assert net.layers["h1"].activation.coefficients.tolist() != pytest.approx([0.7, -0.4, 1.3])  # it trained
    path = save_checkpoint(tmp_path / "rational.safetensors", net, opt)
    loaded = load_checkpoint(path)
    assert loaded.model.spec() == net.spec()
    for name, value in net.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], value), name
    coefficients = loaded.model.layers["h1"].activation.coefficients
    assert isinstance(coefficients, nn.Parameter) and coefficients in loaded.optimizer.state
    _train(loaded.model, loaded.optimizer, x, y, 3)
    for (name, a), b in zip(loaded.model.named_parameters(), reference.parameters()):
        assert torch.equal(a, b), name


def test_depth_growth_inserts_a_rational_layer_at_identity():
    net = GrowableNet.mlp([3, 5, 2], seed=4)
    x = _x(3)  # signed inputs: the rational identity needs no (relu(x) - relu(-x)) pair
    with torch.no_grad():
        before = net(x)
    values = ops.identity_layer_values(net, "h1_to_output")
    event = ops.insert_layer(net, "h1_to_output", values.pop("size"), activation="rational", **values)
    layer = net.layers[event.details["layer"]]
    assert isinstance(layer.activation, RationalActivation)
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, **TOL)
    assert event.params_after == event.params_before + 5 * 5 + 5 + 3  # weights in + biases + (v, c, l)


def test_insert_layer_hands_the_coefficients_to_the_optimizer():
    net = GrowableNet.mlp([3, 5, 2], seed=4)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    values = ops.identity_layer_values(net, "h1_to_output")
    event = ops.insert_layer(net, "h1_to_output", values.pop("size"), activation="rational",
                             optimizer=opt, **values)
    held = {id(p) for group in opt.param_groups for p in group["params"]}
    assert id(net.layers[event.details["layer"]].activation.coefficients) in held


def test_static_twin_starts_from_the_identity_activation():
    net = _rational_net()
    reinitialize(net, seed=3)
    assert net.layers["h1"].activation.coefficients.tolist() == [0.0, 0.0, 1.0]


def test_compaction_removes_a_dead_rational_layer_and_its_coefficients():
    net = _rational_net(widths=(3, 4, 2), coefficients=((0.7, -0.4, 1.3),))
    ops.prune_edges(net, [("h1_to_output", r, k) for r in range(2) for k in range(4)])
    before = net.counts()["stored_params"]
    ops.compact(net)
    assert "h1" not in net.layers
    assert net.counts()["stored_params"] < before
    assert not any("activation" in name for name, _ in net.named_parameters())

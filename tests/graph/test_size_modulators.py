"""The size weight's smooth step and the controller's mask (ALGORITHMS.md §4): values at known points,
gradients against finite differences, the reference option, counts, export, spec, resize, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from selfexpand.errors import ConfigError
from selfexpand.graph import GrowableNet
from selfexpand.graph.size_modulators import (ControllerMaskModulator, SizeWeightModulator, controller_mask,
                                           smooth_step)
from selfexpand.graph.size_nets import controller_mask_net, size_weight_net
from selfexpand.ops.units import add_units
from selfexpand.train.auxiliary import auxiliary_loss


def _c_for(s: float) -> float:
    """The controller output whose ``s = sin^2(pi c / 2)`` is ``s``."""
    return 2 / math.pi * math.asin(math.sqrt(s))


@pytest.mark.parametrize("dn", [1.0, 0.5, 2.0, 3.0])
def test_smooth_step_at_known_points(dn):
    u = torch.tensor([-0.1, 0.0, dn / 2, dn, dn + 0.1, -5.0, dn + 5.0], dtype=torch.float64)
    theta = smooth_step(u, dn)
    assert theta[0] == 0 and theta[1] == 0 and theta[5] == 0  # exactly 0 below the ramp
    assert theta[2] == pytest.approx(0.5, abs=1e-15)
    assert theta[3] == 1 and theta[4] == 1 and theta[6] == 1  # exactly 1 above it
    inside = torch.tensor([dn / 4, 3 * dn / 4], dtype=torch.float64)
    assert smooth_step(inside, dn).tolist() == pytest.approx([math.sin(math.pi / 8) ** 2, math.sin(3 * math.pi / 8) ** 2])


@pytest.mark.parametrize("n_size, expected", [
    (0.0, [0] * 9),
    (-0.3, [0] * 9),
    (2.5, [1, 1, 0.5] + [0] * 6),
    (5.0, [1] * 5 + [0] * 4),
    (0.5, [0.5] + [0] * 8),
    (9.7, [1] * 9),
])
def test_size_weight_factors(n_size, expected):
    mod = SizeWeightModulator(9, n_start=n_size).double()
    assert mod().tolist() == pytest.approx(expected, abs=1e-12)
    assert mod.live_count() == sum(1 for e in expected if e > 0)


def test_size_weight_ramp_width():
    mod = SizeWeightModulator(4, dn=2.0, n_start=3.0).double()  # theta(3), theta(2), theta(1), theta(0)
    assert mod().tolist() == pytest.approx([1, 1, 0.5, 0], abs=1e-12)


@pytest.mark.parametrize("s, expected", [
    (0.0, [0] * 10),
    (1.0, [1] * 10),
    (0.65, [1] * 6 + [0.5] + [0] * 3),   # s n = 6.5: six full units and the half unit
    (0.03, [0.3] + [0] * 9),             # only the fractional unit
    (0.5, [1] * 5 + [0] * 5),            # s n = 5 exactly: the sixth unit gets 0
])
def test_controller_mask_values(s, expected):
    c = torch.tensor(_c_for(s), dtype=torch.float64)
    assert controller_mask(c, 10).tolist() == pytest.approx(expected, abs=1e-9)
    mod = ControllerMaskModulator(10, c_start=float(c)).double()  # c stored in float32 first
    assert mod().tolist() == pytest.approx(expected, abs=1e-6)
    assert mod.live_count() == sum(1 for e in expected if e > 1e-12)


def test_controller_mask_batched_shape():
    c = torch.tensor([_c_for(0.65), 1.0], dtype=torch.float64)
    mask = controller_mask(c, 10)
    assert mask.shape == (2, 10) and mask[1].tolist() == [1.0] * 10


def test_reference_option_masks_the_layer_with_one_scalar():
    c = _c_for(0.65)
    mod = ControllerMaskModulator(10, c_start=c, reference_defects=True).double()
    assert mod().tolist() == pytest.approx([0.65] * 10)


def _task_loss(net, x, y):
    return F.mse_loss(net(x), y)


def _data(n_in=2, n_out=3, n=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, n_in, generator=gen, dtype=torch.float64),
            torch.randn(n, n_out, generator=gen, dtype=torch.float64))


@pytest.mark.parametrize("n_size, dn", [(2.3, 1.0), (4.71, 1.0), (3.2, 2.0), (0.4, 1.0)])
def test_task_gradient_on_size_weight_matches_finite_difference(n_size, dn):
    net = size_weight_net(2, 3, n_start=n_size, dn=dn, seed=1).double()
    x, y = _data()
    size = net.layers["h1"].modulator.size
    _task_loss(net, x, y).backward()
    analytic = float(size.grad)
    h = 1e-6
    with torch.no_grad():
        size.fill_(n_size + h)
        up = float(_task_loss(net, x, y))
        size.fill_(n_size - h)
        down = float(_task_loss(net, x, y))
    numeric = (up - down) / (2 * h)
    assert analytic != 0
    assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("s", [0.65, 0.33, 0.07, 0.91])
def test_task_gradient_on_controller_matches_finite_difference(s):
    c0 = _c_for(s)
    net = controller_mask_net(2, 3, c_start=c0, seed=2).double()
    x, y = _data(seed=3)
    control = net.layers["h1"].modulator.control
    _task_loss(net, x, y).backward()
    analytic = float(control.grad)
    h = 1e-7
    with torch.no_grad():
        control.fill_(c0 + h)
        up = float(_task_loss(net, x, y))
        control.fill_(c0 - h)
        down = float(_task_loss(net, x, y))
    numeric = (up - down) / (2 * h)
    assert analytic != 0
    assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_reference_option_blocks_the_task_gradient_on_c():
    net = controller_mask_net(2, 3, c_start=_c_for(0.65), reference_defects=True, seed=2).double()
    x, y = _data(seed=3)
    control = net.layers["h1"].modulator.control
    _task_loss(net, x, y).backward()
    assert control.grad is None or float(control.grad) == 0.0
    # the size loss still moves it: d/dc 0.32 (c - 1)^2
    net.zero_grad()
    auxiliary_loss(net).backward()
    assert float(control.grad) == pytest.approx(2 * 0.32 * (control.item() - 1))
    # and the fixed option lets the task reach c
    fixed = controller_mask_net(2, 3, c_start=_c_for(0.65), seed=2).double()
    _task_loss(fixed, x, y).backward()
    assert float(fixed.layers["h1"].modulator.control.grad) != 0.0


def test_size_losses():
    size = SizeWeightModulator(9, n_inf=5.0, size_lambda=0.3, n_start=2.0)
    assert float(size.auxiliary_loss().detach()) == pytest.approx(0.3 * 9)
    ctrl = ControllerMaskModulator(10, size_weight=0.32, c_start=0.5)
    assert float(ctrl.auxiliary_loss().detach()) == pytest.approx(0.32 * 0.25)
    net = size_weight_net(1, 1, size_lambda=0.1, n_inf=5.0, n_start=1.0)
    assert float(auxiliary_loss(net).detach()) == pytest.approx(0.1 * 16)
    assert auxiliary_loss(GrowableNet.mlp([2, 3, 1])) is None


@pytest.mark.parametrize("n_size, live", [(0.0, 0), (2.5, 3), (5.0, 5), (9.0, 9)])
def test_counts_exclude_gated_units(n_size, live):
    net = size_weight_net(3, 2, n_start=n_size)
    counts = net.counts()
    assert counts["params"] == live * (3 + 1 + 2) + 2
    assert counts["control_params"] == 1
    assert counts["stored_params"] == 9 * (3 + 1 + 2) + 2


def test_controller_counts_include_the_fractional_unit():
    net = controller_mask_net(2, 4, c_start=_c_for(0.65))
    assert net.counts()["params"] == 7 * (2 + 1 + 4) + 4
    assert net.counts()["control_params"] == 1


def _export_cases():
    yield size_weight_net(2, 3, n_start=2.5, seed=0)
    yield size_weight_net(2, 3, n_start=4.37, dn=2.0, seed=1)
    yield size_weight_net(2, 3, n_start=0.0, seed=2)
    yield size_weight_net(1, 1, n_start=9.0, seed=3)
    yield controller_mask_net(2, 3, c_start=_c_for(0.65), seed=4)
    yield controller_mask_net(2, 3, c_start=_c_for(0.03), seed=5)
    yield controller_mask_net(2, 3, c_start=1e-5, seed=6)
    yield controller_mask_net(2, 3, c_start=_c_for(0.65), reference_defects=True, seed=7)


@pytest.mark.parametrize("index", range(8))
def test_export_reproduces_outputs_and_drops_masked_units(index):
    net = list(_export_cases())[index]
    x = torch.randn(64, net.layers["input"].size, generator=torch.Generator().manual_seed(index)) * 2
    exported = net.export()
    with torch.no_grad():
        assert torch.allclose(exported(x), net(x), atol=1e-5, rtol=0)
    live = net.layers["h1"].modulator.live_count()
    linears = [m for m in exported.modules() if isinstance(m, torch.nn.Linear)]
    width = linears[0].out_features if linears else exported.meta["widths"]["h1"]  # no unit left: no chain
    assert width == live
    assert sum(p.numel() for p in exported.parameters()) == net.counts()["params"]


def test_export_after_training_steps():
    net = controller_mask_net(2, 3, c_start=0.4, seed=9)
    x, y = (t.float() for t in _data(seed=4))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        (_task_loss(net, x, y) + auxiliary_loss(net)).backward()
        opt.step()
    with torch.no_grad():
        assert torch.allclose(net.export()(x), net(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("make", [
    lambda: size_weight_net(2, 3, n_start=3.4, dn=0.5, n_inf=4.0, size_lambda=0.7, seed=0),
    lambda: controller_mask_net(2, 3, c_start=0.7, size_weight=0.5, reference_defects=True, seed=1),
])
def test_spec_round_trip(make):
    net = make()
    again = GrowableNet.from_spec(net.spec(), net.state_dict())
    x = torch.randn(8, 2)
    with torch.no_grad():
        assert torch.equal(again(x), net(x))
    assert again.layers["h1"].modulator.spec() == net.layers["h1"].modulator.spec()
    assert float(auxiliary_loss(again).detach()) == float(auxiliary_loss(net).detach())


def test_growth_ops_resize_the_modulators():
    for net in (size_weight_net(2, 3, n_start=2.5), controller_mask_net(2, 3, c_start=0.6)):
        before = net.layers["h1"].factor().detach().clone()
        add_units(net, "h1", 2, incoming={"input_to_h1": torch.zeros(2, 2)},
                  outgoing={"h1_to_output": torch.zeros(3, 2)})
        after = net.layers["h1"].factor().detach()
        assert after.shape == (net.layers["h1"].size,) == (before.shape[0] + 2,)
        if isinstance(net.layers["h1"].modulator, SizeWeightModulator):
            assert torch.equal(after[:before.shape[0]], before)  # N unchanged; new units come last


@pytest.mark.parametrize("make, words", [
    (lambda: SizeWeightModulator(3, dn=0.0), "dn must be a number > 0, got dn=0.0"),
    (lambda: SizeWeightModulator(3, dn=-1), "dn must be a number > 0, got dn=-1"),
    (lambda: SizeWeightModulator(3, size_lambda=-0.1), "size_lambda must be a number >= 0"),
    (lambda: SizeWeightModulator(3, n_inf=float("nan")), "n_inf must be a finite number"),
    (lambda: SizeWeightModulator(3, n_start="0"), "n_start must be a finite number"),
    (lambda: ControllerMaskModulator(3, size_weight=-1.0), "size_weight must be a number >= 0"),
    (lambda: ControllerMaskModulator(3, c_start=float("inf")), "c_start must be a finite number"),
    (lambda: ControllerMaskModulator(3, reference_defects="yes"), "reference_defects must be true or false"),
    (lambda: SizeWeightModulator(3, dn=True), "dn must be a number > 0, got dn=True"),
    (lambda: SizeWeightModulator(3, n_start=float("nan")), "n_start must be a finite number, got n_start=nan"),
    (lambda: ControllerMaskModulator(3, reference_defects=1), "reference_defects must be true or false"),
    (lambda: size_weight_net(True, 1), "n_in must be a positive integer, got n_in=True"),
    (lambda: size_weight_net(0, 1), "n_in must be a positive integer"),
    (lambda: controller_mask_net(2, 3, n_max=0), "n_max must be a positive integer"),
])
def test_bad_inputs_state_the_rule_and_value(make, words):
    with pytest.raises(ConfigError, match=words):
        make()

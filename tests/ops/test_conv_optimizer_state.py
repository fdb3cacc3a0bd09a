"""Optimizer state is carried across conv growth as across dense growth (DESIGN.md, issue #24): 4-D kernels,
flatten columns, biases and batch-norm affine parameters keep their old entries' state bit for bit; new
entries start with first moment 0 and second moment = the tensor's mean; the step count stays; Adam's first
step on a new entry has the usual size; masked kernel entries never move; the optimizer tracks exactly the
model's parameters."""

from __future__ import annotations

import pytest
import torch

from optkit import EXPECTED_KEYS, FIRST_MOMENTS, OPTIMIZERS, SECOND_MOMENTS
from selfexpand import ops
from selfexpand.graph import GrowableNet



def adam_update(lr, b1, b2, eps, g, v_old, step):
    """Adam's step on an entry with first moment 0 and second moment ``v_old`` at step ``step``."""
    m = (1 - b1) * g
    v = b2 * v_old + (1 - b2) * g * g
    return lr * (m / (1 - b1**step)) / (torch.sqrt(v / (1 - b2**step)) + eps)


def setup():
    net = GrowableNet.cnn((2, 8, 8), [3, 4], [5], output=3, seed=0)  # h2: 4 channels of 2 x 2 -> h3
    conv = net.connections["h1_to_h2"]
    mask = (torch.rand(conv.shape, generator=torch.Generator().manual_seed(1)) > 0.3).float()
    conv.mask = mask
    with torch.no_grad():
        conv.weight.mul_(mask)
    gen = torch.Generator().manual_seed(0)
    return net, torch.rand(8, 2, 8, 8, generator=gen), torch.randn(8, 3, generator=gen)


def step(net, x, y, optimizer):
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(net(x), y).backward()
    optimizer.step()


def tracked(net, optimizer):
    return {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in net.parameters()}


# the old region of each tensor add_channels(h2, 2) resizes (h2: 4 channels, 4 positions each)
OLD = {
    "connections.h1_to_h2.weight": (slice(0, 4),),
    "layers.h2.bias": (slice(0, 4),),
    "layers.h2.norm.weight": (slice(0, 4),),
    "layers.h2.norm.bias": (slice(0, 4),),
    "connections.h2_to_h3.weight": (slice(None), slice(0, 16)),
}


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_add_channels_carries_state(kind):
    net, x, y = setup()
    optimizer = OPTIMIZERS[kind](net.parameters())
    for _ in range(3):
        step(net, x, y, optimizer)
    before = {n: {k: v.clone() for k, v in optimizer.state[p].items()} for n, p in net.named_parameters()}
    ops.add_channels(net, "h2", 2, optimizer=optimizer, generator=torch.Generator().manual_seed(2))
    assert tracked(net, optimizer)
    for name, p in net.named_parameters():
        state = optimizer.state[p]
        assert set(state) == EXPECTED_KEYS[kind]
        for key, value in state.items():
            if value.dim() == 0:
                assert torch.equal(value, before[name][key])  # the step count stays
                continue
            if name not in OLD:
                assert torch.equal(value, before[name][key])
                continue
            old = before[name][key]
            assert torch.equal(value[OLD[name]], old), (name, key)
            new = torch.ones_like(value, dtype=torch.bool)
            new[OLD[name]] = False
            if key in FIRST_MOMENTS:
                assert value[new].eq(0).all(), (name, key)
            else:
                assert key in SECOND_MOMENTS
                torch.testing.assert_close(value[new], torch.full_like(value[new], float(old.float().mean())),
                                           rtol=0, atol=0)
    masked = net.connections["h1_to_h2"].mask == 0
    assert masked[4:].sum() == 0 and masked.any()  # new kernels are live, the old mask kept
    weights = net.connections["h1_to_h2"].weight
    for _ in range(3):
        step(net, x, y, optimizer)
    assert weights.detach()[masked].eq(0).all()  # masked entries never move, weight decay included
    if "momentum_buffer" in optimizer.state[weights]:
        assert optimizer.state[weights]["momentum_buffer"][masked].eq(0).all()


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_adam_first_step_on_new_flatten_columns(kind):
    net, x, y = setup()
    optimizer = OPTIMIZERS[kind](net.parameters())
    for _ in range(3):
        step(net, x, y, optimizer)
    ops.add_channels(net, "h2", 2, optimizer=optimizer, generator=torch.Generator().manual_seed(2))
    weight = net.connections["h2_to_h3"].weight
    state = optimizer.state[weight]
    t = float(state["step"]) + 1
    v_mean = state["exp_avg_sq"][:, 16:].clone()
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(net(x), y).backward()
    g = weight.grad[:, 16:].clone()
    live = g.abs() > 1e-6
    assert live.sum() > 10, "the new channels' columns must receive a gradient for this test"
    before = weight.detach()[:, 16:].clone()
    assert before.eq(0).all()
    optimizer.step()
    actual = before - weight.detach()[:, 16:]
    group = optimizer.param_groups[0]
    (b1, b2), lr, eps = group["betas"], group["lr"], group["eps"]
    expected = adam_update(lr, b1, b2, eps, g.double(), v_mean.double(), t)
    torch.testing.assert_close(actual.double()[live], expected[live], rtol=1e-5, atol=0)
    reset = adam_update(lr, b1, b2, eps, g.double(), torch.zeros_like(v_mean).double(), t)
    assert bool(((actual.double() - reset).abs() > 1e-3 * reset.abs())[live].all())


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_split_insert_remove_keep_the_optimizer_in_step(kind):
    net, x, y = setup()
    optimizer = OPTIMIZERS[kind](net.parameters())
    step(net, x, y, optimizer)
    norm_state = {k: v.clone() for k, v in optimizer.state[net.layers["h1"].norm.weight].items()}
    ops.split_channels(net, "h1", [0, 2], optimizer=optimizer)
    state = optimizer.state[net.layers["h1"].norm.weight]
    for key, value in state.items():  # a copy's batch-norm state is its source's (as split_units' bias)
        if value.dim():
            assert torch.equal(value, norm_state[key][[0, 1, 2, 0, 2]])
    assert tracked(net, optimizer)
    event = ops.insert_conv_layer(net, "h1_to_h2", batch_norm=True, optimizer=optimizer)
    assert tracked(net, optimizer)
    ops.remove_channels(net, "h2", [1], optimizer=optimizer)
    assert tracked(net, optimizer)
    masked = net.connections[event.details["connections"][1]].mask == 0
    for _ in range(2):
        step(net, x, y, optimizer)
    assert net.connections[event.details["connections"][1]].weight.detach()[masked].eq(0).all()

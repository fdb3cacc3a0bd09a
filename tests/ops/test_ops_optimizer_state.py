"""Optimizer state is carried, not reset (DESIGN.md): old entries keep their state bit for bit, new
entries of a resized tensor start with first moment 0 and second moment = the mean of that tensor's old
second moments, the per-parameter step count stays, and the optimizer tracks exactly the model's
current parameters. Masked entries take no update, weight decay included."""

from __future__ import annotations

import math

import pytest
import torch

from optkit import EXPECTED_KEYS, FIRST_MOMENTS, OPTIMIZERS, SECOND_MOMENTS
from selfexpand import ops
from selfexpand.graph import GateModulator, GrowableNet



def setup(gated=False):
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    if gated:
        net.layers["h1"].modulator = GateModulator(4)
        with torch.no_grad():
            net.layers["h1"].modulator.gate.copy_(torch.tensor([0.1, -0.2, 0.3, 0.05]))
        net.invalidate()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, generator=gen)  # non-negative inputs
    y = torch.randn(16, 2, generator=gen)
    return net, x, y


def loss_backward(net, x, y, optimizer):
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(net(x), y).backward()


def train(net, x, y, optimizer, n):
    for _ in range(n):
        loss_backward(net, x, y, optimizer)
        optimizer.step()


def snapshot(net, optimizer):
    return {name: {k: v.clone() for k, v in optimizer.state[p].items()}
            for name, p in net.named_parameters() if p in optimizer.state}


def assert_tracks_exactly(optimizer, net):
    held = [p for g in optimizer.param_groups for p in g["params"]]
    current = list(net.parameters())
    assert len(held) == len(current)
    assert {id(p) for p in held} == {id(p) for p in current}, "stale or missing parameters"
    assert {id(p) for p in optimizer.state} <= {id(p) for p in current}, "state of a stale parameter"


def check_resized_state(old_state, new_state, old_sel, new_sel):
    """Old entries bit-identical at ``old_sel``; new entries at ``new_sel`` per the rule."""
    assert set(new_state) == set(old_state)
    for key, old in old_state.items():
        new = new_state[key]
        if old.dim() == 0:
            assert torch.equal(new, old), f"{key} (step count) changed"
            continue
        assert torch.equal(new[old_sel], old), f"{key}: old entries changed"
        fresh = new[new_sel]
        if key in FIRST_MOMENTS:
            assert torch.equal(fresh, torch.zeros_like(fresh)), f"{key}: new entries not 0"
        elif key in SECOND_MOMENTS:
            assert torch.equal(fresh, torch.full_like(fresh, float(old.mean()))), \
                f"{key}: new entries are not the mean {float(old.mean())}: {fresh}"
        else:
            pytest.fail(f"unexpected state key {key}")


# where the old entries sit in each resized parameter after adding 2 units to h1 (4 -> 6)
ADD_LAYOUT = {
    "connections.input_to_h1.weight": ((slice(0, 4),), (slice(4, 6),)),
    "layers.h1.bias": ((slice(0, 4),), (slice(4, 6),)),
    "layers.h1.modulator.gate": ((slice(0, 4),), (slice(4, 6),)),
    "connections.h1_to_output.weight": ((slice(None), slice(0, 4)), (slice(None), slice(4, 6))),
}


def add_two_units(net, optimizer):
    return ops.add_units(net, "h1", 2, incoming={"input_to_h1": torch.full((2, 3), 0.5)},
                         bias=torch.full((2,), 0.5), outgoing={"h1_to_output": torch.zeros(2, 2)},
                         optimizer=optimizer)


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_add_units_carries_state(kind):
    net, x, y = setup(gated=True)
    optimizer = OPTIMIZERS[kind](net.parameters())
    train(net, x, y, optimizer, 3)
    old = snapshot(net, optimizer)
    old_params = dict(net.named_parameters())
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    add_two_units(net, optimizer)
    assert_tracks_exactly(optimizer, net)
    assert [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups] == groups
    for name, p in net.named_parameters():
        state = optimizer.state[p]
        assert set(state) == EXPECTED_KEYS[kind]
        if name in ADD_LAYOUT:
            assert p is not old_params[name]
            old_sel, new_sel = ADD_LAYOUT[name]
            check_resized_state(old[name], state, old_sel, new_sel)
        else:  # untouched parameter: same object, same state
            assert p is old_params[name]
            for key, value in old[name].items():
                assert torch.equal(state[key], value)
    train(net, x, y, optimizer, 1)  # the carried state is usable


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_remove_units_keeps_the_state_of_kept_units(kind):
    net, x, y = setup()
    optimizer = OPTIMIZERS[kind](net.parameters())
    train(net, x, y, optimizer, 3)
    old = snapshot(net, optimizer)
    ops.remove_units(net, "h1", [1], optimizer=optimizer)
    assert_tracks_exactly(optimizer, net)
    kept = torch.tensor([0, 2, 3])
    select = {"connections.input_to_h1.weight": lambda t: t[kept], "layers.h1.bias": lambda t: t[kept],
              "connections.h1_to_output.weight": lambda t: t[:, kept], "layers.output.bias": lambda t: t}
    for name, p in net.named_parameters():
        for key, value in old[name].items():
            expected = value if value.dim() == 0 else select[name](value)
            assert torch.equal(optimizer.state[p][key], expected), f"{name}.{key}"


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_split_edges_carries_state(kind):
    """Split masks two edges of ``h1_to_output`` and adds three brand-new tensors: the old tensors
    keep their state (masked entries: first moments 0, second moments kept), the new ones join the
    optimizer with fresh state (their own step count starts at 0)."""
    net, x, y = setup()
    optimizer = OPTIMIZERS[kind](net.parameters())
    train(net, x, y, optimizer, 3)
    old = snapshot(net, optimizer)
    old_params = dict(net.named_parameters())
    event = ops.split_edges(net, [("h1_to_output", 0, 1), ("h1_to_output", 1, 1)], eps=0.0,
                            optimizer=optimizer)
    assert_tracks_exactly(optimizer, net)
    new_names = {f"layers.{event.details['layer']}.bias"} | \
        {f"connections.{c}.weight" for c in event.details["connections"]}
    assert set(dict(net.named_parameters())) == set(old_params) | new_names
    masked = torch.zeros(2, 4, dtype=torch.bool)
    masked[[0, 1], [1, 1]] = True
    for name, p in net.named_parameters():
        if name in new_names:
            assert not optimizer.state.get(p), f"{name} should start with fresh state"
            continue
        assert p is old_params[name]
        for key, value in old[name].items():
            now = optimizer.state[p][key]
            if name == "connections.h1_to_output.weight" and key in FIRST_MOMENTS:
                assert torch.equal(now[~masked], value[~masked])
                assert torch.equal(now[masked], torch.zeros(2))
            else:
                assert torch.equal(now, value), f"{name}.{key}"
    # all parameters, old and new, sit in the one param group that held the old ones
    assert len(optimizer.param_groups) == 1
    train(net, x, y, optimizer, 1)
    if "step" in EXPECTED_KEYS[kind]:
        for name, p in net.named_parameters():
            assert float(optimizer.state[p]["step"]) == (1.0 if name in new_names else 4.0)


def adam_update(lr, b1, b2, eps, g, v_old, step):
    """torch.optim.Adam's step for an entry with first moment 0 and second moment ``v_old`` whose
    tensor has taken ``step - 1`` steps: m = (1 - b1) g, v = b2 v_old + (1 - b2) g^2,
    update = lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)."""
    m = (1 - b1) * g
    v = b2 * v_old + (1 - b2) * g * g
    return lr * (m / (1 - b1**step)) / (torch.sqrt(v / (1 - b2**step)) + eps)


@pytest.mark.parametrize("kind", ["adam", "adamw"])
@pytest.mark.parametrize("kept_step", [None, 2999.0], ids=["3 real steps", "long run"])
def test_adam_first_step_on_new_entries_uses_the_mean_second_moment(kind, kept_step):
    """The step on a new entry is ``lr (1 - b1) g / sqrt(b2 v_mean + (1 - b2) g^2)`` (with torch's bias
    corrections at the kept step count), and clearly not the ~3 lr a zero second moment would give.

    "long run": after 3 real steps the step counters are set to 2999, as after a long run (building
    that many real steps costs seconds); the carry-over must keep whatever count there is."""
    net, x, y = setup()
    optimizer = OPTIMIZERS[kind](net.parameters())
    train(net, x, y, optimizer, 3)
    if kept_step is not None:
        for state in optimizer.state.values():
            state["step"].fill_(kept_step)
    add_two_units(net, optimizer)
    weight = net.connections["h1_to_output"].weight
    state = optimizer.state[weight]
    t = float(state["step"]) + 1
    assert t == (kept_step or 3.0) + 1
    v_mean = state["exp_avg_sq"][:, 4:].clone()
    loss_backward(net, x, y, optimizer)
    g = weight.grad[:, 4:].clone()
    assert bool((g.abs() > 1e-4).all()), "the new units must receive a gradient for this test"
    before = weight.detach()[:, 4:].clone()  # zero: new outgoing weights
    optimizer.step()
    actual = before - weight.detach()[:, 4:]
    group = optimizer.param_groups[0]
    (b1, b2), lr, eps = group["betas"], group["lr"], group["eps"]
    expected = adam_update(lr, b1, b2, eps, g.double(), v_mean.double(), t)
    expected = expected + before.double() * lr * group["weight_decay"] if kind == "adamw" else expected
    torch.testing.assert_close(actual.double(), expected, rtol=1e-5, atol=0)
    # a reset second moment gives a step far outside the 1e-5 tolerance above: a reset is caught
    reset = adam_update(lr, b1, b2, eps, g.double(), torch.zeros_like(v_mean).double(), t)
    ratio_reset = (1 - b1) / (1 - b1**t) * math.sqrt((1 - b2**t) / (1 - b2))  # |reset| / lr
    torch.testing.assert_close(reset.abs(), torch.full_like(reset, lr * ratio_reset), rtol=1e-3, atol=0)
    assert bool(((actual.double() - reset).abs() > 1e-3 * reset.abs()).all())
    if kept_step is not None:
        assert 2.9 < ratio_reset < 3.2  # "about 3 lr" at a long run's step count


MASKERS = {
    "prune": lambda net, opt: ops.prune_edges(net, [("h1_to_output", 1, 2)], optimizer=opt),
    "split": lambda net, opt: ops.split_edges(net, [("h1_to_output", 1, 2)], eps=0.0, optimizer=opt),
}
DECAYING = {
    "adamw wd 0.1": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "sgd momentum wd 0.1": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.1),
    "adam l2 0.1": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1),
    "rmsprop momentum": lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5, weight_decay=0.1),
}


@pytest.mark.parametrize("masker", list(MASKERS))
@pytest.mark.parametrize("kind", list(DECAYING))
def test_masked_entry_takes_no_update(kind, masker):
    net, x, y = setup()
    optimizer = DECAYING[kind](net.parameters())
    train(net, x, y, optimizer, 3)
    MASKERS[masker](net, optimizer)
    weight = net.connections["h1_to_output"].weight
    frozen = weight.detach()[1, 2].clone()
    assert float(frozen) == 0.0
    start = weight.detach().clone()
    train(net, x, y, optimizer, 10)
    assert torch.equal(weight.detach()[1, 2], frozen)
    live = net.connections["h1_to_output"].live()
    assert bool((weight.detach() != start)[live].any()), "the live entries should have moved"


def test_masking_without_the_optimizer_lets_momentum_move_the_entry():
    """Why the optimizer must be passed: the stale momentum would move the stored entry (so the
    previous test can fail)."""
    net, x, y = setup()
    optimizer = torch.optim.AdamW(net.parameters(), lr=0.01, weight_decay=0.1)
    train(net, x, y, optimizer, 3)
    ops.prune_edges(net, [("h1_to_output", 1, 2)])
    train(net, x, y, optimizer, 1)
    assert float(net.connections["h1_to_output"].weight.detach()[1, 2]) != 0.0


@pytest.mark.parametrize("op", ["insert_identity", "compact", "remove_units"])
def test_other_ops_leave_no_stale_parameters(op):
    net, x, y = setup(gated=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    train(net, x, y, optimizer, 2)
    if op == "insert_identity":
        ops.insert_identity_layer(net, "h1_to_output", signed=True, optimizer=optimizer)
    elif op == "compact":
        ops.prune_edges(net, [("h1_to_output", 0, 3), ("h1_to_output", 1, 3)], optimizer=optimizer)
        ops.compact(net, optimizer=optimizer)
        assert net.layers["h1"].size == 3
    else:
        ops.remove_units(net, "h1", [0, 2], optimizer=optimizer)
    assert_tracks_exactly(optimizer, net)
    train(net, x, y, optimizer, 1)

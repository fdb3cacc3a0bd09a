"""Firefly (``FireflyInitializer``): the signals against autograd, the chosen candidates are those
with the largest first-order loss decrease (checked by actually adding each candidate), a planted
best candidate wins, and the function moves by O(eps)."""

from __future__ import annotations

import copy

import pytest
import torch

from edgekit import make_ctx, toy_dataset
from selfexpand.errors import ConfigError
from selfexpand.graph import GrowableNet
from selfexpand.ops import add_units
from selfexpand.strategies.base import Site
from selfexpand.strategies.initializers.firefly import FireflyInitializer, candidate_gains, layer_signals


def world(seed: int, n=64):
    net = GrowableNet.mlp([5, 4, 6, 3], seed=seed)
    return net, make_ctx(net, toy_dataset(n=n, d=5, k=3, seed=seed, signed=True), seed=seed)


def loss_with(net, ctx, incoming, bias, outgoing):
    """The training-sample loss after adding one unit with these values to h2 (on a copy)."""
    trial = copy.deepcopy(net).double()  # float64: the changes are ~1e-6 of the loss
    add_units(trial, "h2", 1, incoming={"h1_to_h2": incoming[None]}, bias=bias.reshape(1),
              outgoing={"h2_to_output": outgoing[:, None]})
    return base_loss(trial, ctx)


def base_loss(net, ctx) -> float:
    with torch.no_grad():
        return float(ctx.loss_fn(net.double()(ctx.data.x_train.double()), ctx.data.y_train))


def test_gains_predict_the_first_order_loss_change():
    net, ctx = world(0)
    a, delta = layer_signals(ctx, "h2", 10_000)
    w, b = torch.randn(3, 4, dtype=torch.float64), torch.full((3,), 0.5, dtype=torch.float64)  # active
    gains = candidate_gains(a, delta, w, b)
    base = base_loss(copy.deepcopy(net), ctx)
    eps = 1e-4
    for j in range(3):
        v = -gains[:, j] / gains[:, j].norm()
        change = (loss_with(net, ctx, w[j], b[j], eps * v) - base) / eps
        assert change == pytest.approx(-float(gains[:, j].norm()), rel=2e-2, abs=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_the_chosen_candidates_are_the_best_by_brute_force(seed):
    net, ctx = world(seed)
    m = 8
    gen = torch.Generator().manual_seed(seed)
    proposal = {"incoming": torch.randn(m, 4, generator=gen, dtype=torch.float64),
                "bias": torch.randn(m, generator=gen, dtype=torch.float64) * 0.1}
    base = base_loss(copy.deepcopy(net), ctx)
    a, delta = layer_signals(ctx, "h2", 10_000)
    gains = candidate_gains(a, delta, proposal["incoming"], proposal["bias"])
    eps = 1e-4
    decrease = [base - loss_with(net, ctx, proposal["incoming"][j], proposal["bias"][j],
                                 -eps * gains[:, j] / gains[:, j].norm().clamp_min(1e-30)) for j in range(m)]
    best = set(torch.topk(torch.tensor(decrease), 2).indices.tolist())
    event, = FireflyInitializer(steps=0, eps=eps).grow(ctx, [Site("h2", 2, proposal=proposal)])
    assert set(event.details["chosen"]) == best


def test_a_planted_best_candidate_wins():
    net, ctx = world(5)
    a, delta = layer_signals(ctx, "h2", 10_000)
    gen = torch.Generator().manual_seed(1)
    weak = torch.randn(6, 4, generator=gen, dtype=torch.float64) * 0.01  # tiny activations: tiny gains
    strong = torch.randn(1, 4, generator=gen, dtype=torch.float64) * 10.0
    incoming = torch.cat([weak[:3], strong, weak[3:]])
    bias = torch.full((7,), 0.5, dtype=torch.float64)
    assert int(candidate_gains(a, delta, incoming, bias).norm(dim=0).argmax()) == 3
    event, = FireflyInitializer(steps=0).grow(ctx, [Site("h2", 1, proposal={"incoming": incoming, "bias": bias})])
    assert event.details["chosen"] == [3]


def test_random_candidates_with_steps_change_the_function_by_order_eps():
    changes = []
    for eps in (1e-2, 1e-3):
        net, ctx = world(2)
        x = ctx.data.x_train
        before = net(x).detach()
        FireflyInitializer(eps=eps, steps=5).grow(ctx, [Site("h2", 2), Site("h1", 1)])
        assert net.widths() == [5, 5, 8, 3]
        changes.append(float((net(x).detach() - before).abs().max()))
    assert 0 < changes[1] < changes[0] / 5


def test_the_model_is_untouched_by_the_signal_pass():
    net, ctx = world(1)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    layer_signals(ctx, "h1", 32)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    assert all(p.requires_grad for p in net.parameters()) and len(net.connections) == 3


@pytest.mark.parametrize("kwargs, match", [
    ({"candidates_per_unit": 0}, "candidates_per_unit"), ({"steps": -1}, "steps"), ({"sample": 0}, "sample"),
    ({"eps": 0.0}, "eps"), ({"step_lr": -1.0}, "step_lr"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        FireflyInitializer(**kwargs)


def test_bad_proposal():
    net, ctx = world(0)
    with pytest.raises(ConfigError, match="proposal incoming"):
        FireflyInitializer().grow(ctx, [Site("h2", 1, proposal={"incoming": torch.zeros(3, 7)})])

"""Firefly (``FireflyInitializer``): the signals against autograd, the chosen candidates are those
with the largest first-order loss decrease (checked by actually adding each candidate), a planted
best candidate wins, and the function moves by O(eps). Splits: the predicted decrease against the
real one, a split at eps 0 keeps the function, splits and new units ranked together as brute force
ranks them, a planted kink chooses a split and a planted ignored input a new unit, determinism."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from edgekit import dataset_from, make_ctx, toy_dataset
from selfexpand.errors import ConfigError, GrowthError
from selfexpand.graph import GrowableNet
from selfexpand.ops import add_units
from selfexpand.strategies.base import Site
from selfexpand.strategies.initializers.firefly import (
    FireflyInitializer, apply_splits, candidate_gains, layer_signals, split_gains,
)


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
    y = ctx.data.y_train
    with torch.no_grad():
        return float(ctx.loss_fn(net.double()(ctx.data.x_train.double()), y.double() if y.is_floating_point() else y))


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
    ({"eps": 0.0}, "eps"), ({"step_lr": -1.0}, "step_lr"), ({"splits": "yes"}, "splits"), ({"split_lr": 0}, "split_lr"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        FireflyInitializer(**kwargs)


@pytest.mark.parametrize("proposal, match", [({"incoming": torch.zeros(3, 7)}, "proposal incoming"),
                                             ({"split_directions": torch.zeros(6, 4)}, "split_directions")])
def test_bad_proposal(proposal, match):
    net, ctx = world(0)
    with pytest.raises(ConfigError, match=match):
        FireflyInitializer().grow(ctx, [Site("h2", 1, proposal=proposal)])


# --- splits of existing units -------------------------------------------------------------------

def kink_world(seed: int = 0):
    """One unit ``relu(x)``; the target's kink is split in two at ``+-0.25``: the split along the
    bias with eps 0.25 fits it exactly, a new unit only in part."""
    x = torch.linspace(-1, 1, 401)[:, None]
    net = GrowableNet.mlp([1, 1, 1], seed=seed)
    with torch.no_grad():
        for p in (net.connections["input_to_h1"].weight, net.connections["h1_to_output"].weight):
            p.fill_(1.0)
        net.layers["h1"].bias.zero_()
        net.layers["output"].bias.zero_()
    return net, make_ctx(net, dataset_from(x, (F.relu(x - 0.25) + F.relu(x + 0.25)) / 2), seed=seed)


def ignored_world(seed: int = 0):
    """One unit ``relu(x1)``; the target also needs ``relu(x2)``, an input the network ignores."""
    x = torch.rand(400, 2, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    net = GrowableNet.mlp([2, 1, 1], seed=seed)
    with torch.no_grad():
        net.connections["input_to_h1"].weight.copy_(torch.tensor([[1.0, 0.0]]))
        net.connections["h1_to_output"].weight.fill_(1.0)
        net.layers["h1"].bias.zero_()
        net.layers["output"].bias.zero_()
    return net, make_ctx(net, dataset_from(x, F.relu(x[:, :1]) + F.relu(x[:, 1:])), seed=seed)


def chain(net, layer):
    return (next(n for n, c in net.connections.items() if c.target == layer),
            next(n for n, c in net.connections.items() if c.source == layer))


def brute_force(net, ctx, layer, proposal, eps) -> tuple[torch.Tensor, torch.Tensor]:
    """The real loss decrease of each new candidate (outgoing ``-eps g / |g|``) and of each unit's
    best split among its proposed directions, each applied alone to a float64 copy."""
    conn_in, conn_out = chain(net, layer)
    base = base_loss(copy.deepcopy(net), ctx)
    a, delta = layer_signals(ctx, layer, 10_000)
    gains = candidate_gains(a, delta, proposal["incoming"], proposal["bias"])
    new = []
    for j in range(gains.shape[1]):
        trial = copy.deepcopy(net).double()
        add_units(trial, layer, 1, incoming={conn_in: proposal["incoming"][j][None]},
                  bias=proposal["bias"][j].reshape(1),
                  outgoing={conn_out: (-eps * gains[:, j] / gains[:, j].norm().clamp_min(1e-30))[:, None]})
        new.append(base - base_loss(trial, ctx))
    split = []
    for j, directions in enumerate(proposal["split_directions"]):
        decreases = []
        for d in directions:
            trial = copy.deepcopy(net).double()
            apply_splits(trial, layer, [j], (d / d.norm())[None], eps)
            decreases.append(base - base_loss(trial, ctx))
        split.append(max(decreases))
    return torch.tensor(new), torch.tensor(split)


def random_proposal(seed, m, n_src, size, r=2, scale=None):
    """``m`` new candidates (``N(0, scale^2)`` weights and bias, or Firefly's own: Kaiming-uniform
    weights, bias 0) and ``r`` random split directions per unit."""
    gen = torch.Generator().manual_seed(seed)
    if scale is None:
        incoming = (torch.rand(m, n_src, generator=gen, dtype=torch.float64) * 2 - 1) / n_src ** 0.5
        bias = torch.zeros(m, dtype=torch.float64)
    else:
        incoming = torch.randn(m, n_src, generator=gen, dtype=torch.float64) * scale
        bias = torch.randn(m, generator=gen, dtype=torch.float64) * scale
    return {"incoming": incoming, "bias": bias,
            "split_directions": torch.randn(size, r, n_src + 1, generator=gen, dtype=torch.float64)}


def chosen(events, m) -> set[int]:
    """Chosen candidates: new ones by index, splits of unit ``j`` as ``m + j``."""
    return {c + (m if e.kind == "split_units" else 0) for e in events for c in e.details["chosen"]}


@pytest.mark.parametrize("seed", range(3))
def test_split_gains_predict_the_loss_change(seed):
    net, ctx = world(seed, n=512)
    eps = 0.03
    a, delta = layer_signals(ctx, "h2", 10_000)
    pre = a @ net.connections["h1_to_h2"].weight.detach().double().T + net.layers["h2"].bias.detach().double()
    grad_h = delta @ net.connections["h2_to_output"].weight.detach().double()
    directions = torch.randn(6, 1, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    predicted = split_gains(a, pre, grad_h, directions, eps)[:, 0]
    base = base_loss(copy.deepcopy(net), ctx)
    actual = []
    for j in range(6):
        trial = copy.deepcopy(net).double()
        apply_splits(trial, "h2", [j], directions[j], eps)
        actual.append(base - base_loss(trial, ctx))
    actual = torch.tensor(actual, dtype=torch.float64)
    assert actual.abs().max() > 1e-7  # some unit's kink is reached
    assert torch.allclose(predicted, actual, rtol=0, atol=0.05 * float(actual.abs().max()))


@pytest.mark.parametrize("seed", range(5))
def test_a_split_at_eps_zero_preserves_the_function(seed):
    net, ctx = world(seed)
    x = torch.randn(50, 5, generator=torch.Generator().manual_seed(seed))
    ctx.loss_fn(net(ctx.data.x_train), ctx.data.y_train).backward()
    ctx.optimizer.step()  # so there is optimizer state to carry
    before = net(x).detach()
    sources = torch.randperm(6, generator=torch.Generator().manual_seed(seed))[:1 + seed % 4]
    directions = torch.randn(sources.numel(), 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    w = net.connections["h1_to_h2"].weight.detach().clone()
    event = apply_splits(net, "h2", sources, directions, 0.0, optimizer=ctx.optimizer)
    assert event.kind == "split_units" and net.widths() == [5, 4, 6 + sources.numel(), 3]
    assert torch.allclose(net(x), before, atol=1e-5, rtol=0)
    assert net.layers["h2"].grown.tolist() == [False] * 6 + [True] * sources.numel()
    assert torch.equal(net.connections["h1_to_h2"].weight.detach()[6:], w[sources])
    weight = net.connections["h1_to_h2"].weight
    assert {id(p) for g in ctx.optimizer.param_groups for p in g["params"]} == {id(p) for p in net.parameters()}
    moment = ctx.optimizer.state[weight]["exp_avg"]  # the copies' incoming rows carry their source's
    assert moment.shape == weight.shape and torch.equal(moment[6:], moment[sources])
    # with eps > 0 the two halves are w_j +- eps delta_j
    net, ctx = world(seed)
    w, before = net.connections["h1_to_h2"].weight.detach().clone(), net(x).detach()
    apply_splits(net, "h2", sources, directions, 1e-3, optimizer=ctx.optimizer)
    nudged = net.connections["h1_to_h2"].weight.detach().double()
    assert torch.allclose(nudged[sources], w[sources].double() + 1e-3 * directions[:, :-1], atol=1e-7)
    assert torch.allclose(nudged[6:], w[sources].double() - 1e-3 * directions[:, :-1], atol=1e-7)
    assert float((net(x).detach() - before).abs().max()) < 1e-2


def test_apply_splits_rejects_bad_requests_and_leaves_the_graph():
    net, ctx = world(0)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    for sources, directions in (([1, 1], torch.zeros(2, 5)), ([1], torch.zeros(1, 4)), ([9], torch.zeros(1, 5))):
        with pytest.raises(GrowthError):
            apply_splits(net, "h2", sources, directions, 0.1, optimizer=ctx.optimizer)
    assert net.widths() == [5, 4, 6, 3]
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("seed", range(4))
def test_splits_and_new_units_are_ranked_as_brute_force_ranks_them(seed):
    net, ctx = world(seed, n=512)
    eps, m = 0.1, 6
    proposal = random_proposal(seed, m, 4, 6, scale=0.03)  # weak new units: the two kinds compete
    new, split = brute_force(net, ctx, "h2", proposal, eps)
    best = set(torch.topk(torch.cat([new, split]), 3).indices.tolist())
    events = FireflyInitializer(steps=0, eps=eps).grow(ctx, [Site("h2", 3, proposal=proposal)])
    assert chosen(events, m) == best
    assert [e.kind for e in events] == [k for k, some in (("split_units", max(best) >= m),
                                                          ("add_units", min(best) < m)) if some]
    assert net.widths() == [5, 4, 9, 3]


@pytest.mark.parametrize("seed", range(3))
def test_a_planted_kink_chooses_the_split(seed):
    net, ctx = kink_world(seed)
    proposal = random_proposal(seed, 8, 1, 1, r=4)
    new, split = brute_force(net, ctx, "h1", proposal, 0.25)
    assert float(split.max()) > 1.5 * float(new.max())
    event, = FireflyInitializer(eps=0.25, steps=0).grow(ctx, [Site("h1", 1, proposal=proposal)])
    assert (event.kind, event.details["chosen"]) == ("split_units", [0])
    # random candidates with steps: the direction found moves the bias, and the split fits the target
    net, ctx = kink_world(seed)
    before = base_loss(copy.deepcopy(net), ctx)
    event, = FireflyInitializer(eps=0.25, steps=10).grow(ctx, [Site("h1", 1)])
    assert event.kind == "split_units" and abs(event.details["split_directions"][0][1]) > 0.99
    assert base_loss(copy.deepcopy(net), ctx) < 1e-3 * before
    # without splits the same site gets a new unit
    net, ctx = kink_world(seed)
    event, = FireflyInitializer(eps=0.25, steps=10, splits=False).grow(ctx, [Site("h1", 1)])
    assert event.kind == "add_units"


@pytest.mark.parametrize("seed", range(3))
def test_a_planted_ignored_input_chooses_a_new_unit(seed):
    net, ctx = ignored_world(seed)
    proposal = random_proposal(seed, 8, 2, 1, r=4)
    new, split = brute_force(net, ctx, "h1", proposal, 0.25)
    assert float(new.max()) > 1.5 * float(split.max())
    event, = FireflyInitializer(eps=0.25, steps=0).grow(ctx, [Site("h1", 1, proposal=proposal)])
    assert (event.kind, event.details["chosen"]) == ("add_units", [int(new.argmax())])
    net, ctx = ignored_world(seed)
    event, = FireflyInitializer(eps=0.25, steps=10).grow(ctx, [Site("h1", 1)])
    assert event.kind == "add_units"


@pytest.mark.parametrize("make", [lambda: world(3, n=256), kink_world], ids=["random", "kink"])
def test_deterministic_under_a_seed(make):
    runs = []
    for _ in range(2):
        net, ctx = make()
        sites = [Site(n, 2) for n in net.order[1:-1]]
        events = FireflyInitializer(eps=0.1, steps=5).grow(ctx, sites)
        runs.append(([(e.kind, e.site, e.details) for e in events], net.state_dict()))
    (events_a, state_a), (events_b, state_b) = runs
    assert events_a == events_b
    assert state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)

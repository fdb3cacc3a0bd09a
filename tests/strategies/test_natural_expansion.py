"""SENN's trigger, selector and initializer (ALGORITHMS.md §3) on small planted networks."""

from __future__ import annotations

import math

import pytest
import torch
from edgekit import dataset_from, make_ctx, toy_dataset

from selfexpand.errors import ConfigError
from selfexpand.graph import GrowableNet
from selfexpand.strategies.initializers.natural_expansion import NaturalExpansionInitializer
from selfexpand.strategies.senn.chain_sample import chain_sample
from selfexpand.strategies.selectors.natural_expansion import NaturalExpansionSelector
from selfexpand.strategies.triggers.checks import CheckTrigger

FAST = dict(proposals=16, search="ascent", ascent_steps=10, sample_size=64)


def _net(widths, seed=0, activation="tanh"):
    return GrowableNet.mlp(widths, activation=activation, seed=seed)


def _grow(net, data, *, seed=0, max_params=None, **kw):
    ctx = make_ctx(net, data, seed=seed, max_params=max_params)
    selector = NaturalExpansionSelector(**{**dict(tau=0.0, alpha=0.0, capacity=[8, 8, 8]), **FAST, **kw})
    sites = selector.select(ctx)
    events = NaturalExpansionInitializer().grow(ctx, sites) if sites else []
    return sites, events, selector, ctx


def _xor_data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()
    return dataset_from(x, y, task="classification")


@pytest.mark.parametrize("seed, search_size", [(0, 0), (1, 0), (2, 0), (0, 16)])
def test_width_growth_keeps_the_outputs(seed, search_size):
    net, data = _net([6, 4, 3], seed), toy_dataset(seed=seed)
    x = data.x_train
    before = net(x).detach()
    sites, events, _, _ = _grow(net, data, seed=seed, depth=False, search_size=search_size)
    assert sites and sum(s.n_units for s in sites) > 0
    assert net.layers[net.hidden_layers()[0]].size > 4
    assert torch.allclose(net(x), before, atol=1e-5)


@pytest.mark.parametrize("seed, depth_score", [(0, "free"), (1, "free"), (2, "free"), (0, "tied"), (1, "tied")])
def test_depth_growth_keeps_the_outputs(seed, depth_score):
    data = _xor_data(seed=seed)
    net = _net([2, 2], seed)  # no hidden layer: the only way to grow is a new layer
    before = net(data.x_train).detach()
    sites, events, selector, _ = _grow(net, data, seed=seed, proposals=32, depth_score=depth_score)
    assert [s.info["kind"] for s in sites] == ["depth"]
    assert len(net.hidden_layers()) == 1 and net.layers[net.hidden_layers()[0]].size == 2
    assert torch.allclose(net(data.x_train), before, atol=1e-5)
    assert selector.checks_since_layer == 0


def test_depth_into_a_hidden_chain_keeps_the_outputs():
    data = toy_dataset(d=3, seed=4, signed=True)
    net = _net([3, 3, 3], 4)
    before = net(data.x_train).detach()
    sites, _, _, _ = _grow(net, data, seed=4, width=False, proposals=48)
    assert sites and sites[0].info["kind"] == "depth"
    assert len(net.hidden_layers()) == 2
    assert torch.allclose(net(data.x_train), before, atol=1e-5)


def test_decisions_are_deterministic_under_a_seed():
    runs = []
    for _ in range(2):
        net, data = _net([6, 4, 3], 0), toy_dataset(seed=0)
        sites, _, _, _ = _grow(net, data, seed=3, depth=False)
        runs.append([(s.layer, s.n_units, s.proposal["weight"].clone()) for s in sites])
    assert len(runs[0]) == len(runs[1])
    for (l1, n1, w1), (l2, n2, w2) in zip(*runs):
        assert l1 == l2 and n1 == n2 and torch.equal(w1, w2)
    net, data = _net([6, 4, 3], 0), toy_dataset(seed=0)
    other, _, _, _ = _grow(net, data, seed=4, depth=False)
    assert not torch.equal(other[0].proposal["weight"][:1], runs[0][0][2][:1])


def test_capacity_caps_the_width():
    net, data = _net([6, 4, 3]), toy_dataset(seed=1)
    _grow(net, data, depth=False, capacity=[7])
    assert net.layers[net.hidden_layers()[0]].size == 6  # capacity - 1; thresholds 0 accept every unit


def test_max_params_caps_the_growth():
    net, data = _net([6, 4, 3]), toy_dataset(seed=1)
    unit = 6 + 1 + 3
    budget = net.counts()["params"] + 2 * unit + unit // 2
    _grow(net, data, depth=False, max_params=budget)
    assert net.counts()["params"] <= budget
    assert net.layers[net.hidden_layers()[0]].size == 6


def test_thresholds_reject():
    net, data = _net([6, 4, 3]), toy_dataset(seed=1)
    sites, _, selector, _ = _grow(net, data, tau=1e9)
    assert sites == [] and net.widths() == [6, 4, 3]
    sites, _, _, _ = _grow(net, data, alpha=1e9)
    assert sites == []


def test_layer_cooldown_and_slots():
    data = _xor_data(seed=5)
    net = _net([2, 2], 5)
    ctx = make_ctx(net, data, seed=5)
    selector = NaturalExpansionSelector(tau=0.0, alpha=0.0, capacity=[8, 8], layer_cooldown=2, **FAST)
    init = NaturalExpansionInitializer()
    kinds = []
    for _ in range(6):
        sites = selector.select(ctx)
        kinds.append(sorted({s.info["kind"] for s in sites}))
        if sites:
            init.grow(ctx, sites)
    depth_checks = [i for i, k in enumerate(kinds) if k == ["depth"]]
    assert depth_checks[0] == 0
    assert all(b - a > 2 for a, b in zip(depth_checks, depth_checks[1:]))  # two checks between insertions
    assert len(net.hidden_layers()) <= 2  # two slots


def test_degenerate_inputs_give_finite_scores_and_a_finite_model():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 5, generator=g)
    x[:, 2] = 1.0  # a constant input: A is rank deficient (it duplicates the bias column)
    x[:, 3] = x[:, 1]  # a duplicated input
    y = torch.randint(0, 3, (64,), generator=g)
    net = _net([5, 4, 3])
    sites, _, selector, _ = _grow(net, dataset_from(x, y, task="classification"))
    for p in net.parameters():
        assert torch.isfinite(p).all()
    for record in selector.last_check["layers"].values():
        assert math.isfinite(record["eta"]) and math.isfinite(record["delta"])


def test_dead_network_skips_cleanly():
    net, data = _net([6, 4, 3]), toy_dataset(seed=1)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    sites, _, _, _ = _grow(net, data, tau=0.5, alpha=1e-3)
    for p in net.parameters():
        assert torch.isfinite(p).all()


def test_chain_sample_per_example_gradients_match_autograd():
    net, data = _net([6, 4, 3]), toy_dataset(seed=2)
    loss_fn = make_ctx(net, data).loss_fn
    sample = chain_sample(net, data.x_train[:5], data.y_train[:5], loss_fn)
    out = net(data.x_train[:1])
    expected = torch.autograd.grad(loss_fn(out, data.y_train[:1]), out)[0]
    assert torch.allclose(sample.grads["output"][0].float(), expected[0], atol=1e-6)
    assert torch.allclose(sample.inputs["output"][:, -1], torch.ones(5, dtype=torch.float64))


def test_non_chain_network_is_refused():
    net = _net([6, 4, 3])
    net.add_connection("input", "output", torch.zeros(3, 6))
    with pytest.raises(Exception, match="chain"):
        _grow(net, toy_dataset(seed=1))


def test_check_schedule():
    trigger = CheckTrigger(3)
    ctx = make_ctx(_net([6, 3]), toy_dataset())
    ctx.epochs_total = 10
    due = []
    for epoch in range(1, 11):
        ctx.epoch = epoch
        due.append(trigger.should_grow(ctx).grow)
    assert [e for e, d in zip(range(1, 11), due) if d] == [1, 3, 6, 9]
    last = CheckTrigger(3, check_last=True)
    ctx.epoch = 10
    assert last.should_grow(ctx).grow


@pytest.mark.parametrize("bad", [dict(capacity=[1]), dict(tau=-1.0), dict(search="grid"), dict(proposals=0),
                                 dict(layer_cost_mul=0.0), dict(choice="first"), dict(search_size=-1),
                                 dict(reproposal=-0.5), dict(depth_score="exact")])
def test_bad_settings(bad):
    with pytest.raises(ConfigError):
        NaturalExpansionSelector(**{**dict(tau=0.0, alpha=0.0, capacity=[8]), **bad})

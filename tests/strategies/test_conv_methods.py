"""The conv contract of random, zero, net2net and gradmax (issue #24): their selector picks conv layers (a
fraction of the channels, up to a cap), their initializers grow channels, zero, net2net and gradmax (epsilon 0) keep the
outputs (eval mode) right after growth, draws depend on the seed only; a conv run of net2net, firefly or SENN resumes
bit for bit (SWE / SVoD: tests/strategies/test_swe_conv.py)."""

from __future__ import annotations

import math

import pytest
import torch

from edgekit import make_ctx
from selfexpand.data.base import Dataset
from selfexpand.graph import GrowableNet
from selfexpand.presets import build_method, resolve_config
from selfexpand.strategies.selectors.fixed_units import AllLayersSelector, RoundRobinSelector


def _data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = [torch.rand(m, 1, 8, 8, generator=g) for m in (n, n // 4, n // 4)]
    y = [torch.randint(0, 3, (m,), generator=g) for m in (n, n // 4, n // 4)]
    return Dataset("img", "classification", x[0], y[0], x[1], y[1], x[2], y[2], (1, 8, 8), 3,
                   {"input_shape": [1, 8, 8]})


def _world(seed=0, hidden=(5,), conv=(4, 8), gen_seed=0):
    net = GrowableNet.cnn((1, 8, 8), list(conv), list(hidden), 3, seed=seed)
    return net, make_ctx(net, _data(seed=seed), seed=gen_seed)


def _grow(method, net, ctx, **overrides):
    config = resolve_config(method, "mnist", {"conv": [4, 8], **overrides})
    grown = build_method(method, config)
    sites = grown.selector.select(ctx)
    return sites, grown.initializer.grow(ctx, sites)


def test_the_selector_gives_conv_layers_a_fraction_and_dense_layers_units():
    net, ctx = _world()
    sites = AllLayersSelector(units=3, channel_fraction=0.25, max_channels=[]).select(ctx)
    assert [(s.layer, s.n_units) for s in sites] == [("h1", 1), ("h2", 2), ("h3", 3)]
    sites = AllLayersSelector(units=3, channel_fraction=0.5, max_channels=[5, 8]).select(ctx)
    assert [(s.layer, s.n_units) for s in sites] == [("h1", 1), ("h3", 3)]  # h2 at its cap
    rr = RoundRobinSelector(units=2, channel_fraction=1.0, max_channels=[])
    assert [[(s.layer, s.n_units) for s in rr.select(ctx)] for _ in range(3)] == \
        [[("h1", 4)], [("h2", 8)], [("h3", 2)]]


def test_the_selector_trims_channels_to_the_parameter_budget():
    net, ctx = _world(hidden=())
    params = net.params
    # one new channel of h2: 4*9 kernels in, bias, batch norm 2, 3 outputs x 4 positions out = 51
    ctx.max_params = params + 51 * 2 + 10
    sites = AllLayersSelector(units=1, channel_fraction=1.0, max_channels=[4]).select(ctx)
    assert [(s.layer, s.n_units) for s in sites] == [("h2", 2)]


@pytest.mark.parametrize("method", ["zero", "net2net", "gradmax"])
@pytest.mark.parametrize("seed", range(3))
def test_zero_net2net_and_gradmax_keep_the_outputs_in_eval_mode(method, seed):
    net, ctx = _world(seed)
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():  # batch statistics away from their start values
        net.train()
        for _ in range(3):
            net(torch.rand(16, 1, 8, 8) * 2)
    net.eval()
    before = net(x).detach()
    exact = {"net2net": {"noise": 0.0}, "gradmax": {"epsilon": 0.0}}.get(method, {})
    sites, events = _grow(method, net, ctx, **exact)
    assert {e.kind for e in events} >= {"split_channels" if method == "net2net" else "add_channels"}
    assert net.layers["h1"].size == 5 and net.layers["h2"].size == 10
    assert torch.allclose(net(x), before, atol=1e-5, rtol=0)


def test_random_channels_change_the_outputs_with_conv2d_bounds():
    net, ctx = _world(0)
    x = torch.rand(6, 1, 8, 8)
    net.eval()
    before = net(x).detach()
    _grow("random", net, ctx)
    assert not torch.allclose(net(x), before)
    w_in = net.connections["h1_to_h2"].weight.detach()[8:]
    # last layer first: h2's 2 new channels see h1's 4 channels x 3 x 3 (h1's new one joins later)
    assert float(w_in.abs().max()) <= 1 / math.sqrt(4 * 9) and float(w_in.abs().max()) > 0.8 / math.sqrt(4 * 9)
    # the flatten boundary: 2 new channels x 4 positions, fan_in 8 channels x 4 + 8 after growth
    w_out = net.connections["h2_to_h3"].weight.detach()[:, 8 * 4:]
    assert w_out.shape[1] == 8 and float(w_out.abs().sum()) > 0
    assert float(w_out.abs().max()) <= 1 / math.sqrt(8 * 4 + 8)


_SEED_ONLY = {"random": {}, "zero": {}, "net2net": {}, "gradmax": {},  # SENN: thresholds 0, so that it grows
              "senn": {"capacity": [6, 10, 8], "tau": 0.0, "alpha": 0.0, "proposals": 4, "ascent_steps": 3,
                       "sample_size": 16}}


@pytest.mark.parametrize("method", sorted(_SEED_ONLY))
def test_growth_depends_on_the_seed_only(method):
    states = []
    for gen_seed in (1, 1, 2):
        net, ctx = _world(0, gen_seed=gen_seed)
        sites, _ = _grow(method, net, ctx, **_SEED_ONLY[method])
        assert sites
        states.append(net.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


_RESUME = {"net2net": {}, "firefly": {"steps": 2, "sample": 256},  # SENN: a check every epoch that accepts, 2 channels per check at most
           "senn": {"cooldown": 1, "tau": 0.0, "alpha": 0.0, "capacity": [9, 9], "proposals": 8, "ascent_steps": 5,
                    "sample_size": 128}}


@pytest.mark.parametrize("method", sorted(_RESUME))
def test_a_conv_run_resumes_bit_for_bit(tmp_path, method):
    from selfexpand.checkpoint import load_checkpoint
    from selfexpand.runconfig import RunConfig
    from selfexpand.runs import resume_run, train_run

    def config(out, epochs):
        return RunConfig(method=method, dataset="digits", epochs=epochs, seed=4, out=str(out),
                         settings={"conv": [4], "hidden": [6], **_RESUME[method]})

    threads = torch.get_num_threads()
    try:
        _, straight = train_run(config(tmp_path / "a", 3))
        train_run(config(tmp_path / "b", 2))
        _, resumed = resume_run(tmp_path / "b", epochs=3)
    finally:
        torch.set_num_threads(threads)
    assert straight["growth_events"] >= 2 and straight["params_final"] > straight["params_start"]
    for key in ("test_metric", "params_final", "growth_events", "units_added", "train_flops"):
        assert straight[key] == resumed[key]
    a = load_checkpoint(tmp_path / "a" / "model.safetensors").model.state_dict()
    b = load_checkpoint(tmp_path / "b" / "model.safetensors").model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

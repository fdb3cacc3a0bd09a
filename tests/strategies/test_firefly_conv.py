"""Firefly on conv layers (``firefly_conv``): candidate channels' scores against autograd on the whole
network (24 random geometries, float64), the split score against the real loss change, the function
kept exactly at eps 0 and moved by O(eps) (evaluation mode), determinism under a seed, and Firefly from
the CLI on 256 CIFAR-10-subset / MNIST images growing channels and reporting inactivity."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from edgekit import make_ctx
from torch import nn

from selfexpand.data.base import Dataset
from selfexpand.errors import ConfigError
from selfexpand.graph import GrowableNet
from selfexpand.graph.conv import ConvLayer
from selfexpand.ops import add_units
from selfexpand.presets import build_method, resolve_config
from selfexpand.strategies.base import Site
from selfexpand.strategies.initializers.firefly import FireflyInitializer
from selfexpand.strategies.initializers.firefly_conv import (
    _grad_h,
    apply_conv_splits,
    candidate_maps,
    conv_candidate_gains,
    conv_signals,
    conv_split_gains,
)


def _data(n=16, c=1, hw=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = [torch.rand(m, c, hw, hw, generator=g) for m in (n, 4, 4)]
    y = [torch.randint(0, 3, (m,), generator=g) for m in (n, 4, 4)]
    return Dataset("img", "classification", x[0], y[0], x[1], y[1], x[2], y[2], (c, hw, hw), 3,
                   {"input_shape": [c, hw, hw]})


def _random_net(seed):
    """conv (k1, s1, p1) -> [bn] -> relu/tanh -> [pool] -> conv (k2, s2, p2) -> relu -> flatten -> linear."""
    g = torch.Generator().manual_seed(seed)
    pick = lambda options: options[int(torch.randint(len(options), (1,), generator=g))]
    torch.manual_seed(seed)
    k1, s1, p1 = pick([1, 2, 3]), pick([1, 2]), pick([0, 1])
    k2, s2, p2 = pick([1, 2, 3]), pick([1, 2]), pick([0, 1, 2])
    mods = [nn.Conv2d(2, 3, k1, s1, p1)]
    if pick([True, False]):
        mods.append(nn.BatchNorm2d(3))
    mods.append(pick([nn.ReLU, nn.Tanh])())
    pool = pick([None, nn.MaxPool2d, nn.AvgPool2d])
    if pool is not None:
        mods.append(pool(2))
    module = nn.Sequential(*mods, nn.Conv2d(3, 4, k2, s2, p2), nn.ReLU(), nn.Flatten())
    with torch.no_grad():
        flat = module(torch.zeros(1, 2, 16, 16)).shape[1]
    module = nn.Sequential(*module, nn.Linear(flat, 3)).eval()
    for m in module.modules():  # batch statistics away from their start values
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return GrowableNet.from_module(module, input_shape=(2, 16, 16))


def _loss(net, ctx, n):
    x, y = ctx.data.x_train[:n].double(), ctx.data.y_train[:n]
    return ctx.loss_fn(net(x), y)


@pytest.mark.parametrize("seed", range(12))
def test_candidate_scores_are_the_gradient_of_the_loss_wrt_the_new_outgoing_kernels(seed):
    net = _random_net(seed)
    ctx = make_ctx(net, _data(n=12, c=2, hw=16, seed=seed), seed=seed)
    convs = [n for n in net.order if isinstance(net.layers[n], ConvLayer)]
    for layer in convs:  # the first reads a conv layer, the second the flatten boundary: 24 cases
        (conn_in,) = [n for n, c in net.connections.items() if c.target == layer]
        (conn_out,) = [n for n, c in net.connections.items() if c.source == layer]
        probe, a, delta = conv_signals(ctx, layer, 12)
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(2, *net.connections[conn_in].shape[1:], generator=g, dtype=torch.float64) * 0.1
        b = 3 + torch.randn(2, generator=g, dtype=torch.float64) * 0.3  # mostly active
        gains = conv_candidate_gains(candidate_maps(probe.layers[layer], probe.connections[conn_in], a, w, b),
                                     delta, probe.connections[conn_out])
        for j in range(2):
            trial = copy.deepcopy(net).double().eval()
            add_units(trial, layer, 1, incoming={conn_in: w[j:j + 1]}, bias=b[j:j + 1])  # zero outgoing
            weight = trial.connections[conn_out].weight
            (grad,) = torch.autograd.grad(_loss(trial, ctx, 12), weight)
            old = net.layers[layer].size
            if weight.dim() == 4:
                expected = grad[:, old]
            else:
                p = weight.shape[1] // (old + 1)
                expected = grad[:, old * p:]
            assert expected.abs().max() > 1e-8
            torch.testing.assert_close(gains[:, j].reshape(expected.shape), expected, rtol=1e-4, atol=1e-12)


@pytest.mark.parametrize("seed", range(2))
def test_the_split_score_predicts_the_loss_change(seed):
    net = _random_net(seed + 100)
    ctx = make_ctx(net, _data(n=12, c=2, hw=16, seed=seed), seed=seed)
    layer = next(n for n in net.order if isinstance(net.layers[n], ConvLayer))
    (conn_in,) = [n for n, c in net.connections.items() if c.target == layer]
    (conn_out,) = [n for n, c in net.connections.items() if c.source == layer]
    probe, a, delta = conv_signals(ctx, layer, 12)
    p_layer, p_in = probe.layers[layer], probe.connections[conn_in]
    pre = torch.nn.functional.conv2d(a, p_in.weight, p_layer.bias, p_in.stride, p_in.padding)
    out_shape = probe.layer_outputs(ctx.data.x_train[:12].double())[layer].shape
    grad_h = _grad_h(probe.connections[conn_out], delta, out_shape)
    d = p_in.weight[0].numel() + 1
    directions = torch.randn(3, 1, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    eps = 0.05
    scores = conv_split_gains(p_layer, p_in, a, pre, grad_h, directions, eps)
    base = float(_loss(copy.deepcopy(net).double().eval(), ctx, 12).detach())
    for j in range(3):
        trial = copy.deepcopy(net).double().eval()
        apply_conv_splits(trial, layer, [j], directions[j], eps)
        decrease = base - float(_loss(trial, ctx, 12).detach())
        assert decrease == pytest.approx(float(scores[j, 0]), rel=0.05, abs=1e-7)


def _world(seed=0, gen_seed=0):
    net = GrowableNet.cnn((1, 8, 8), [4, 8], [5], 3, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # batch statistics away from their start values
        net.train()
        for _ in range(3):
            net(torch.rand(16, 1, 8, 8, generator=g) * 2)
    return net, make_ctx(net, _data(n=32, seed=seed), seed=gen_seed)


def _grow(net, ctx, eps=1e-2, **kw):
    config = resolve_config("firefly", "mnist", {"conv": [4, 8], **kw})
    grown = build_method("firefly", config)
    grown.initializer.eps = eps  # the setting refuses 0; the function accepts it
    return grown.initializer.grow(ctx, grown.selector.select(ctx))


@pytest.mark.parametrize("splits", [True, False])
def test_growth_keeps_the_function_at_eps_zero_and_moves_it_by_order_eps(splits):
    x = torch.rand(6, 1, 8, 8)
    changes = []
    for eps in (0.0, 1e-3, 1e-2):
        net, ctx = _world(0)
        net.eval()
        before = net(x).detach()
        events = _grow(net, ctx, eps, splits=splits)
        kinds = {e.kind for e in events}
        assert kinds & {"add_channels", "split_channels"}
        assert net.layers["h1"].size == 5 and net.layers["h2"].size == 10
        changes.append(float((net(x) - before).abs().max().detach()))
    assert changes[0] < 1e-5
    assert 0 < changes[1] < changes[2] < 30 * changes[1]


def test_splits_win_over_dead_candidates_and_new_channels_win_at_small_eps():
    net, ctx = _world(0)
    dead = {"incoming": torch.zeros(8, 4, 3, 3), "bias": torch.full((8,), -100.0)}  # relu(bn0(-100)) = 0
    init = FireflyInitializer(eps=0.5)
    events = init.grow(ctx, [Site("h2", 2, proposal=dead)])
    assert [e.kind for e in events] == ["split_channels"] and net.layers["h2"].size == 10
    assert min(events[0].details["predicted_decrease"]) > 0
    net, ctx = _world(0)
    events = FireflyInitializer(eps=1e-3).grow(ctx, [Site("h2", 2)])
    assert [e.kind for e in events] == ["add_channels"]
    assert min(events[0].details["first_order_decrease"]) > 0


def test_growth_depends_on_the_seed_only():
    states = []
    for gen_seed in (1, 1, 2):
        net, ctx = _world(0, gen_seed=gen_seed)
        _grow(net, ctx)
        states.append(net.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_firefly_grows_channels_and_refuses_a_bad_conv_proposal():
    assert FireflyInitializer.grows_channels
    assert resolve_config("firefly", "mnist", {"conv": [4]})["conv"] == [4]  # no refusal
    _, ctx = _world(0)
    with pytest.raises(ConfigError, match="proposal incoming"):
        FireflyInitializer().grow(ctx, [Site("h1", 1, proposal={"incoming": torch.zeros(2, 3, 3)})])
    with pytest.raises(ConfigError, match="proposal split_directions"):
        FireflyInitializer().grow(ctx, [Site("h1", 1, proposal={"split_directions": torch.zeros(4, 3)})])


QUICK = ["--set", "limit=256", "--set", "conv=[4,8]", "--epochs", 2, "--quiet"]


@pytest.mark.parametrize("dataset,folder", [("cifar10", "cifar10-subset"), ("mnist", "mnist")])
def test_firefly_from_the_cli_grows_channels_and_reports_inactivity(shared_dataset, tmp_path, dataset, folder):
    import contextlib
    import io

    from selfexpand.cli import main

    data_dir = shared_dataset(folder).parent
    run_dir = tmp_path / "run"
    threads = torch.get_num_threads()
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            status = main([str(a) for a in ("train", "--method", "firefly", "--dataset", dataset,
                                            "--data-dir", data_dir, *QUICK, "--out", run_dir)])
    finally:
        torch.set_num_threads(threads)
    assert status == 0, err.getvalue()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["growth_events"] >= 2 and summary["params_final"] > summary["params_start"]
    assert summary["inactive_units_fraction"] is not None
    records = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in records if r["type"] == "growth"} & {"add_channels", "split_channels"}
    epoch = next(r for r in reversed(records) if r["type"] == "epoch")
    from selfexpand import load_run
    model, _ = load_run(run_dir)
    convs = [n for n in model.order if isinstance(model.layers[n], ConvLayer)]
    assert set(convs) <= set(epoch["inactivity"])
    assert [model.layers[n].size for n in convs] > [4, 8]

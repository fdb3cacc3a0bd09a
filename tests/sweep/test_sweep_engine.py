"""The batched sweep engine: hand-written gradients equal autograd's, batched runs equal the same runs
one by one (float64, 1,000 steps, 1e-8), and equal runs of the library's ``Trainer``."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from selfexpand.data import load_dataset
from selfexpand.errors import ConfigError
from selfexpand.graph.size_nets import controller_mask_net, size_net_init, size_weight_net
from selfexpand.presets import build_method, resolve_config
from selfexpand.sweep import parse_grid, run_sweep
from selfexpand.sweep.engine import (BatchedSettings, BatchedState, forward, objective_and_gradients,
                                     size_losses, task_losses, train_batched)
from selfexpand.train.trainer import Trainer

F64 = torch.float64


def _full(value, n):
    return torch.full((n,), float(value), dtype=F64)


def _state(n_in, n_max, n_out, controls, seeds=None):
    seeds = seeds or list(range(len(controls)))
    values = [size_net_init(n_in, n_max, n_out, s, F64) for s in seeds]
    return BatchedState(*(torch.stack([v[k] for v in values]) for k in ("w_in", "b_hidden", "w_out", "b_out")),
                        torch.tensor(controls, dtype=F64))


def _settings(kind, task, n, reference=False, optimizer="gd"):
    if kind == "size-weight":
        return BatchedSettings(kind, task, optimizer, _full(1e-2, n), size_lambda=torch.linspace(0.05, 2, n, dtype=F64),
                               n_inf=torch.linspace(3, 6, n, dtype=F64), dn=torch.linspace(0.5, 2, n, dtype=F64))
    return BatchedSettings(kind, task, optimizer, _full(1e-2, n), size_weight=torch.linspace(0.1, 1, n, dtype=F64),
                           reference_defects=reference)


@pytest.mark.parametrize("kind, task, reference, n_in, n_out, controls", [
    ("size-weight", "regression", False, 1, 1, [0.0, 2.3, 4.71, 5.0, 8.6, -0.2]),
    ("size-weight", "regression", False, 3, 2, [1.5, 3.25]),
    ("size-weight", "classification", False, 2, 4, [2.7, 6.1, 0.4]),
    ("controller-mask", "classification", False, 2, 3, [1e-5, 0.3, 0.61, 1.0, 0.85]),
    ("controller-mask", "regression", False, 1, 1, [0.45, 0.77]),
    ("controller-mask", "classification", True, 2, 3, [0.3, 0.61]),
])
def test_hand_written_gradients_equal_autograd(kind, task, reference, n_in, n_out, controls):
    n = len(controls)
    state = _state(n_in, 7, n_out, controls)
    settings = _settings(kind, task, n, reference)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(13, n_in, generator=gen, dtype=F64)
    y = torch.randn(13, n_out, generator=gen, dtype=F64) if task == "regression" else \
        torch.randint(0, n_out, (13,), generator=gen)
    params = [t.clone().requires_grad_(True) for t in state.tensors()]
    tracked = BatchedState(*params)
    objective = task_losses(forward(tracked, settings, x), y, task) + size_losses(tracked, settings)
    expected = torch.autograd.grad(objective.sum(), params)
    got_objective, got = objective_and_gradients(state, settings, x, y)
    assert torch.allclose(got_objective, objective.detach(), rtol=1e-12, atol=1e-14)
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, rtol=1e-10, atol=1e-13)


def test_engine_control_gradient_matches_finite_difference():
    state = _state(1, 9, 1, [2.3, 0.61])
    data = load_dataset("bessel-sum")
    x, y = data.x_train.double(), data.y_train.double()
    for kind, r in (("size-weight", 0), ("controller-mask", 1)):
        settings = _settings(kind, "regression", 2)
        _, grads = objective_and_gradients(state, settings, x, y)
        task_grad = grads[4][r] - (2 * (settings.size_lambda[r] * (state.control[r] - settings.n_inf[r]))
                                   if kind == "size-weight" else 2 * settings.size_weight[r] * (state.control[r] - 1))
        h = 1e-6
        losses = []
        for sign in (1, -1):
            moved = BatchedState(*(t.clone() for t in state.tensors()))
            moved.control[r] += sign * h
            losses.append(float(task_losses(forward(moved, settings, x), y, "regression")[r]))
        assert float(task_grad) == pytest.approx((losses[0] - losses[1]) / (2 * h), rel=1e-6)


@pytest.mark.parametrize("method, dataset, grid, settings", [
    ("size-weight", "bessel-sum", ["lambda=0.1,1"], {}),
    ("controller-mask", "spirals", ["size_weight=0.32,1"], {"points": "15", "lr": "0.01"}),
])
def test_batched_sweep_equals_the_same_runs_one_by_one(method, dataset, grid, settings):
    """Must: float64, 1,000 steps, the same final losses to 1e-8."""
    kwargs = dict(settings=settings, epochs=1000, dtype=F64)
    parsed = parse_grid(grid, method)
    seeds = [3]
    batched = run_sweep(method, dataset, parsed, seeds, **kwargs)
    single = run_sweep(method, dataset, parsed, seeds, batched=False, **kwargs)
    assert len(batched.rows) == len(single.rows) == 4
    for a, b in zip(batched.rows, single.rows):
        assert {k: a[k] for k in ("seed", "start", *parsed)} == {k: b[k] for k in ("seed", "start", *parsed)}
        for key in ("train_loss", "test_loss", "test_metric", "final_control"):
            assert abs(a[key] - b[key]) <= 1e-8, (key, a, b)
        assert a["final_size"] == b["final_size"]
    # the runs differ: growing from fixed, and (growing) from grid point to grid point
    growing = [r["train_loss"] for r in batched.rows if r["start"] == "growing"]
    fixed = [r["train_loss"] for r in batched.rows if r["start"] == "fixed"]
    assert len(set(growing)) == len(growing) and not set(growing) & set(fixed)


def _double(data):
    return dataclasses.replace(data, **{k: getattr(data, k).double() if getattr(data, k).is_floating_point()
                                        else getattr(data, k) for k in ("x_train", "y_train", "x_val", "y_val",
                                                                        "x_test", "y_test")})


@pytest.mark.parametrize("method, dataset, options, lr", [
    ("size-weight", "bessel", {}, 1e-2),
    ("controller-mask", "spirals", {"points": 15}, 1e-2),
])
def test_sweep_runs_equal_library_trainer_runs(method, dataset, options, lr):
    """Run ``seed`` of a sweep is the run ``selfexpand train --seed seed`` makes (same values, same steps)."""
    steps = 150
    sweep = run_sweep(method, dataset, {}, [1], settings={**{k: str(v) for k, v in options.items()}, "lr": str(lr)},
                      epochs=steps, dtype=F64)
    data = _double(load_dataset(dataset, options=options))
    cfg = resolve_config(method, dataset if dataset in ("step-sine",) else "*", {"lr": lr})
    for row in sweep.rows:
        if method == "size-weight":
            n_start = cfg["n_inf"] if row["start"] == "fixed" else cfg["n_start"]
            net = size_weight_net(1, 1, n_start=n_start, size_lambda=cfg["lambda"], seed=row["seed"])
        else:
            c_start = 1.0 if row["start"] == "fixed" else cfg["c_start"]
            net = controller_mask_net(2, 3, c_start=c_start, seed=row["seed"])
        net = net.double()
        _exact_values(net, row["seed"], method)
        Trainer(build_method(method, cfg), epochs=steps, batch_size=cfg["batch_size"], lr=lr,
                optimizer=cfg["optimizer"]).fit(net, data)
        with torch.no_grad():
            loss = task_losses(net(data.x_train)[None], data.y_train, data.task)[0]
        assert abs(float(loss) - row["train_loss"]) <= 1e-10
        assert net.layers["h1"].modulator.live_count() == row["final_size"]


def _exact_values(net, seed, method):
    """The library builds in float32; put the float64 draws in so both sides start from the same values."""
    n_in, n_out = net.layers["input"].size, net.layers["output"].size
    values = size_net_init(n_in, net.layers["h1"].size, n_out, seed, F64)
    with torch.no_grad():
        net.connections["input_to_h1"].weight.copy_(values["w_in"])
        net.connections["h1_to_output"].weight.copy_(values["w_out"])
        net.layers["h1"].bias.copy_(values["b_hidden"])
        net.layers["output"].bias.copy_(values["b_out"])
        mod = net.layers["h1"].modulator
        param = mod.size if method == "size-weight" else mod.control
        param.copy_(torch.tensor(float(param), dtype=F64) if float(param) in (0.0, 1.0, 5.0) else
                    torch.tensor(1e-5, dtype=F64))


def test_from_nets_stacks_library_networks():
    nets = [size_weight_net(1, 1, n_start=s, seed=s) for s in (0, 1, 2)]
    state = BatchedState.from_nets(nets)
    x = torch.linspace(-1, 1, 9)[:, None]
    settings = BatchedSettings("size-weight", "regression", "gd", _full(1e-3, 3), size_lambda=_full(0.1, 3),
                               n_inf=_full(5, 3), dn=_full(1, 3))
    out = forward(state, settings, x)
    for r, net in enumerate(nets):
        assert torch.allclose(out[r], net(x), atol=1e-6)


def test_progress_and_trace():
    calls = []
    state = _state(1, 9, 1, [0.0, 5.0])
    data = load_dataset("bessel")
    result = train_batched(state, _settings("size-weight", "regression", 2), data.x_train, data.y_train,
                           data.x_test, data.y_test, 250, record_every=50, progress=calls.append, progress_every=100)
    assert calls == [100, 200, 250]
    assert result.control_trace.shape == (5, 2)
    assert float(result.control_trace[-1, 0]) > 0  # the size loss pulled N up from 0


@pytest.mark.parametrize("call, words", [
    (lambda: run_sweep("edge", "bessel", {}, 2), "sweep supports the methods"),
    (lambda: run_sweep("size-weight", "bessel", {"tau": [1.0]}, 2), "can vary"),
    (lambda: run_sweep("size-weight", "bessel", {}, 0), "seeds must be a positive integer"),
    (lambda: run_sweep("size-weight", "bessel", {}, [1, -2]), "seeds must be"),
    (lambda: run_sweep("size-weight", "bessel", {}, 2, starts=("sideways",)), "starts must be"),
    (lambda: run_sweep("size-weight", "bessel", {}, 2, settings={"optimizer": "sgd"}), "optimizer 'gd' or 'adam'"),
    (lambda: run_sweep("size-weight", "bessel", {}, 2, dtype=torch.int32), "dtype must be"),
    (lambda: run_sweep("size-weight", "bessel", {}, 2, settings={"nonsense": "1"}), "setting must be one of"),
    (lambda: parse_grid(["lambda"], "size-weight"), "KEY=V1,V2"),
    (lambda: parse_grid(["lambda=0.1,x"], "size-weight"), "must be numbers, got lambda='x'"),
    (lambda: parse_grid(["lambda=-1"], "size-weight"), "must be finite and > 0, got lambda='-1'"),
    (lambda: parse_grid(["lambda=1", "lambda=2"], "size-weight"), "given twice"),
    (lambda: parse_grid(["size_weight=1"], "size-weight"), "can vary"),
    (lambda: train_batched(_state(1, 3, 1, [0.0]), _settings("size-weight", "regression", 1), torch.zeros(2, 1),
                           torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2, 1), 0), "steps must be"),
])
def test_bad_sweep_inputs(call, words):
    with pytest.raises(ConfigError, match=words):
        call()


def test_grid_values_parse():
    assert parse_grid(["lambda=0.01,0.1,1", "n_inf=0,5"], "size-weight") == {"lambda": [0.01, 0.1, 1.0],
                                                                             "n_inf": [0.0, 5.0]}
    assert math.isclose(parse_grid(["lr=1e-3"], "controller-mask")["lr"][0], 1e-3)


def _with_control_input(state, seed=11):
    gen = torch.Generator().manual_seed(seed)
    w = torch.rand(state.b_hidden.shape, generator=gen, dtype=F64) * 2 - 1
    return BatchedState(*state.tensors(), w)


@pytest.mark.parametrize("kind, task, reference, n_in, n_out, controls", [
    ("size-weight", "regression", False, 1, 1, [0.0, 2.3, 5.0, 4.71]),
    ("controller-mask", "classification", False, 2, 3, [1e-5, 0.61, 1.0]),
    ("controller-mask", "classification", True, 2, 3, [0.3, 0.61]),
])
def test_control_input_gradients_equal_autograd(kind, task, reference, n_in, n_out, controls):
    state = _with_control_input(_state(n_in, 6, n_out, controls))
    settings = _settings(kind, task, len(controls), reference)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(11, n_in, generator=gen, dtype=F64)
    y = torch.randn(11, n_out, generator=gen, dtype=F64) if task == "regression" else \
        torch.randint(0, n_out, (11,), generator=gen)
    params = [t.clone().requires_grad_(True) for t in state.tensors()]
    tracked = BatchedState(*params)
    objective = task_losses(forward(tracked, settings, x), y, task) + size_losses(tracked, settings)
    expected = torch.autograd.grad(objective.sum(), params)
    got_objective, got = objective_and_gradients(state, settings, x, y)
    assert len(got) == 6
    assert torch.allclose(got_objective, objective.detach(), rtol=1e-12, atol=1e-14)
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, rtol=1e-10, atol=1e-13)


def test_control_input_sweep_batched_equals_one_by_one_and_changes_the_runs():
    kwargs = dict(epochs=300, dtype=F64)
    grid = {"lambda": [0.1, 1.0]}
    batched = run_sweep("size-weight", "bessel", grid, [2], control_input=True, **kwargs)
    single = run_sweep("size-weight", "bessel", grid, [2], control_input=True, batched=False, **kwargs)
    plain = run_sweep("size-weight", "bessel", grid, [2], **kwargs)
    for a, b, c in zip(batched.rows, single.rows, plain.rows):
        assert abs(a["train_loss"] - b["train_loss"]) <= 1e-8
        assert a["train_loss"] != c["train_loss"]


def _train(steps=1, settings=None, **kw):
    settings = settings or _settings("size-weight", "regression", 1)
    z = torch.zeros(2, 1)
    return lambda: train_batched(_state(1, 3, 1, [0.0]), settings, z, z, z, z, steps, **kw)


@pytest.mark.parametrize("call, words", [
    (_train(steps=True), "steps must be a positive integer, got steps=True"),
    (_train(record_every=-1), "record_every must be an integer >= 0, got record_every=-1"),
    (_train(progress=lambda k: None, progress_every=0), "progress_every must be a positive integer"),
    (_train(settings=dataclasses.replace(_settings("size-weight", "regression", 1), kind="size")),
     "kind must be one of 'size-weight', 'controller-mask', got kind='size'"),
    (_train(settings=dataclasses.replace(_settings("size-weight", "regression", 1), optimizer="sgd")),
     "optimizer must be one of 'gd', 'adam', got optimizer='sgd'"),
    (lambda: run_sweep("size-weight", "bessel", {}, True), "seeds must be"),
    (lambda: run_sweep("size-weight", "bessel", {}, []), "seeds must be a list of at least 1 integers >= 0"),
    (lambda: run_sweep("size-weight", "bessel", {}, [0, True]), "seeds must be"),
])
def test_bad_engine_and_seed_values_raise_config_error(call, words):
    with pytest.raises(ConfigError, match=words):
        call()


def test_seeds_may_be_any_iterable_of_seeds():
    from selfexpand.sweep.runner import _check_seeds

    assert _check_seeds(3) == [0, 1, 2] and _check_seeds((4, 1)) == [4, 1] and _check_seeds(range(2)) == [0, 1]

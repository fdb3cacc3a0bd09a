"""The synthetic tasks of ALGORITHMS.md §4 and dataset options (``--set arms=5``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import j0, j1, jv

from selfexpand.data import dataset_names, dataset_options, load_dataset, register_dataset
from selfexpand.errors import ConfigError

SYNTHETIC = ["bessel", "bessel-sum", "cubic", "quadratic", "gaussian-mixture", "step-sine", "spirals"]


def test_every_task_is_registered_with_options():
    for name in SYNTHETIC:
        assert name in dataset_names()
        assert "data_seed" in dataset_options(name)
    assert dataset_options("spirals")["arms"] == 3
    assert dataset_options("digits") == {}


@pytest.mark.parametrize("name, task, n_train, n_in, n_out", [
    ("bessel", "regression", 32, 1, 1), ("bessel-sum", "regression", 32, 1, 1), ("cubic", "regression", 32, 1, 1),
    ("quadratic", "regression", 32, 1, 1), ("gaussian-mixture", "regression", 64, 1, 1),
    ("step-sine", "classification", 40, 1, 2), ("spirals", "classification", 300, 2, 3),
])
def test_shapes_and_tasks(name, task, n_train, n_in, n_out):
    data = load_dataset(name)
    assert data.task == task and data.n_outputs == n_out and data.n_features == n_in
    assert data.x_train.shape == (n_train, n_in)
    assert data.x_val.shape == (n_train, n_in)  # the loader's own validation draw, not a split
    assert data.x_test.shape[0] in (256, 300)


@pytest.mark.parametrize("name", SYNTHETIC)
def test_deterministic_and_data_seed_changes_the_draw(name):
    a, b = load_dataset(name), load_dataset(name, seed=7)  # the split seed does not apply
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    c = load_dataset(name, options={"data_seed": 1})
    assert not torch.equal(a.x_train, c.x_train)
    assert torch.equal(a.x_test, c.x_test) or name == "spirals"  # function tasks test on a fixed grid


@pytest.mark.parametrize("name, fn", [
    ("bessel", lambda u: j0(u)),
    ("bessel-sum", lambda u: j0(u) + j1(u) + jv(2, u)),
    ("cubic", lambda u: 4 * (u / (2 * math.pi)) ** 3 - 3 * u / (2 * math.pi)),
    ("quadratic", lambda u: 2 * (u / (2 * math.pi)) ** 2 - 1),
])
def test_function_targets(name, fn):
    data = load_dataset(name)
    x = data.x_test[:, 0].double().numpy()
    assert x.min() == pytest.approx(-1) and x.max() == pytest.approx(1)  # [-2 pi, 2 pi] rescaled
    assert np.allclose(data.y_test[:, 0].numpy(), fn(2 * math.pi * x), atol=1e-6)
    assert np.all(np.abs(data.x_train.numpy()) <= 1)


def test_bessel_known_value():
    data = load_dataset("bessel")
    middle = int(torch.argmin(data.x_test.abs()))
    x = float(data.x_test[middle])
    assert float(data.y_test[middle]) == pytest.approx(j0(2 * math.pi * x), abs=1e-6)
    assert float(load_dataset("bessel").y_test.max()) == pytest.approx(1.0, abs=1e-3)  # J0(0) = 1


def test_step_sine_labels():
    data = load_dataset("step-sine")
    x = data.x_train[:, 0].double().numpy()
    expected = (np.sin(2 * math.pi * x) >= 0).astype(np.int64)
    assert np.array_equal(data.y_train.numpy(), expected)
    assert set(data.y_test.tolist()) == {0, 1}


@pytest.mark.parametrize("arms", [2, 3, 5, 7, 9])
def test_spirals_arms(arms):
    data = load_dataset("spirals", options={"arms": arms, "points": 50})
    assert data.n_outputs == arms and data.x_train.shape == (50 * arms, 2)
    assert torch.bincount(data.y_train).tolist() == [50] * arms
    radius = data.x_train.norm(dim=1)
    assert float(radius.max()) < 5 + 5 * 0.2 and float(radius.min()) < 0.5


def test_spirals_noise_zero_lies_on_the_arms():
    data = load_dataset("spirals", options={"arms": 4, "noise": 0.0, "points": 30})
    x = data.x_train.double()
    r = x.norm(dim=1)
    angle = torch.atan2(x[:, 1], x[:, 0])
    expected = r + 2 * math.pi * data.y_train.double() / 4
    assert torch.allclose(torch.remainder(angle - expected + math.pi, 2 * math.pi) - math.pi,
                          torch.zeros_like(r), atol=1e-5)


def test_options_accept_text_like_set():
    assert load_dataset("spirals", options={"arms": "5"}).n_outputs == 5
    assert load_dataset("spirals", options={"noise": "0", "points": "10"}).x_train.shape == (30, 2)
    assert load_dataset("bessel", options={"points": 8}).x_train.shape == (8, 1)


@pytest.mark.parametrize("name, options, words", [
    ("spirals", {"arm": 5}, "takes the options arms, data_seed, noise, points, got arm=5"),
    ("spirals", {"arms": "x"}, r"arms must be an integer \(like 3\), got arms='x'"),
    ("spirals", {"arms": 1}, "arms must be an integer >= 2, got arms=1"),
    ("spirals", {"arms": 2.5}, "arms must be an integer"),
    ("spirals", {"noise": -0.1}, "noise must be a number >= 0"),
    ("bessel", {"points": 0}, "points must be a positive integer, got points=0"),
    ("bessel", {"arms": 3}, "takes the options data_seed, points"),
    ("digits", {"arms": 3}, "takes the options none"),
])
def test_bad_options_name_the_rule_and_value(name, options, words):
    with pytest.raises(ConfigError, match=words):
        load_dataset(name, options=options)


def test_options_refused_for_files(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,y\n1,0\n2,1\n3,0\n4,1\n5,0\n6,1\n7,0\n8,1\n9,0\n10,1\n")
    with pytest.raises(ConfigError, match="named datasets only"):
        load_dataset(path, target="y", options={"arms": 3})


def test_a_loader_may_bring_its_own_validation_set(monkeypatch):
    from selfexpand.data import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # leave no test name behind
    monkeypatch.setattr(registry, "_OPTIONS", dict(registry._OPTIONS))

    def loader(data_dir=None, **kw):
        x = np.arange(10, dtype=float)[:, None]
        meta = {"task": "regression", "validation": (x[:3] + 100, x[:3, 0])}
        return x, x[:, 0], x[:4] - 100, x[:4, 0], meta

    register_dataset("own-validation-test", loader)
    data = load_dataset("own-validation-test")
    assert data.x_train.shape == (10, 1) and data.x_val.shape == (3, 1) and data.x_test.shape == (4, 1)
    assert float(data.x_val.min()) == 100


@pytest.mark.parametrize("name, options, words", [
    ("bessel", {"data_seed": -1}, "data_seed must be an integer >= 0, got data_seed=-1"),
    ("spirals", {"data_seed": -2}, "data_seed must be an integer >= 0, got data_seed=-2"),
    ("spirals", {"arms": True}, r"arms must be an integer \(like 3\), got arms=True"),
    ("spirals", {"noise": "nan"}, r"noise must be a finite number \(like 0.2\), got noise='nan'"),
])
def test_bad_options_raise_config_error(name, options, words):
    with pytest.raises(ConfigError, match=words):
        load_dataset(name, options=options)


def test_integral_text_is_an_integer_option_as_with_set():
    assert load_dataset("spirals", options={"arms": "4.0", "points": "1e1"}).x_train.shape == (40, 2)

"""The tasks of SENN's reference experiments (ALGORITHMS.md §3): ``moons`` and ``teacher-student``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfexpand.data import dataset_names, dataset_options, load_dataset
from selfexpand.data.senn_tasks import TEACHER_WIDTHS, teacher_network, teacher_outputs
from selfexpand.errors import ConfigError

SENN_TASKS = ["moons", "teacher-student"]


def test_registered_with_options():
    for name in SENN_TASKS:
        assert name in dataset_names()
    assert dataset_options("moons") == {"points": 200, "test_points": 500, "noise": 0.3, "data_seed": 0}
    assert dataset_options("teacher-student") == {"points": 50, "test_points": 1000, "noise": 0.0,
                                                  "data_seed": 0}


@pytest.mark.parametrize("name, task, n_train, n_test, n_in, n_out", [
    ("moons", "classification", 200, 500, 2, 2),
    ("teacher-student", "regression", 50, 1000, 1, 1),
])
def test_shapes_sizes_and_what_the_trainer_expects(name, task, n_train, n_test, n_in, n_out):
    data = load_dataset(name)
    assert data.task == task and data.n_outputs == n_out and data.n_features == n_in
    assert data.input_shape == (n_in,) and data.preprocessing["input_shape"] == [n_in]
    assert data.x_train.shape == (n_train, n_in) and data.x_val.shape == (n_train, n_in)  # own draw
    assert data.x_test.shape == (n_test, n_in)
    for x in (data.x_train, data.x_val, data.x_test):
        assert x.dtype == torch.float32 and torch.isfinite(x).all()
    if task == "classification":
        for y, n in ((data.y_train, n_train), (data.y_val, n_train), (data.y_test, n_test)):
            assert y.dtype == torch.int64 and y.shape == (n,) and set(y.tolist()) == {0, 1}
        assert data.preprocessing["class_labels"] == [0, 1]
    else:
        for y, n in ((data.y_train, n_train), (data.y_val, n_train), (data.y_test, n_test)):
            assert y.dtype == torch.float32 and y.shape == (n, 1) and torch.isfinite(y).all()
    assert data.preprocessing["n_outputs"] == n_out and data.preprocessing["source"] == name


@pytest.mark.parametrize("name", SENN_TASKS)
def test_deterministic_and_data_seed_changes_every_draw(name):
    a, b = load_dataset(name), load_dataset(name, seed=7, val_fraction=0.5)  # split settings do not apply
    for part in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, part), getattr(b, part)), part
    c = load_dataset(name, options={"data_seed": 1})
    for part in ("x_train", "x_val", "x_test"):
        assert not torch.equal(getattr(a, part), getattr(c, part)), part
    assert not torch.equal(a.x_train, a.x_val)  # the validation set is a separate draw


@pytest.mark.parametrize("name", SENN_TASKS)
def test_points_and_test_points_options(name):
    data = load_dataset(name, options={"points": 30, "test_points": "40"})  # text as from --set
    assert data.x_train.shape[0] == data.x_val.shape[0] == 30 and data.x_test.shape[0] == 40
    assert torch.equal(data.x_test, load_dataset(name, options={"points": 31, "test_points": 40}).x_test)


def test_moons_classes_balanced_and_shape():
    data = load_dataset("moons")
    for y in (data.y_train, data.y_val, data.y_test):
        counts = torch.bincount(y, minlength=2)
        assert abs(int(counts[0]) - int(counts[1])) <= 1
    x = data.x_train.double()
    assert -2.5 < float(x[:, 0].min()) and float(x[:, 0].max()) < 3.5  # make_moons spans [-1, 2] x [-0.5, 1]
    assert abs(float(x[data.y_train == 0, 1].mean()) - float(x[data.y_train == 1, 1].mean())) > 0.5


def test_moons_noise_option():
    clean = load_dataset("moons", options={"noise": 0})
    noisy = load_dataset("moons")
    very = load_dataset("moons", options={"noise": 1.0})
    assert not torch.equal(clean.x_train, noisy.x_train)
    # without noise every point lies on its half circle: radius 1 about (0, 0) or (1, 0.5)
    x, y = clean.x_train.double(), clean.y_train
    centre = torch.where(y[:, None] == 0, torch.zeros(2, dtype=torch.float64),
                         torch.tensor([1.0, 0.5], dtype=torch.float64))
    assert torch.allclose((x - centre).norm(dim=1), torch.ones(len(x), dtype=torch.float64), atol=1e-6)
    spread = [float(((d.x_train.double() - centre).norm(dim=1) - 1).abs().mean()) for d in (noisy, very)]
    assert 0.1 < spread[0] < spread[1]


def _linear_fit_residual(x: np.ndarray, y: np.ndarray) -> float:
    """The fraction of the variance of ``y`` a straight line in ``x`` leaves unexplained."""
    design = np.stack([x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float((y - design @ coef).var() / y.var())


def test_teacher_shape_and_standardised_output():
    layers = teacher_network(0)
    assert [w.shape for w, _ in layers] == [(o, i) for i, o in zip(TEACHER_WIDTHS, TEACHER_WIDTHS[1:])]
    assert [b.shape for _, b in layers] == [(o,) for o in TEACHER_WIDTHS[1:]]
    y = teacher_outputs(layers, np.linspace(-1, 1, 4001))
    assert abs(y.mean()) < 1e-9 and y.std() == pytest.approx(1.0, abs=1e-9)
    data = load_dataset("teacher-student")
    assert float(data.y_test.std()) == pytest.approx(1.0, abs=0.15)  # 1000 draws of x ~ U[-1, 1]
    assert np.all(np.abs(data.x_train.numpy()) <= 1) and np.all(np.abs(data.x_test.numpy()) <= 1)


def test_targets_are_the_teacher_and_noise_goes_to_train_and_val_only():
    clean = load_dataset("teacher-student")
    layers = teacher_network(0)
    for x, y in ((clean.x_train, clean.y_train), (clean.x_val, clean.y_val), (clean.x_test, clean.y_test)):
        expected = teacher_outputs(layers, x[:, 0].double().numpy())
        assert np.allclose(y[:, 0].numpy(), expected, atol=1e-5)
    noisy = load_dataset("teacher-student", options={"noise": 0.5})
    assert torch.equal(noisy.x_train, clean.x_train) and torch.equal(noisy.y_test, clean.y_test)
    for part in ("y_train", "y_val"):
        residual = (getattr(noisy, part) - getattr(clean, part)).double()
        assert 0.3 < float(residual.std()) < 0.7


@pytest.mark.parametrize("data_seed", [0, 1, 3])
def test_teacher_is_genuinely_nonlinear(data_seed):
    x = np.linspace(-1, 1, 2001)
    y = teacher_outputs(teacher_network(data_seed), x)
    assert _linear_fit_residual(x, y) > 0.03  # seed 0: 0.049 (an RMS misfit of 0.22 std), 1: 0.38, 3: 0.33
    data = load_dataset("teacher-student", options={"data_seed": data_seed})
    assert _linear_fit_residual(data.x_test[:, 0].double().numpy(), data.y_test[:, 0].double().numpy()) > 0.03


def test_teachers_differ_and_are_mostly_far_from_linear():
    x = np.linspace(-1, 1, 501)
    outputs = [teacher_outputs(teacher_network(s), x) for s in range(10)]
    assert not np.allclose(outputs[0], outputs[1])
    assert np.median([_linear_fit_residual(x, y) for y in outputs]) > 0.1


@pytest.mark.parametrize("name, options, words", [
    ("moons", {"noise": -0.1}, r"noise must be a number >= 0, got noise=-0.1"),
    ("moons", {"points": 0}, r"points must be a positive integer, got points=0"),
    ("moons", {"test_points": -3}, r"test_points must be a positive integer, got test_points=-3"),
    ("moons", {"arms": 3}, "takes the options data_seed, noise, points, test_points"),
    ("teacher-student", {"noise": float("nan")}, r"noise must be a finite number \(like 0.0\), got noise=nan"),
    ("teacher-student", {"data_seed": -1}, r"data_seed must be an integer >= 0, got data_seed=-1"),
    ("teacher-student", {"points": 2.5}, r"points must be an integer"),
])
def test_bad_options_name_the_rule_and_value(name, options, words):
    with pytest.raises(ConfigError, match=words):
        load_dataset(name, options=options)


def test_a_numpy_integer_seed_is_a_seed():
    for a, b in zip(teacher_network(np.int64(3)), teacher_network(3)):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ConfigError, match="data_seed must be an integer >= 0, got data_seed=True"):
        teacher_network(True)

"""The small tasks of SENN's reference experiments (ALGORITHMS.md §3, arXiv 2307.04526).

Generated from numbers alone, never downloaded, the same for the same options on every machine.
Like the synthetic tasks (``data/synthetic.py``), each task brings its own training, validation and
test sets: the validation set is a separate draw of as many points as the training set, so
``--val-fraction`` and the split seed do not apply; ``data_seed`` sets every draw. Options are passed
as ``load_dataset(name, options={...})`` or ``selfexpand train --set KEY=VALUE``. Features and
targets are returned as generated (``load_dataset`` adds no standardisation).

- ``moons``: scikit-learn's ``make_moons``, two classes, Gaussian noise ``noise`` (0.3) on both
  coordinates; ``points`` (200) training points, a separate validation draw of as many (200),
  ``test_points`` (500) test points. Every draw holds ``n // 2`` points of class 0 and the rest of
  class 1. Sizes and noise are the reference experiment's.
- ``teacher-student``: 1-D regression ``y = teacher(x)``, the teacher a random MLP
  ``1 -> 16 -> 16 -> 16 -> 16 -> 1`` (the reference's "teacher hidden 16x4") with tanh on the hidden
  layers and a linear output; every weight *and bias* of a layer with ``fan_in`` inputs is drawn
  ``N(0, 1) / sqrt(fan_in)``, then the output layer is rescaled so that the teacher's outputs over
  ``[-1, 1]`` (an evenly spaced grid of ``STANDARDIZE_GRID`` points) have mean 0 and standard
  deviation 1: the targets are standardised by the teacher, not by the sample (unscaled, this
  teacher's outputs vary by only a few hundredths). Inputs ``x ~ U[-1, 1]``: ``points`` (50) training points, a separate
  validation draw of as many (50), ``test_points`` (1000) test points (an i.i.d. draw too, not a
  grid). Optional Gaussian label noise of standard deviation ``noise`` (default 0, i.e. none) is
  added to the training and validation targets; the test targets are the teacher's clean outputs,
  so the test error measures how well the student recovers the teacher; ``noise`` is in units of
  the standardised targets' standard deviation.

The reference names the teacher's shape and the set sizes but not its input range, its bias
initialisation or whether its targets are scaled: ``U[-1, 1]``, the biases drawn like the weights
and the standardised output are this project's choices. Teachers differ in how nonlinear they are:
a straight line leaves about 5 % of the variance of ``data_seed`` 0's teacher unexplained, 12 % for
the median teacher over seeds.

Random streams: ``data_seed`` seeds a ``numpy.random.SeedSequence`` whose children draw the
teacher, the training set, the validation set and the test set independently, so changing
``points`` leaves the teacher and the test set as they were.
"""

from __future__ import annotations

import math

import numpy as np

from ..validators import integer_like, number, positive_int
from .registry import register_dataset

__all__ = ["TEACHER_WIDTHS", "STANDARDIZE_GRID", "teacher_network", "teacher_outputs"]

#: The teacher MLP's widths, input to output.
TEACHER_WIDTHS = (1, 16, 16, 16, 16, 1)
#: Points of the evenly spaced grid on ``[-1, 1]`` over which the teacher's output is standardised.
STANDARDIZE_GRID = 4001


def _streams(data_seed, n: int) -> list[np.random.Generator]:
    """``n`` independent generators derived from ``data_seed``."""
    data_seed = integer_like("data_seed", data_seed, 0)
    return [np.random.default_rng(s) for s in np.random.SeedSequence(data_seed).spawn(n)]


# ---------------------------------------------------------------------------------------- moons
def _moons(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_moons  # slow to import; only needed here

    seed = int(rng.integers(2 ** 31 - 1))
    return make_moons(n_samples=n, noise=noise, random_state=seed)


@register_dataset("moons", options={"points": 200, "test_points": 500, "noise": 0.3, "data_seed": 0})
def _load_moons(data_dir=None, *, points: int = 200, test_points: int = 500, noise: float = 0.3,
                data_seed: int = 0, **_kw) -> tuple:
    """Two moons (see module docstring): ``points`` training points, a separate validation draw of
    as many, ``test_points`` test points, noise ``noise``."""
    positive_int("points", points)
    positive_int("test_points", test_points)
    noise = number("noise", noise, 0)
    train_rng, val_rng, test_rng = _streams(data_seed, 3)
    x_train, y_train = _moons(points, noise, train_rng)
    x_val, y_val = _moons(points, noise, val_rng)
    x_test, y_test = _moons(test_points, noise, test_rng)
    meta = {"task": "classification", "n_outputs": 2, "class_labels": [0, 1],
            "validation": (x_val, y_val),
            "preprocessing": {"source": "moons", "input_shape": [2]}}
    return x_train, y_train, x_test, y_test, meta


# ------------------------------------------------------------------------------ teacher-student
def teacher_network(data_seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The teacher's ``(weight (n_out, n_in), bias (n_out,))`` per layer for ``data_seed``.

    Every entry of a layer with ``fan_in`` inputs is drawn ``N(0, 1) / sqrt(fan_in)``; the output
    layer is then rescaled so the outputs over an evenly spaced grid on ``[-1, 1]`` have mean 0 and
    standard deviation 1 (a teacher that is constant to 1e-12 is left unscaled).

    Raises:
        ConfigError: ``data_seed`` is not an integer >= 0.
    """
    rng = _streams(data_seed, 4)[0]
    layers = []
    for fan_in, fan_out in zip(TEACHER_WIDTHS, TEACHER_WIDTHS[1:]):
        scale = 1.0 / math.sqrt(fan_in)
        weight = rng.standard_normal((fan_out, fan_in)) * scale
        bias = rng.standard_normal(fan_out) * scale
        layers.append((weight, bias))
    y = teacher_outputs(layers, np.linspace(-1.0, 1.0, STANDARDIZE_GRID))
    mean, std = float(y.mean()), float(y.std())
    scale = 1.0 / std if std > 1e-12 else 1.0
    weight, bias = layers[-1]
    layers[-1] = (weight * scale, (bias - mean) * scale)
    return layers


def teacher_outputs(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """The teacher's outputs ``(N,)`` for inputs ``x`` ``(N,)``: tanh hidden layers, linear output."""
    h = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    for k, (weight, bias) in enumerate(layers):
        h = h @ weight.T + bias
        if k < len(layers) - 1:
            h = np.tanh(h)
    return h[:, 0]


@register_dataset("teacher-student", options={"points": 50, "test_points": 1000, "noise": 0.0,
                                              "data_seed": 0})
def _load_teacher_student(data_dir=None, *, points: int = 50, test_points: int = 1000,
                          noise: float = 0.0, data_seed: int = 0, **_kw) -> tuple:
    """1-D regression on a random tanh teacher MLP (see module docstring)."""
    positive_int("points", points)
    positive_int("test_points", test_points)
    noise = number("noise", noise, 0)
    layers = teacher_network(data_seed)
    _, train_rng, val_rng, test_rng = _streams(data_seed, 4)
    x_train = train_rng.uniform(-1.0, 1.0, size=points)
    x_val = val_rng.uniform(-1.0, 1.0, size=points)
    x_test = test_rng.uniform(-1.0, 1.0, size=test_points)
    # the label noise comes after the inputs in each stream: noise=0 and noise>0 share their inputs
    y_train = teacher_outputs(layers, x_train) + noise * train_rng.standard_normal(points)
    y_val = teacher_outputs(layers, x_val) + noise * val_rng.standard_normal(points)
    y_test = teacher_outputs(layers, x_test)
    meta = {"task": "regression", "validation": (x_val[:, None], y_val),
            "preprocessing": {"source": "teacher-student", "input_shape": [1]}}
    return x_train[:, None], y_train, x_test[:, None], y_test, meta

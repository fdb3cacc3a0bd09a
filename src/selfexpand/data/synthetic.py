"""The synthetic tasks of the size-by-gradient-descent paper (ALGORITHMS.md §4, arXiv 2501.18012).

Generated from numbers alone, never downloaded, the same for the same options on every machine.
Every task has its own training, validation and test sets (the validation set is a separate draw,
so ``--val-fraction`` and the split seed do not apply); ``data_seed`` sets the draws. Options are
passed as ``load_dataset(name, options={...})`` or ``selfexpand train --set KEY=VALUE``.

Regression on ``x ~ U[-1, 1]``, ``points`` training points (default 32), as many validation points
(another draw), 256 evenly spaced test points:

- ``bessel``: ``J0(2 pi x)``, i.e. ``J0`` on ``[-2 pi, 2 pi]`` rescaled to ``[-1, 1]``;
- ``bessel-sum``: ``J0 + J1 + J2`` at ``2 pi x``;
- ``cubic``: ``4 x^3 - 3 x`` (Chebyshev ``T3``, range ``[-1, 1]``);
- ``quadratic``: ``2 x^2 - 1`` (Chebyshev ``T2``);
- ``gaussian-mixture``: three Gaussian bumps (centres -0.5, 0.1, 0.6; widths 0.15, 0.2, 0.1;
  heights 1, -0.7, 0.8), 64 training points by default.

Classification:

- ``step-sine``: ``floor(1 + sin 2 pi x)`` on ``x ~ U[-1, 1]``: classes 0 and 1 (the value 2, at
  ``sin = 1`` exactly, is folded into 1); 40 training points, as many validation, 256 test points;
- ``spirals``: a 2-D point's arm ``0..arms-1`` (``arms`` 3 by default); radius ``r ~ U[0, 5]``, angle
  ``r + 2 pi k / arms``, Gaussian noise ``noise`` (0.2) on both coordinates; ``points`` (100) per arm
  in each of the training, validation and test sets.

The choice of polynomials, of the mixture and of the spiral's turn rate is this project's (the paper
names the task families, not these constants).
"""

from __future__ import annotations

import math

import numpy as np

from ..validators import integer, integer_like, number, positive_int
from .registry import register_dataset

__all__ = ["FUNCTION_TASKS", "TEST_POINTS"]

TEST_POINTS = 256

_MIXTURE = ((-0.5, 0.15, 1.0), (0.1, 0.2, -0.7), (0.6, 0.1, 0.8))


def _bessel(x):
    from scipy.special import j0

    return j0(2 * math.pi * x)


def _bessel_sum(x):
    from scipy.special import j0, j1, jv

    u = 2 * math.pi * x
    return j0(u) + j1(u) + jv(2, u)


def _mixture(x):
    return sum(h * np.exp(-((x - c) ** 2) / (2 * w ** 2)) for c, w, h in _MIXTURE)


FUNCTION_TASKS = {
    "bessel": _bessel,
    "bessel-sum": _bessel_sum,
    "cubic": lambda x: 4 * x ** 3 - 3 * x,
    "quadratic": lambda x: 2 * x ** 2 - 1,
    "gaussian-mixture": _mixture,
}


def _inputs(points: int, data_seed: int):
    """Training and validation inputs ``U[-1, 1]`` (two draws), test inputs evenly spaced."""
    rng = np.random.default_rng(integer_like("data_seed", data_seed, 0))
    x_train = rng.uniform(-1.0, 1.0, size=points)
    x_val = rng.uniform(-1.0, 1.0, size=points)
    x_test = np.linspace(-1.0, 1.0, TEST_POINTS)
    return x_train, x_val, x_test


def _function_loader(name: str, fn):
    def load(data_dir=None, *, points: int, data_seed: int = 0, **_kw) -> tuple:
        positive_int("points", points)
        x_train, x_val, x_test = _inputs(points, data_seed)
        meta = {"task": "regression", "validation": (x_val[:, None], fn(x_val)),
                "preprocessing": {"source": name, "input_shape": [1]}}
        return x_train[:, None], fn(x_train), x_test[:, None], fn(x_test), meta

    load.__doc__ = f"The synthetic regression task {name!r} (see module docstring)."
    return load


for _name, _fn in FUNCTION_TASKS.items():
    register_dataset(_name, _function_loader(_name, _fn),
                     options={"points": 64 if _name == "gaussian-mixture" else 32, "data_seed": 0})


def _step_sine(x):
    return np.minimum(np.floor(1 + np.sin(2 * math.pi * x)), 1).astype(np.int64)


@register_dataset("step-sine", options={"points": 40, "data_seed": 0})
def _load_step_sine(data_dir=None, *, points: int = 40, data_seed: int = 0, **_kw) -> tuple:
    """``floor(1 + sin 2 pi x)`` on ``[-1, 1]`` as two classes (see module docstring)."""
    positive_int("points", points)
    x_train, x_val, x_test = _inputs(points, data_seed)
    meta = {"task": "classification", "n_outputs": 2, "class_labels": [0, 1],
            "validation": (x_val[:, None], _step_sine(x_val)),
            "preprocessing": {"source": "step-sine", "input_shape": [1]}}
    return x_train[:, None], _step_sine(x_train), x_test[:, None], _step_sine(x_test), meta


def spiral_points(arms: int, per_arm: int, noise: float, rng: np.random.Generator):
    """``arms`` noisy spiral arms of ``per_arm`` points each: ``(x (arms * per_arm, 2), y)``."""
    radius = rng.uniform(0.0, 5.0, size=(arms, per_arm))
    angle = radius + 2 * math.pi * np.arange(arms)[:, None] / arms
    xy = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1).reshape(-1, 2)
    xy = xy + rng.normal(0.0, noise, size=xy.shape)
    return xy, np.repeat(np.arange(arms), per_arm)


@register_dataset("spirals", options={"arms": 3, "points": 100, "noise": 0.2, "data_seed": 0})
def _load_spirals(data_dir=None, *, arms: int = 3, points: int = 100, noise: float = 0.2,
                  data_seed: int = 0, **_kw) -> tuple:
    """Spirals with ``arms`` arms, ``points`` points per arm in each split (see module docstring)."""
    integer("arms", arms, 2)
    positive_int("points", points)
    noise = number("noise", noise, 0)
    rng = np.random.default_rng(integer_like("data_seed", data_seed, 0))
    x_train, y_train = spiral_points(arms, points, noise, rng)
    x_val, y_val = spiral_points(arms, points, noise, rng)
    x_test, y_test = spiral_points(arms, points, noise, rng)
    meta = {"task": "classification", "n_outputs": arms, "class_labels": list(range(arms)),
            "validation": (x_val, y_val),
            "preprocessing": {"source": "spirals", "input_shape": [2]}}
    return x_train, y_train, x_test, y_test, meta

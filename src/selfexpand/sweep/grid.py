"""The sweep grid: ``--grid lambda=0.01,0.1,1`` and which settings a batched sweep may vary.

A batched sweep varies only what can differ from run to run inside one stacked computation: the
learning rate and the size-loss settings. Everything else (``n_max``, the optimizer, the epochs) is
shared by every run of one sweep and comes from the method's preset and ``--set``.
"""

from __future__ import annotations

import itertools
import math

from ..errors import ConfigError

__all__ = ["GRID_KEYS", "parse_grid", "grid_points"]

# method -> the settings a sweep may vary per run
GRID_KEYS = {
    "size-weight": ("lambda", "n_inf", "dn", "lr"),
    "controller-mask": ("size_weight", "lr"),
    "controller-mask-reference": ("size_weight", "lr"),
}


def parse_grid(items: list[str], method: str) -> dict[str, list[float]]:
    """``["lambda=0.01,0.1,1", "lr=1e-3,1e-2"]`` -> ``{"lambda": [0.01, 0.1, 1.0], "lr": [...]}``.

    Raises:
        ConfigError: a method without a batched sweep, an item not ``KEY=V1,V2,...``, a key the
            method's sweep cannot vary, a repeated key, or a value that is not a finite number
            (every value must also be > 0, except ``n_inf`` which must be >= 0).
    """
    if method not in GRID_KEYS:
        raise ConfigError(f"sweep supports the methods {sorted(GRID_KEYS)}, got method={method!r}")
    grid: dict[str, list[float]] = {}
    for item in items:
        key, sep, values = str(item).partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ConfigError(f"grid items take KEY=V1,V2,..., got {item!r}")
        if key not in GRID_KEYS[method]:
            raise ConfigError(f"a {method} sweep can vary {list(GRID_KEYS[method])}, got {key!r}")
        if key in grid:
            raise ConfigError(f"grid key {key!r} is given twice, got {item!r}")
        parsed = []
        for text in values.split(","):
            try:
                value = float(text)
            except ValueError:
                raise ConfigError(f"grid values must be numbers, got {key}={text.strip()!r}") from None
            low_ok = value >= 0 if key == "n_inf" else value > 0
            if not math.isfinite(value) or not low_ok:
                rule = ">= 0" if key == "n_inf" else "> 0"
                raise ConfigError(f"grid values of {key} must be finite and {rule}, got {key}={text.strip()!r}")
            parsed.append(value)
        grid[key] = parsed
    return grid


def grid_points(grid: dict[str, list[float]]) -> list[dict[str, float]]:
    """Every combination of the grid's values, in order (one empty point for an empty grid)."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]

"""Search spaces: the values ``selfexpand search`` may try for a setting, declared next to its default.

A setting declares its space with ``setting(rule, default, help, space=...)``
(:mod:`selfexpand.settings`)::

    lr: float = setting(Number(0, low_open=True), 1e-3, "learning rate", space=LogFloat(1e-4, 1e-1))

``Float(low, high)`` and ``LogFloat(low, high)`` (``low > 0``; sampled on a log scale) for real
numbers, ``Int(low, high, log=False)`` for integers, ``Categorical([...])`` for a few values (numbers,
text, booleans, None, or lists such as ``[8, 12]``, which Optuna holds as their JSON text). A space
holds values its setting's rule accepts and includes its default (``tests/search`` checks both for
every declared space). A method (``selfexpand.presets.Preset.space``) may narrow a space or fix a
setting (``None``: not searched). :meth:`Space.including` widens a space to hold the value a method's
row gives, so a search can always try the method's own defaults.

Each space asks an Optuna trial for a value (:meth:`Space.suggest`) and can draw one without Optuna
(:meth:`Space.sample`, for tests). Imports neither torch nor Optuna.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any, Sequence

from .errors import ConfigError

__all__ = ["Space", "Float", "LogFloat", "Int", "Categorical", "check_space", "param_value"]

_PLAIN = (type(None), bool, int, float, str)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Space:
    """Base of the spaces: frozen dataclasses with ``suggest``, ``sample``, ``contains``, ``including``
    and ``describe``."""

    def suggest(self, trial, name: str):  # pragma: no cover - abstract
        """The value the Optuna ``trial`` suggests for the parameter ``name``."""
        raise NotImplementedError

    def sample(self, rng: random.Random):  # pragma: no cover - abstract
        """A value drawn from ``rng`` (uniformly over the space, on its scale)."""
        raise NotImplementedError

    def contains(self, value) -> bool:  # pragma: no cover - abstract
        """Whether ``value`` is in the space."""
        raise NotImplementedError

    def including(self, value) -> "Space | None":  # pragma: no cover - abstract
        """This space widened to hold ``value`` (itself when it does already); None when no space of
        this kind can hold it (a None in a range)."""
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        """The space in words (``log-uniform in [0.0001, 0.1]``)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Float(Space):
    """A real number in ``[low, high]``, uniform (``log``: uniform in its logarithm, ``low > 0``)."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self):
        if not (_is_number(self.low) and _is_number(self.high) and self.low < self.high):
            raise ConfigError(f"a Float space needs finite numbers low < high, got low={self.low!r}, "
                              f"high={self.high!r}")
        if self.log and self.low <= 0:
            raise ConfigError(f"a log-scale space needs low > 0, got low={self.low!r}")

    def suggest(self, trial, name: str) -> float:
        return float(trial.suggest_float(name, float(self.low), float(self.high), log=self.log))

    def sample(self, rng: random.Random) -> float:
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def contains(self, value) -> bool:
        return _is_number(value) and self.low <= value <= self.high

    def including(self, value):
        if self.contains(value):
            return self
        if not _is_number(value) or (self.log and value <= 0):
            return None
        return type(self)(min(self.low, float(value)), max(self.high, float(value)), self.log)

    def describe(self) -> str:
        return f"{'log-uniform' if self.log else 'uniform'} in [{self.low:g}, {self.high:g}]"


def LogFloat(low: float, high: float) -> Float:  # noqa: N802 - reads as a space, like Float
    """A real number in ``[low, high]`` on a log scale (``low > 0``)."""
    return Float(low, high, log=True)


@dataclass(frozen=True)
class Int(Space):
    """An integer in ``[low, high]`` (``log``: uniform in its logarithm, ``low >= 1``)."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self):
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high))
        if not ints or self.low >= self.high:
            raise ConfigError(f"an Int space needs integers low < high, got low={self.low!r}, high={self.high!r}")
        if self.log and self.low < 1:
            raise ConfigError(f"a log-scale Int space needs low >= 1, got low={self.low!r}")

    def suggest(self, trial, name: str) -> int:
        return int(trial.suggest_int(name, self.low, self.high, log=self.log))

    def sample(self, rng: random.Random) -> int:
        if self.log:
            value = int(round(math.exp(rng.uniform(math.log(self.low), math.log(self.high)))))
            return min(self.high, max(self.low, value))
        return rng.randint(self.low, self.high)

    def contains(self, value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high

    def including(self, value):
        if self.contains(value):
            return self
        if not isinstance(value, int) or isinstance(value, bool) or (self.log and value < 1):
            return None
        return Int(min(self.low, value), max(self.high, value), self.log)

    def describe(self) -> str:
        return f"integers in [{self.low}, {self.high}]{' (log scale)' if self.log else ''}"


def _key(value) -> str:
    """A value as Optuna holds a categorical choice: itself when plain, else its JSON text."""
    return json.dumps(value)


@dataclass(frozen=True)
class Categorical(Space):
    """One of ``options`` (compared with their type, as the rules do: ``1`` is not ``True``). Lists
    (``[8, 12]``) are offered to Optuna as their JSON text and given back as lists."""

    options: tuple

    def __init__(self, options: Sequence):
        options = tuple(list(o) if isinstance(o, (list, tuple)) else o for o in options)
        if len(options) < 1:
            raise ConfigError("a Categorical space needs at least one option")
        for option in options:
            if not isinstance(option, (list, *_PLAIN)):
                raise ConfigError(f"a Categorical option must be a number, text, a boolean, None or a list, "
                                  f"got {option!r}")
        if len({_key(o) for o in options}) != len(options):
            raise ConfigError(f"a Categorical space lists an option twice: {list(options)}")
        object.__setattr__(self, "options", options)

    def __hash__(self):
        return hash(tuple(_key(o) for o in self.options))

    def _encoded(self) -> bool:
        return any(isinstance(o, list) for o in self.options)

    def suggest(self, trial, name: str):
        if not self._encoded():
            return trial.suggest_categorical(name, list(self.options))
        text = trial.suggest_categorical(name, [_key(o) for o in self.options])
        return json.loads(text)

    def to_param(self, value):
        """``value`` as Optuna's parameter holds it (a list as its JSON text)."""
        return _key(value) if self._encoded() else value

    def sample(self, rng: random.Random):
        choice = rng.choice(self.options)
        return list(choice) if isinstance(choice, list) else choice

    def contains(self, value) -> bool:
        if isinstance(value, tuple):
            value = list(value)
        return any(type(o) is type(value) and o == value for o in self.options)

    def including(self, value):
        if self.contains(value):
            return self
        if not isinstance(value, (list, tuple, *_PLAIN)):
            return None
        return Categorical([*self.options, value])

    def describe(self) -> str:
        return "one of " + ", ".join(_key(o) for o in self.options)


def check_space(name: str, space, default, rule=None) -> None:
    """Refuse a declaration whose space is no :class:`Space` or leaves out its default (a declared
    default ``None`` may stay out of a numeric range: the method's row gives the value searched
    around), or one that holds a bound its rule refuses (the bounds of a range, each option).

    Raises:
        ConfigError: naming the setting.
    """
    if not isinstance(space, Space):
        raise ConfigError(f"setting {name!r}: space must be a Float, LogFloat, Int or Categorical, got {space!r}")
    if default is not None and not space.contains(default):
        raise ConfigError(f"setting {name!r}: its space ({space.describe()}) must include its default {default!r}")
    if rule is None:
        return
    values = list(space.options) if isinstance(space, Categorical) else [space.low, space.high]
    for value in values:
        ok, _ = rule.accept(value)
        if not ok:
            raise ConfigError(f"setting {name!r}: its space holds {value!r}, which its rule refuses "
                              f"({rule.describe()})")


def param_value(space: Space, value: Any):
    """``value`` as the Optuna parameter of ``space`` holds it (for enqueuing a method's defaults)."""
    return space.to_param(value) if isinstance(space, Categorical) else value

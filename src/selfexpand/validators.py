"""Validators: every value a user gives is checked here, with a message that states the rule and
echoes the value (``tau must be a number in [0, 1), got tau=1.5``), raising :class:`ConfigError`.

A *rule* checks one value and returns it normalised (an ``int`` as a ``float`` where a number is
wanted, a single integer as a one-element list): ``Integer``,
``Number``, ``Choice``, ``Boolean``, ``IntegerList``, ``Text``, ``Optional``. ``rule.parse(name,
text)`` reads a value typed on the command line (``--set key=value``: YAML, so ``1e-3``, ``[8, 8]``,
``true`` and ``null`` work; there an integral number such as ``1e3`` is taken as an integer) before
checking it. Setting declarations (``selfexpand.settings``) hold
a rule each; the helpers ``positive_int``, ``integer``, ``number``, ``one_of`` and ``boolean`` serve
every other place a user's value enters (``integer_like`` also takes NumPy integers, ``integer_list``
any iterable). A ``bool`` is never accepted as a number or a size.

Imports nothing of the package but its errors (and no torch).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable

from .errors import ConfigError

__all__ = ["Rule", "Integer", "Number", "Choice", "Boolean", "IntegerList", "Text", "Optional",
           "parse_text", "positive_int", "integer", "integer_like", "integer_list", "number", "one_of", "boolean"]


def parse_text(text: str) -> Any:
    """A value typed on the command line: YAML (``3``, ``1e-3``, ``[8, 8]``, ``true``, ``null``), or the
    text itself when it is not valid YAML. YAML 1.1 reads ``1e-3`` as text: such text that is a
    float literal becomes a float."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "+inf") else value
        except ValueError:
            return value
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bound(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class Rule:
    """One check: ``rule(name, value)`` returns the normalised value or raises :class:`ConfigError`."""

    def __call__(self, name: str, value):
        ok, normalised = self.accept(value)
        if not ok:
            raise ConfigError(f"{name} must be {self.describe()}, got {name}={value!r}")
        return normalised

    def accept(self, value) -> tuple[bool, Any]:  # pragma: no cover - abstract
        """``(True, normalised)`` for a good value, ``(False, None)`` otherwise."""
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        """The rule in words, to follow "must be" (``a positive integer``)."""
        raise NotImplementedError

    def parse(self, name: str, text):
        """A value typed on the command line (see :func:`parse_text`), checked."""
        return self(name, parse_text(text) if isinstance(text, str) else text)


class Integer(Rule):
    """An integer in ``[low, high]`` (either bound optional). On the command line an integral number
    (``3.0``, ``1e3``) is taken; from Python a float is refused."""

    def __init__(self, low: int | None = None, high: int | None = None):
        self.low, self.high = low, high

    def parse(self, name: str, text):
        value = parse_text(text) if isinstance(text, str) else text
        if isinstance(text, str) and isinstance(value, float) and value.is_integer():
            value = int(value)
        return self(name, value)

    def accept(self, value):
        if not isinstance(value, int) or isinstance(value, bool):
            return False, None
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            return False, None
        return True, value

    def describe(self) -> str:
        if self.low == 1 and self.high is None:
            return "a positive integer"
        if self.high is None:
            return "an integer" if self.low is None else f"an integer >= {self.low}"
        if self.low is None:
            return f"an integer <= {self.high}"
        return f"an integer in [{self.low}, {self.high}]"


class Number(Rule):
    """A finite real number between ``low`` and ``high`` (each bound optional, closed unless
    ``low_open`` / ``high_open``); returned as a float. NaN and infinities are refused."""

    def __init__(self, low: float | None = None, high: float | None = None, *, low_open: bool = False,
                 high_open: bool = False):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def accept(self, value):
        if not _is_number(value) or not math.isfinite(value):
            return False, None
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False, None
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return False, None
        return True, float(value)

    def describe(self) -> str:
        low, high = self.low, self.high
        if low is not None and high is not None:
            return (f"a number in {'(' if self.low_open else '['}{_bound(low)}, {_bound(high)}"
                    f"{')' if self.high_open else ']'}")
        if low is not None:
            return f"a number {'>' if self.low_open else '>='} {_bound(low)}"
        if high is not None:
            return f"a number {'<' if self.high_open else '<='} {_bound(high)}"
        return "a finite number"


class Choice(Rule):
    """One of ``options`` (compared with their type: ``1`` is not ``True``)."""

    def __init__(self, *options):
        self.options = tuple(options)

    def accept(self, value):
        for option in self.options:
            if type(option) is type(value) and option == value:
                return True, value
        return False, None

    def describe(self) -> str:
        return "one of " + ", ".join(_show(o) for o in self.options)


def _show(option) -> str:
    return "true" if option is True else "false" if option is False else repr(option)


class Boolean(Choice):
    """``True`` or ``False``."""

    def __init__(self):
        super().__init__(True, False)

    def describe(self) -> str:
        return "true or false"


class IntegerList(Rule):
    """A list of integers, each ``>= low``, at least ``min_length`` of them; a single integer is
    read as a list of one."""

    def __init__(self, low: int = 1, *, min_length: int = 0):
        self.item, self.min_length = Integer(low), min_length

    def accept(self, value):
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)) or len(value) < self.min_length:
            return False, None
        items = [self.item.accept(v) for v in value]
        if not all(ok for ok, _ in items):
            return False, None
        return True, [v for _, v in items]

    def describe(self) -> str:
        length = f"at least {self.min_length} " if self.min_length else ""
        low = self.item.low
        kind = "positive integers" if low == 1 else f"integers >= {low}"
        return f"a list of {length}{kind}"


class Text(Rule):
    """Any non-empty string (a name checked later against a registry)."""

    def accept(self, value):
        return (True, value) if isinstance(value, str) and value.strip() else (False, None)

    def describe(self) -> str:
        return "a non-empty name"


class Optional(Rule):
    """``None`` (``null`` on the command line) or a value of ``rule``."""

    def __init__(self, rule: Rule):
        self.rule = rule

    def accept(self, value):
        return (True, None) if value is None else self.rule.accept(value)

    def describe(self) -> str:
        return f"{self.rule.describe()} or null"


# ---------------------------------------------------------------------- one-line helpers
def positive_int(name: str, value) -> int:
    """``value`` if it is an integer >= 1 (never a bool)."""
    return Integer(1)(name, value)


def integer(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """``value`` if it is an integer in ``[low, high]``."""
    return Integer(low, high)(name, value)


def integer_like(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer in ``[low, high]``, a NumPy integer included (a
    seed read from an array); never a bool. The message echoes the value as given."""
    rule = Integer(low, high)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and rule.accept(int(value))[0]:
        return int(value)
    raise ConfigError(f"{name} must be {rule.describe()}, got {name}={value!r}")


def integer_list(name: str, value, low: int = 1, *, min_length: int = 0) -> list[int]:
    """``value`` as a list of integers, each ``>= low``, at least ``min_length`` of them: a list, a
    tuple or another iterable (not a string), or a single integer (a list of one)."""
    if not isinstance(value, (list, tuple, str, bytes, int)) and hasattr(value, "__iter__"):
        value = list(value)
    return IntegerList(low, min_length=min_length)(name, value)


def number(name: str, value, low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> float:
    """``value`` as a float if it is a finite number in the interval."""
    return Number(low, high, low_open=low_open, high_open=high_open)(name, value)


def one_of(name: str, value, options: Iterable):
    """``value`` if it is one of ``options``."""
    return Choice(*options)(name, value)


def boolean(name: str, value) -> bool:
    """``value`` if it is ``True`` or ``False``."""
    return Boolean()(name, value)


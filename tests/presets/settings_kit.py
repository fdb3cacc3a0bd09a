"""Values a declared setting takes or refuses, derived from its rule (shared by the presets and CLI
tests): another valid value than the one held, and a value the rule refuses."""

from __future__ import annotations

from selfexpand.validators import Boolean, Choice, Integer, IntegerList, Number, Optional, Text

NUMERIC = (Integer, Number, IntegerList)


def is_numeric(rule) -> bool:
    """Whether ``rule`` takes numbers (an optional number included)."""
    return isinstance(rule.rule if isinstance(rule, Optional) else rule, NUMERIC)


def another(rule, value, *, lower: bool = False):
    """A valid value of ``rule`` different from ``value`` (``lower``: an integer below it if valid)."""
    if isinstance(rule, Optional):
        return another(rule.rule, value, lower=lower)
    if isinstance(rule, Boolean):
        return not value
    if isinstance(rule, Choice):
        return next(o for o in rule.options if not (type(o) is type(value) and o == value))
    if isinstance(rule, Integer):
        low = rule.low if rule.low is not None else 0
        if lower and value is not None and value - 1 >= low:
            return value - 1
        new = (value if value is not None else low) + 1
        return new if rule.high is None or new <= rule.high else low
    if isinstance(rule, Number):
        low, high = rule.low, rule.high
        if low is not None and high is not None:
            mid = (low + high) / 2
            return mid if value != mid else (low + mid) / 2
        return 0.5 if value in (None, 0.0) else value * 2 if value > 0 else value / 2
    if isinstance(rule, IntegerList):
        items = list(value or [rule.item.low + 1])
        return items + [items[-1]]
    if isinstance(rule, Text):
        return "tanh" if value != "tanh" else "relu"
    raise AssertionError(f"no other value for {rule!r}")


def refused(rule) -> str:
    """Command-line text that ``rule`` refuses: a number out of its range where it has one."""
    if isinstance(rule, Optional):
        return refused(rule.rule)
    if isinstance(rule, Integer):
        return str(rule.low - 1) if rule.low is not None else str(rule.high + 1) if rule.high is not None else "1.5"
    if isinstance(rule, Number):
        if rule.low is not None:
            return str(rule.low if rule.low_open else rule.low - 1)
        if rule.high is not None:
            return str(rule.high if rule.high_open else rule.high + 1)
        return "nan"
    if isinstance(rule, IntegerList):
        return f"[{rule.item.low - 1}]"
    raise AssertionError(f"no refused value for {rule!r}")

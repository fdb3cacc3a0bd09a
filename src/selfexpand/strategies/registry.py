"""Parts by name: the built-in triggers, selectors, initializers and helpers, and your own.

``@register_part`` on a part class makes it nameable (``--trigger NAME``, a method's row, a run's
``config.yaml``): a run stores the names of its parts, and ``resume`` rebuilds them from this
registry; a run naming a part that is not registered (a custom part whose module was not imported)
is refused with the name. The built-in parts register when their package is imported, and
``selfexpand.strategies`` imports them all.
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import GROWS, GrowthPart

__all__ = ["PART_KINDS", "register_part", "part_class", "part_names"]

PART_KINDS = ("trigger", "selector", "initializer", "helper")

_PARTS: dict[str, dict[str, type]] = {kind: {} for kind in PART_KINDS}


def register_part(cls: type, *, replace: bool = False) -> type:
    """Class decorator: register a part class under its ``name`` and ``kind``.

    Raises:
        ConfigError: not a :class:`GrowthPart`, no ``name``, an unknown ``grows``, or a name already
            taken by another class (``replace=True`` allows it).
    """
    if not (isinstance(cls, type) and issubclass(cls, GrowthPart)):
        raise ConfigError(f"register_part takes a GrowthPart subclass, got {cls!r}")
    name, kind = getattr(cls, "name", ""), cls.kind
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"part class {cls.__name__} needs a class attribute name = '...' to be registered")
    if kind not in _PARTS:
        raise ConfigError(f"part kind must be one of {list(PART_KINDS)}, got {cls.__name__}.kind={kind!r}")
    if getattr(cls, "grows", "units") not in GROWS:
        raise ConfigError(f"grows must be one of {list(GROWS)}, got {cls.__name__}.grows={cls.grows!r}")
    taken = _PARTS[kind].get(name)
    if taken is not None and taken is not cls and not replace:
        raise ConfigError(f"{kind} {name!r} is already registered ({taken.__module__}.{taken.__qualname__}); "
                          f"pass replace=True to replace it")
    _PARTS[kind][name] = cls
    return cls


def part_names(kind: str) -> list[str]:
    """The registered names of one kind, sorted."""
    if kind not in _PARTS:
        raise ConfigError(f"part kind must be one of {list(PART_KINDS)}, got {kind!r}")
    return sorted(_PARTS[kind])


def part_class(kind: str, name: str) -> type:
    """The part class registered as ``name``.

    Raises:
        ConfigError: an unknown name (the message lists the registered ones).
    """
    names = part_names(kind)
    if name not in _PARTS[kind]:
        raise ConfigError(f"{kind} must be one of {names}, got {kind}={name!r} (a part of your own must be "
                          f"registered with selfexpand.strategies.register_part before the run is built or resumed)")
    return _PARTS[kind][name]

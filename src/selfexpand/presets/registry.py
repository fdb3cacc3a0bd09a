"""The methods by name: every built-in preset, and your own (:func:`register_method`).

Plain data, no torch: listing the methods or reading a row imports nothing heavy.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..validators import one_of
from . import baselines, edge, senn, size, swe
from .preset import Preset

__all__ = ["register_method", "method_names", "get_preset"]

_METHODS: dict[str, Preset] = {p.name: p for family in (edge, swe, baselines, size, senn) for p in family.PRESETS}


def register_method(preset: Preset, *, replace: bool = False) -> Preset:
    """Make ``preset`` a method (``--method NAME``, ``train_run(RunConfig(method=NAME))``). A run of it
    stores the name; ``resume`` in another process needs the same registration first.

    Raises:
        ConfigError: not a :class:`Preset`, no ``"*"`` row, or a name already taken (``replace=True``
            allows it).
    """
    if not isinstance(preset, Preset):
        raise ConfigError(f"register_method takes a Preset, got {preset!r}")
    if "*" not in preset.rows:
        raise ConfigError(f"method {preset.name!r} needs a '*' row (the settings for any dataset)")
    if preset.name in _METHODS and _METHODS[preset.name] is not preset and not replace:
        raise ConfigError(f"method {preset.name!r} is already registered; pass replace=True to replace it")
    _METHODS[preset.name] = preset
    return preset


def method_names() -> list[str]:
    """The registered method names, sorted."""
    return sorted(_METHODS)


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises:
        ConfigError: an unknown name (the message lists the known ones).
    """
    return _METHODS[one_of("method", name, method_names())]

"""The published methods as presets: one registry of named rows, each naming its parts and settings.

One module per family holds the rows as plain data (``edge``, ``swe``, ``baselines``, ``size``,
``senn``); ``registry`` names them; ``resolve`` turns a method's row into a run's configuration and
builds its parts and start network, each part class constructed in exactly one place
(:func:`build_method`) from the settings it declares. ``resolve_config``, ``build_method``,
``build_start`` and ``method_settings`` load on first use (PEP 562): listing the methods and reading
their rows imports no torch.
"""

from __future__ import annotations

import importlib

from .preset import ANY_ROW, TABLE_ROW, Preset
from .registry import get_preset, method_names, register_method

_LAZY = ("resolve_config", "build_method", "build_start", "method_settings", "PART_KEYS")

__all__ = ["Preset", "ANY_ROW", "TABLE_ROW", "register_method", "method_names", "get_preset", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'selfexpand.presets' has no attribute {name!r}")
    value = getattr(importlib.import_module(".resolve", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

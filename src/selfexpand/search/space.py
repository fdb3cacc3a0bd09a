"""What a search tries for one method: the spaces of its settings, and its defaults as a trial.

A method's space is every setting of its run (training, start network, helpers, parts) whose
declaration has a space (:mod:`selfexpand.spaces`), then the preset's own ``space`` entries (a space
replaces the part's, ``None`` fixes the setting), less the settings the user fixes (``--set``,
``--epochs``). Each space is widened to hold the value of the method's row for the dataset, so the
method's defaults are one point of it; a row value no space of that kind can hold (None in a range)
fixes the setting at it. Optuna's parameters are named ``METHOD.SETTING`` (``edge.lr``): each method
keeps its own distributions; the method itself is the parameter ``method``.
"""

from __future__ import annotations

import logging

from ..errors import ConfigError
from ..presets import get_preset, method_settings, resolve_config
from ..spaces import Space, param_value

__all__ = ["method_space", "default_params", "param_name", "settings_of", "METHOD_PARAM"]

log = logging.getLogger("selfexpand.search")

METHOD_PARAM = "method"


def param_name(method: str, key: str) -> str:
    """The Optuna parameter of ``method``'s setting ``key``."""
    return f"{method}.{key}"


def _overrides(fixed: dict, epochs: int | None) -> dict:
    return {**fixed, **({} if epochs is None else {"epochs": epochs})}


def method_space(method: str, dataset: str, fixed: dict | None = None, epochs: int | None = None) -> dict[str, Space]:
    """``{setting: space}`` of a search of ``method`` on ``dataset``, in declaration order, with the
    settings in ``fixed`` (and ``epochs``) left out.

    Raises:
        ConfigError: an unknown method, a fixed setting the method does not declare or refuses, or a
            preset ``space`` entry that is no space or names a setting the method does not declare.
    """
    fixed = dict(fixed or {})
    rows = method_settings(method, dataset, _overrides(fixed, epochs))  # checks method and fixed values
    row = {s.name: value for _, s, value in rows}
    declared: dict[str, Space | None] = {}
    for _, s, _value in rows:
        if s.name not in declared or declared[s.name] is None:
            declared[s.name] = s.space
    for key, space in get_preset(method).space.items():
        if key not in row:
            raise ConfigError(f"method {method!r}: its search space names {key!r}, which none of its parts declares")
        if space is not None and not isinstance(space, Space):
            raise ConfigError(f"method {method!r}: the search space of {key!r} must be a Float, LogFloat, Int, "
                              f"Categorical or None, got {space!r}")
        declared[key] = space
    out = {}
    for key, space in declared.items():
        if space is None or key in fixed or (key == "epochs" and epochs is not None):
            continue
        widened = space.including(row[key])
        if widened is None:
            log.debug("method %s: %s=%r is outside any %s; not searched", method, key, row[key], space.describe())
            continue
        out[key] = widened
    return out


def default_params(method: str, dataset: str, space: dict[str, Space], fixed: dict | None = None,
                   epochs: int | None = None) -> dict:
    """The Optuna parameters of ``method``'s own row for ``dataset`` (its defaults, as one trial)."""
    row = resolve_config(method, dataset, _overrides(dict(fixed or {}), epochs))
    return {METHOD_PARAM: method, **{param_name(method, k): param_value(s, row[k]) for k, s in space.items()}}


def settings_of(params: dict) -> dict:
    """``{setting: value}`` of a trial's parameters, the method's prefix dropped (values as Optuna holds
    them: a list as its JSON text), for tables."""
    method = params.get(METHOD_PARAM)
    prefix = f"{method}."
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}

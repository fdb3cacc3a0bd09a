"""From a method's row to a run's configuration, its parts and its start network.

A configuration holds the names of the run's parts (``trigger``, ``selector``, ``initializer``: the
method's own, or those swapped in by ``--trigger`` / ``--selector`` / ``--initializer``) and one value
for every setting the run's *owners* declare: the training settings
(:class:`~selfexpand.train.settings.TrainingSettings`), the start network's, the helper parts' and the
three parts'. Values come from the declaration's default, then the method's row for the dataset, then
the user's overrides; every value passes its declaration's rule. A part whose settings count epochs
gets ``tuned_epochs`` = the row's ``epochs`` unless the row says otherwise (``strategies.budget``). A key that no owner declares is
refused, a replaced part's settings included. Two parts may share a key only when they declare it with
the same default (``signed`` of the edge selector and the edge split); a part's key may not be a
training or start setting.

:func:`build_method` constructs each part class exactly once, from the configuration, and
:func:`build_start` the start network: nothing else in the package builds a part of a method.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..settings import Setting
from ..strategies import PART_KINDS, GrowthMethod, part_class, part_names
from ..train.settings import TrainingSettings
from .registry import get_preset
from .starts import STARTS, start_class

__all__ = ["PART_KEYS", "resolve_config", "build_method", "build_start", "method_settings"]

log = logging.getLogger("selfexpand.presets")

PART_KEYS = ("trigger", "selector", "initializer")


@dataclass
class _Plan:
    """The classes a run of ``method`` is made of (before any is built)."""

    method: str
    parts: dict[str, type | None]  # kind -> class (None: no such part)
    helpers: list[type]
    start: type
    replaced: dict[str, type]  # kind -> the method's own class that a swap replaced
    declared: dict[str, list[tuple[str, Setting]]] = field(init=False)  # key -> (owner label, Setting)

    def __post_init__(self):
        self.declared = self._declarations()

    def owners(self) -> list[tuple[str, type]]:
        """``(label, class)`` of everything that declares settings, training first."""
        out = [("training", TrainingSettings), (f"start {self.start.name!r}", self.start)]
        out += [(f"helper {h.name!r}", h) for h in self.helpers]
        out += [(f"{kind} {cls.name!r}", cls) for kind, cls in self.parts.items() if cls is not None]
        return out

    def _declarations(self) -> dict[str, list[tuple[str, Setting]]]:
        """Every declared key with its declarations ``(owner label, Setting)``.

        Raises:
            ConfigError: a part's key that is a training or start setting, or two parts declaring one
                key with different defaults.
        """
        out: dict[str, list[tuple[str, Setting]]] = {}
        for label, cls in self.owners():
            for s in cls.declared():
                if s.name in PART_KEYS:
                    raise ConfigError(f"{label} declares a setting named {s.name!r}, which names a part")
                earlier = out.setdefault(s.name, [])
                if earlier:
                    first_label, first = earlier[0]
                    if not first_label.startswith(("trigger", "selector", "initializer", "helper")) or \
                            first.default != s.default:
                        raise ConfigError(f"{first_label} and {label} both declare the setting {s.name!r} "
                                          f"(defaults {first.default!r} and {s.default!r}); they cannot be "
                                          f"combined in one run")
                earlier.append((label, s))
        return out


def _plan(method: str, choices: dict) -> _Plan:
    """The classes of ``method`` with the part names in ``choices`` (None: the method's own)."""
    preset = get_preset(method)
    own = preset.parts()
    parts, replaced = {}, {}
    for kind in PART_KEYS:
        name = choices.get(kind) or own[kind]
        parts[kind] = None if name is None else part_class(kind, name)
        if own[kind] is not None and name != own[kind]:
            replaced[kind] = part_class(kind, own[kind])
    if any(parts.values()) and not all(parts.values()):
        missing = [k for k, cls in parts.items() if cls is None]
        raise ConfigError(f"method {method!r} has no {' or '.join(missing)}: a run with a trigger, a selector or an "
                          f"initializer needs all three (name the missing ones with --{missing[0]})")
    selector, initializer = parts["selector"], parts["initializer"]
    if selector is not None and selector.grows != initializer.grows:
        raise ConfigError(f"the selector chooses {selector.grows} but the initializer grows {initializer.grows}; "
                          f"pick parts that match (selector {selector.name!r}, initializer {initializer.name!r})")
    helpers = [part_class("helper", name) for name in preset.helpers]
    return _Plan(method, parts, helpers, start_class(preset.start), replaced)


def _complete(plan: _Plan, values: dict) -> dict:
    """A full configuration: part names, then every declared key (``values`` over the defaults),
    each value parsed and checked by every declaration of its key."""
    out = {kind: (None if cls is None else cls.name) for kind, cls in plan.parts.items()}
    for key, declarations in plan.declared.items():
        value = copy.deepcopy(values.get(key, declarations[0][1].default))
        for _, s in declarations:
            value = s.parse(value)
        out[key] = value
    return out


def _check_conv(plan: _Plan, config: dict) -> None:
    """A conv start (``conv`` not empty) only for parts that grow channels (``grows_channels``): a part
    that would see conv layers as dense units is refused, never left to ignore them.

    Raises:
        ConfigError: the selector or initializer of the run grows dense units or edges only.
    """
    if not config.get("conv"):
        return
    lacking = [f"{kind} {cls.name!r}" for kind, cls in plan.parts.items()
               if kind != "trigger" and cls is not None and not getattr(cls, "grows_channels", False)]
    if lacking:
        raise ConfigError(f"method {plan.method!r} cannot grow a conv start yet (conv={config['conv']}): its "
                          f"{' and '.join(lacking)} can only choose or grow dense units or edges, not the channels "
                          f"of conv layers (parts that can: `selfexpand methods --parts`; methods: random, zero, "
                          f"firefly, net2net, gradmax, swe, svod-random, svod-zero, senn); or give this method a "
                          f"dense start (conv=[]) or a fixed --front")


def resolve_config(method: str, dataset: str = "*", overrides: dict | None = None) -> dict:
    """The configuration of a run of ``method`` on ``dataset`` (a name or a CSV / NPZ path: it picks
    the method's row), with ``overrides`` applied. ``trigger`` / ``selector`` / ``initializer`` in
    ``overrides`` swap a part; the rest are settings (text from ``--set`` is parsed).

    Raises:
        ConfigError: an unknown method or part, parts that do not fit together, a key no part of the
            run declares (a replaced part's settings included), or a value its rule refuses.
    """
    preset = get_preset(method)
    overrides = dict(overrides or {})
    choices = {kind: overrides.pop(kind) for kind in PART_KEYS if kind in overrides}
    plan = _plan(method, choices)
    declared = plan.declared
    dropped = {s.name: (kind, cls) for kind, cls in plan.replaced.items() for s in cls.declared()}
    row_key = preset.row_key(dataset)
    row = {}
    for key, value in preset.rows[row_key].items():
        if key in declared:
            row[key] = value
        elif key not in dropped:
            raise ConfigError(f"method {method!r}, row {row_key!r}: {key!r} is declared by none of its parts")
    if "tuned_epochs" in declared and "tuned_epochs" not in row:
        # the row's epoch counts are written for the row's run length: they keep their shape at any --epochs
        row["tuned_epochs"] = row.get("epochs", TrainingSettings.epochs)
    for key in overrides:
        if key in declared:
            continue
        if key in dropped:
            kind, cls = dropped[key]
            raise ConfigError(f"{key} is a setting of the {kind} {cls.name!r}, which this run replaces with "
                              f"{plan.parts[kind].name!r}; the run's settings are {sorted(declared)}")
        raise ConfigError(f"setting must be one of {sorted(declared)} for method {method!r}, got {key!r}")
    config = _complete(plan, {**row, **overrides})
    _check_conv(plan, config)
    return config


def build_method(method: str, config: dict):
    """The :class:`~selfexpand.strategies.GrowthMethod` of a configuration (one from
    :func:`resolve_config`, or a run's stored ``resolved`` settings): every part built once, from the
    settings it declares. A key no part of this run declares is refused, unless some registered part
    declares it: runs of earlier versions stored settings of parts they did not use (SVoD with
    random units kept SWE's donation settings), and those are left out with a warning.

    Raises:
        ConfigError: as :func:`resolve_config`; a part no longer registered is refused with its name.
    """
    plan = _plan(method, {kind: config.get(kind) for kind in PART_KEYS})
    declared = plan.declared
    undeclared = sorted(set(config) - set(declared) - set(PART_KEYS))
    known = _every_setting_name() if undeclared else set()
    unknown = [key for key in undeclared if key not in known]
    if unknown:
        raise ConfigError(f"setting must be one of {sorted(declared)} for method {method!r}, got {unknown}")
    if undeclared:
        log.warning("method %r: no part of this run reads the settings %s; they are left out", method, undeclared)
    resolved = _complete(plan, {k: v for k, v in config.items() if k not in undeclared})
    _check_conv(plan, resolved)
    built = {kind: None if cls is None else cls.from_settings(resolved) for kind, cls in plan.parts.items()}
    return GrowthMethod(method, extras=[h.from_settings(resolved) for h in plan.helpers], **built)


def _every_setting_name() -> set[str]:
    """The names every registered part and start network declares (and the training settings)."""
    owners = [TrainingSettings, *STARTS.values(), *(part_class(k, n) for k in PART_KINDS for n in part_names(k))]
    return {s.name for cls in owners for s in cls.declared()}


def build_start(method: str, config: dict, data, seed: int, front: str | None = None):
    """The start network of a run of ``method`` on ``data`` (a ``selfexpand.data.Dataset``), its values
    drawn from ``seed``, behind the fixed ``front`` when given.

    Raises:
        ConfigError: a front for a method whose start network takes none.
    """
    start = start_class(get_preset(method).start)
    if front is not None and not start.takes_front:
        raise ConfigError(f"method {method!r} builds its own start network and takes no front, got front={front!r}")
    return start.from_settings(config).build(data, seed, front)


def method_settings(method: str, dataset: str = "*", overrides: dict | None = None) -> list[tuple[str, Setting, object]]:
    """``(owner label, declaration, value)`` of every setting of a run, for listings (``selfexpand methods``)."""
    config = resolve_config(method, dataset, overrides)
    plan = _plan(method, {kind: config[kind] for kind in PART_KEYS})
    return [(label, s, config[s.name]) for label, cls in plan.owners() for s in cls.declared()]

"""Settings declared once: name, rule, default and a one-line help, in the class that uses them.

A configurable class is a dataclass whose fields made with :func:`setting` are its settings::

    @dataclass(eq=False)
    class PlateauTrigger(Trigger):
        plateau_threshold: float = setting(Number(0, low_open=True), 0.005, "grow when the mean ...")

The dataclass writes the constructor; :class:`Configurable` checks every setting against its rule
after construction (so ``PlateauTrigger(plateau_threshold=-1)`` raises ``ConfigError``), then calls
:meth:`Configurable.setup` for cross-setting checks and run-time state. ``settings()`` returns the
values the object holds, ``declared()`` the declarations: validation, ``--set`` parsing, the method
listing and the tests all read them. A setting worth searching declares its search space too
(``space=LogFloat(1e-4, 1e-1)``, :mod:`selfexpand.spaces`): ``selfexpand search`` tries values from it.
Imports no torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import ConfigError
from .spaces import Space, check_space
from .validators import Rule

__all__ = ["Setting", "setting", "same_setting", "Configurable", "declared_settings"]


@dataclass(frozen=True)
class Setting:
    """One declared setting.

    Attributes:
        name: the key in a configuration (``--set name=value``).
        rule: the :class:`~selfexpand.validators.Rule` a value must pass.
        default: the value when none is given.
        help: one line saying what it does.
        attribute: the attribute holding it (``name`` unless the key is a Python keyword: ``lambda``).
        space: the values ``selfexpand search`` may try (:mod:`selfexpand.spaces`; None: not searched).
    """

    name: str
    rule: Rule
    default: Any
    help: str
    attribute: str = ""
    space: Space | None = None

    def check(self, value):
        """``value`` normalised, or :class:`ConfigError` naming the setting and the rule."""
        return self.rule(self.name, value)

    def parse(self, value):
        """``value`` (command-line text or a plain value) normalised and checked."""
        return self.rule.parse(self.name, value)

    def describe(self) -> str:
        """``help (rule; default value)`` for listings."""
        return f"{self.help} ({self.rule.describe()}; default {self.default!r})"


def setting(rule: Rule, default, help: str, *, key: str | None = None, space: Space | None = None):
    """A dataclass field declaring a setting (``key``: its configuration name when the attribute
    cannot have it, e.g. ``lambda``; ``space``: the values a search may try, which must include
    ``default`` and pass ``rule``). List defaults are copied for every instance.

    Raises:
        ConfigError: a space that is no :class:`~selfexpand.spaces.Space`, leaves out the default or
            holds a value the rule refuses.
    """
    if space is not None:
        check_space(key or f"({help})", space, default, rule)  # the field's name is not known yet
    meta = {"setting": (rule, default, help, key), "space": space}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def same_setting(owner: type, name: str, *, space: Space | None = None):
    """A dataclass field re-declaring ``owner``'s setting ``name`` unchanged, for a class that passes
    it on to an ``owner`` it builds (so the setting is still declared in one place); ``space``: a
    search space for it here (default: ``owner``'s)."""
    for f in dataclasses.fields(owner):
        if f.metadata.get("setting") and (f.metadata["setting"][3] or f.name) == name:
            rule, default, help_text, key = f.metadata["setting"]
            return setting(rule, default, help_text, key=key, space=space or f.metadata.get("space"))
    raise ConfigError(f"{owner.__name__} declares no setting {name!r}")


def declared_settings(cls) -> tuple[Setting, ...]:
    """The settings a configurable class (or instance) declares, in declaration order."""
    if not dataclasses.is_dataclass(cls):
        return ()
    out = []
    for f in dataclasses.fields(cls):
        if "setting" in f.metadata:
            rule, default, help_text, key = f.metadata["setting"]
            out.append(Setting(key or f.name, rule, default, help_text, f.name, f.metadata.get("space")))
    return tuple(out)


class Configurable:
    """Base of classes whose dataclass fields made with :func:`setting` are settings."""

    def __post_init__(self):
        for s in self.declared():
            object.__setattr__(self, s.attribute, s.check(getattr(self, s.attribute)))
        self.setup()

    def setup(self) -> None:
        """Cross-setting checks and run-time state, after every setting has passed its rule."""

    @classmethod
    def declared(cls) -> tuple[Setting, ...]:
        """This class's settings (empty for a class that declares none)."""
        return declared_settings(cls)

    def settings(self) -> dict:
        """``{name: value}`` of every setting, as this object holds it."""
        return {s.name: getattr(self, s.attribute) for s in self.declared()}

    @classmethod
    def from_settings(cls, values: Mapping):
        """An instance from a configuration: each declared key that ``values`` has; the rest default."""
        return cls(**{s.attribute: values[s.name] for s in cls.declared() if s.name in values})

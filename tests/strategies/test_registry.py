"""The contract every registered part keeps: it builds from its declared defaults and holds them, its
declarations are well formed (a rule that takes the default, a line of help), each value passes
through ``from_settings`` unchanged, its state round-trips through JSON as constructed, and it grows
what its kind says. Registration refuses what is not a part, and a taken name."""

from __future__ import annotations

import dataclasses
import json

import pytest

from selfexpand.errors import ConfigError
from selfexpand.strategies import GROWS, PART_KINDS, Initializer, Selector, Trigger, part_class, part_names, \
    register_part
from selfexpand.strategies import registry

PARTS = [(kind, name) for kind in PART_KINDS for name in part_names(kind)]


@pytest.mark.parametrize("kind, name", PARTS, ids=[f"{k}-{n}" for k, n in PARTS])
def test_a_registered_part_builds_from_its_defaults_and_holds_them(kind, name):
    cls = part_class(kind, name)
    assert cls.kind == kind and cls.name == name
    part = cls()
    declared = cls.declared()
    assert part.settings() == {s.name: s.default for s in declared}
    for s in declared:
        assert s.check(s.default) == s.default, s.name  # the default passes its own rule
        assert s.help and "\n" not in s.help and not s.help.endswith("."), s.name  # one line of help
    assert cls.from_settings(part.settings()).settings() == part.settings()
    state = json.loads(json.dumps(part.state_dict()))
    fresh = cls()
    fresh.load_state_dict(state)
    assert fresh.state_dict() == part.state_dict()
    if kind in ("selector", "initializer"):
        assert cls.grows in GROWS


def test_part_names_are_unique_per_kind_and_every_kind_has_parts():
    assert all(part_names(kind) for kind in PART_KINDS)
    assert len(PARTS) == len(set(PARTS))


@dataclasses.dataclass(eq=False)
class _Unnamed(Trigger):
    def should_grow(self, ctx):  # pragma: no cover - never called
        raise AssertionError


@pytest.mark.parametrize("cls, match", [
    (int, "takes a GrowthPart subclass"),
    (_Unnamed, "needs a class attribute name"),
    (type("OddGrows", (Selector,), {"name": "odd", "grows": "leaves"}), "grows must be one of"),
    (type("Plateau2", (Trigger,), {"name": "plateau"}), "already registered"),
])
def test_registration_refuses(cls, match):
    with pytest.raises(ConfigError, match=match):
        register_part(cls)


def test_registration_replaces_only_when_asked(monkeypatch):
    monkeypatch.setattr(registry, "_PARTS", {kind: dict(names) for kind, names in registry._PARTS.items()})
    mine = type("MyZero", (Initializer,), {"name": "zero"})
    register_part(mine, replace=True)
    assert part_class("initializer", "zero") is mine
    with pytest.raises(ConfigError, match="initializer must be one of .*got initializer='gone'"):
        part_class("initializer", "gone")

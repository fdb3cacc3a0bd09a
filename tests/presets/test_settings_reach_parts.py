"""Every setting of a run's configuration reaches the part that declares it.

Table-driven over every registered method and every registered part swapped into one: each setting of
the resolved configuration equals the value the built part holds, for the rows' values and after an
override of each setting to another valid value; a key no chosen part declares is refused, a replaced
part's included. (Before the registry, ``--set integration_epochs=3``, ``existing_rows=reference`` and
``--trigger rounds --set ratio=1.5`` were stored in the configuration and never reached their part.)
"""

from __future__ import annotations

import pytest
from settings_kit import another

from selfexpand.errors import ConfigError
from selfexpand.presets import PART_KEYS, build_method, get_preset, method_names, resolve_config
from selfexpand.strategies import PART_KINDS, part_class, part_names

SWAPPABLE = [(kind, name) for kind in PART_KEYS for name in part_names(kind)]


def _held(method) -> dict[str, list]:
    """``{key: [value held by each part declaring it]}`` over every part of a built method."""
    held: dict[str, list] = {}
    for part in method.parts():
        for key, value in part.settings().items():
            held.setdefault(key, []).append(value)
    return held


def _assert_reaches(method_name: str, config: dict) -> None:
    built = build_method(method_name, config)
    for key, values in _held(built).items():
        assert all(v == config[key] for v in values), (method_name, key, config[key], values)
    for kind in PART_KEYS:  # the parts named are the parts built
        part = getattr(built, kind)
        assert (None if part is None else part.name) == config[kind]


def _part_keys(config: dict, method_name: str) -> set[str]:
    return set(_held(build_method(method_name, config)))


def _host(kind: str, name: str) -> tuple[str, dict]:
    """A method that takes part ``name`` of ``kind`` (its own, or by a swap that fits)."""
    for method in method_names():
        overrides = {kind: name}
        try:
            resolve_config(method, "digits", overrides)
        except ConfigError:
            continue
        return method, overrides
    raise AssertionError(f"no method takes {kind} {name!r}")


def _sweep(method: str, overrides: dict, keys: set[str]) -> int:
    """Override each of ``keys`` to another valid value; the part must hold it. Returns how many."""
    base = resolve_config(method, "digits", overrides)
    checked = 0
    for key in sorted(keys):
        declaration = next(s for p in build_method(method, base).parts() for s in p.declared() if s.name == key)
        value = another(declaration.rule, base[key])
        try:
            config = resolve_config(method, "digits", {**overrides, key: value})
            build_method(method, config)
        except ConfigError:  # a cross-setting rule (rounds against the schedule's length): the other way
            value = another(declaration.rule, base[key], lower=True)
            config = resolve_config(method, "digits", {**overrides, key: value})
        assert config[key] == declaration.check(value)
        _assert_reaches(method, config)
        checked += 1
    return checked


@pytest.mark.parametrize("method", method_names())
def test_every_row_of_every_method_reaches_its_parts(method):
    for dataset in get_preset(method).rows:
        _assert_reaches(method, resolve_config(method, dataset))


@pytest.mark.parametrize("method", method_names())
def test_an_override_of_every_part_setting_reaches_the_part(method):
    base = resolve_config(method, "digits")
    keys = _part_keys(base, method)
    assert _sweep(method, {}, keys) == len(keys)


@pytest.mark.parametrize("kind, name", SWAPPABLE)
def test_a_swapped_in_part_gets_its_settings(kind, name):
    method, overrides = _host(kind, name)
    config = resolve_config(method, "digits", overrides)
    _assert_reaches(method, config)
    own = {s.name for s in part_class(kind, name).declared()}
    assert own <= set(config)
    _sweep(method, overrides, own)


@pytest.mark.parametrize("overrides, key, value", [
    ({"initializer": "swe", "integration_epochs": "3", "existing_rows": "reference"}, "integration_epochs", 3),
    ({"initializer": "swe", "integration_epochs": "3", "existing_rows": "reference"}, "existing_rows", "reference"),
    ({"trigger": "rounds", "ratio": "1.5"}, "ratio", 1.5),
])
def test_the_settings_lost_before_the_registry_now_arrive(overrides, key, value):
    config = resolve_config("swe", "digits", overrides)
    held = _held(build_method("swe", config))
    assert config[key] == value and held[key] == [value]


def test_ratio_sets_the_round_amounts():
    trigger = build_method("swe", resolve_config("swe", "digits", {"ratio": "1.5"})).trigger
    assert trigger.amounts == [8, 12]  # schedule[0] = 8, then round(8 * 1.5)
    trigger = build_method("swe", resolve_config("swe", "*", {"ratio": "2"})).trigger
    assert trigger.amounts == [36, 72]


@pytest.mark.parametrize("method, overrides, match", [
    ("swe", {"initializer": "gradmax", "donation_std": "1"}, "donation_std is a setting of the initializer 'swe'"),
    ("edge", {"selector": "all-layers", "initializer": "zero", "tau": "0.5"}, "tau is a setting of the selector"),
    ("zero", {"donation_std": "1"}, "setting must be one of"),
    ("static", {"units": "3"}, "setting must be one of"),
    ("edge", {"nonsense": "1"}, "got 'nonsense'"),
])
def test_a_key_no_chosen_part_declares_is_refused(method, overrides, match):
    with pytest.raises(ConfigError, match=match):
        resolve_config(method, "digits", overrides)


def test_a_replaced_part_s_row_settings_leave_the_configuration():
    config = resolve_config("swe", "digits", {"initializer": "gradmax"})
    assert "donation_std" not in config and config["epsilon"] == 1e-3 and config["initializer"] == "gradmax"
    assert resolve_config("swe", "digits")["lr"] == config["lr"]  # the rest of the row stays


def test_a_stored_configuration_with_an_unknown_key_is_refused_on_build():
    config = resolve_config("zero", "digits")
    with pytest.raises(ConfigError, match="donation_stdd"):
        build_method("zero", {**config, "donation_stdd": 1.0})


def test_a_stored_setting_of_a_part_the_run_does_not_use_is_left_out_with_a_warning(caplog):
    # runs of earlier versions: svod-random's row held SWE's donation settings, which it never read
    config = resolve_config("svod-random", "digits")
    with caplog.at_level("WARNING", logger="selfexpand.presets"):
        built = build_method("svod-random", {**config, "donation_std": 1.0, "new_bias": "kaiming"})
    assert "['donation_std', 'new_bias']" in caplog.text and "left out" in caplog.text
    assert built.initializer.name == "random"


@pytest.mark.parametrize("overrides, match", [
    ({"initializer": "swe"}, "selector chooses edges but the initializer grows units"),
    ({"selector": "natural-expansion"}, "selector chooses units\\+layers but the initializer grows edges"),
    ({"selector": "nope"}, "selector must be one of"),
])
def test_parts_that_do_not_fit_are_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        resolve_config("edge", "digits", overrides)


def test_two_parts_sharing_a_key_with_different_defaults_cannot_be_combined():
    with pytest.raises(ConfigError, match="candidates_per_unit"):
        resolve_config("swe", "digits", {"initializer": "firefly"})


def test_a_shared_key_reaches_both_parts():
    built = build_method("edge", resolve_config("edge", "digits", {"signed": "true"}))
    assert built.selector.signed is True and built.initializer.signed is True


def test_a_part_without_its_partners_is_refused():
    with pytest.raises(ConfigError, match="needs all three"):
        resolve_config("static", "digits", {"trigger": "plateau"})


def test_every_part_kind_is_listed():
    assert set(PART_KINDS) == {*PART_KEYS, "helper"}
    assert part_names("helper") == ["nonnegative-biases"]

"""Swapping one part of a method (``--trigger`` / ``--selector`` / ``--initializer``): the right part
is built with its settings, ``--set`` reaches them, mismatched kinds and unknown names are refused,
and the choice survives in the resolved settings."""

from __future__ import annotations

import pytest

from selfexpand.errors import ConfigError
from selfexpand.method_parts import PARTS
from selfexpand.methods import build_method, resolve_config
from selfexpand.runs import RunConfig, train_run
from selfexpand.strategies.edge_statistics import EdgeStatistics
from selfexpand.strategies.initializers.gradmax import GradMaxInitializer
from selfexpand.strategies.selectors.fixed_units import AllLayersSelector
from selfexpand.strategies.selectors.steepest_voting import SteepestVotingSelector
from selfexpand.strategies.triggers.interval import IntervalTrigger
from selfexpand.strategies.triggers.rounds import RoundsTrigger


def test_swap_keeps_the_rest_and_takes_the_part_settings():
    cfg = resolve_config("swe", "digits", {"initializer": "gradmax", "epsilon": "0.5"})
    method = build_method("swe", cfg)
    assert isinstance(method.trigger, RoundsTrigger) and isinstance(method.selector, SteepestVotingSelector)
    assert isinstance(method.initializer, GradMaxInitializer) and method.initializer.epsilon == 0.5
    assert cfg["initializer"] == "gradmax" and cfg["lr"] == resolve_config("swe", "digits")["lr"]


def test_swapping_the_edge_selector_out_drops_its_helpers():
    cfg = resolve_config("edge", "digits", {"selector": "all-layers", "initializer": "zero", "trigger": "interval"})
    method = build_method("edge", cfg)
    assert isinstance(method.selector, AllLayersSelector) and isinstance(method.trigger, IntervalTrigger)
    assert not any(isinstance(e, EdgeStatistics) for e in method.extras)
    swapped_in = build_method("zero", resolve_config("zero", "digits", {"selector": "edge-significance",
                                                                         "initializer": "edge-split"}))
    assert any(isinstance(e, EdgeStatistics) for e in swapped_in.extras)


@pytest.mark.parametrize("overrides, match", [
    ({"initializer": "swe"}, "selector chooses edges but the initializer grows units"),
    ({"selector": "nope"}, "selector must be one of"),
])
def test_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        build_method("edge", resolve_config("edge", "digits", overrides))


def test_every_named_part_builds_from_its_defaults():
    base = resolve_config("zero", "digits")
    for kind, parts in PARTS.items():
        for name in parts:
            cfg = resolve_config("zero", "digits", {kind: name})
            assert set(base) <= set(cfg)
            part, extras = parts[name].build(cfg)
            assert part is not None


def test_a_swapped_run_grows_with_the_swapped_part(tmp_path):
    _, summary = train_run(RunConfig(method="zero", dataset="digits", out=str(tmp_path / "r"),
                                     settings={"initializer": "net2net", "epochs": 3, "times": 2, "units": 2}))
    assert summary["units_added"] == 4
    history = (tmp_path / "r" / "history.jsonl").read_text()
    assert '"kind": "split_units"' in history and '"kind": "add_units"' not in history

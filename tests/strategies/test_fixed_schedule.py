"""The baselines' WHEN and WHERE: ``IntervalTrigger``, ``ScheduleTrigger``, ``AllLayersSelector``,
``RoundRobinSelector`` (timetables, amounts, the parameter budget, state round trips), and the
``random`` / ``zero`` / ``net2net`` / ``gradmax`` methods on GroMo's schedule."""

from __future__ import annotations

import json

import pytest

from edgekit import make_ctx, toy_dataset
from selfexpand.errors import ConfigError
from selfexpand.graph import GrowableNet
from selfexpand.runs import RunConfig, train_run
from selfexpand.strategies.selectors.fixed_units import AllLayersSelector, RoundRobinSelector
from selfexpand.strategies.topology import unit_cost
from selfexpand.strategies.triggers.interval import IntervalTrigger, ScheduleTrigger


class Clock:
    def __init__(self):
        self.epoch = 0


def fire(trigger, epochs: int) -> list[int]:
    clock, out = Clock(), []
    for t in range(1, epochs + 1):
        clock.epoch = t
        if trigger.should_grow(clock).grow:
            out.append(t)
    return out


def test_interval_and_schedule_timetables():
    assert fire(IntervalTrigger(1, times=11), 20) == list(range(1, 12))
    assert fire(IntervalTrigger(3, start=2), 12) == [2, 5, 8, 11]
    assert fire(IntervalTrigger(2, start=4, times=2), 20) == [4, 6]
    assert fire(ScheduleTrigger([7, 3, 3]), 10) == [3, 7]


def test_interval_state_round_trip_continues():
    first = IntervalTrigger(1, times=5)
    clock = Clock()
    for t in range(1, 4):
        clock.epoch = t
        first.should_grow(clock)
    second = IntervalTrigger(1, times=5)
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    grown = []
    for t in range(4, 10):
        clock.epoch = t
        grown.append(second.should_grow(clock).grow)
    assert grown == [True, True, False, False, False, False]


def test_all_layers_and_round_robin():
    net = GrowableNet.mlp([4, 3, 3, 2], seed=0)
    ctx = make_ctx(net, toy_dataset(n=8, d=4, k=2))
    assert [(s.layer, s.n_units) for s in AllLayersSelector(5).select(ctx)] == [("h1", 5), ("h2", 5)]
    rr = RoundRobinSelector(2)
    assert [rr.select(ctx)[0].layer for _ in range(5)] == ["h1", "h2", "h1", "h2", "h1"]
    fresh = RoundRobinSelector(2)
    fresh.load_state_dict(json.loads(json.dumps(rr.state_dict())))
    assert fresh.select(ctx)[0].layer == "h2"


def test_selectors_keep_to_the_budget():
    net = GrowableNet.mlp([4, 3, 3, 2], seed=0)
    c1, c2 = unit_cost(net, "h1"), unit_cost(net, "h2")
    # room for 2 h1 units and 1 h2 unit with its 2 weights from the new h1 units
    ctx = make_ctx(net, toy_dataset(n=8, d=4, k=2), max_params=net.params + 2 * c1 + c2 + 2)
    sites = AllLayersSelector(2).select(ctx)
    assert [(s.layer, s.n_units) for s in sites] == [("h1", 2), ("h2", 1)]
    ctx = make_ctx(net, toy_dataset(n=8, d=4, k=2), max_params=net.params + c2)  # one h2 unit only
    assert [(s.layer, s.n_units) for s in AllLayersSelector(2).select(ctx)] == [("h2", 1)]
    ctx = make_ctx(net, toy_dataset(n=8, d=4, k=2), max_params=net.params + min(c1, c2) - 1)
    assert AllLayersSelector(2).select(ctx) == [] and RoundRobinSelector(2).select(ctx) == []


@pytest.mark.parametrize("cls, kwargs, match", [
    (IntervalTrigger, {"every": 0}, "every"), (IntervalTrigger, {"start": 0}, "start"),
    (IntervalTrigger, {"times": 0}, "times"), (ScheduleTrigger, {"grow_after": []}, "grow_after"),
    (ScheduleTrigger, {"grow_after": [0]}, "grow_after"), (AllLayersSelector, {"units": 0}, "units"),
    (RoundRobinSelector, {"units": -1}, "units"),
])
def test_bad_settings(cls, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("method", ["random", "zero", "net2net", "gradmax", "firefly"])
def test_baseline_methods_grow_on_the_schedule(tmp_path, method):
    settings = {"epochs": 6, "times": 3, "units": 2, "tuned_epochs": 6}  # epochs as written, not scaled
    _, summary = train_run(RunConfig(method=method, dataset="digits", out=str(tmp_path / method), settings=settings))
    assert summary["units_added"] == 3 * 2 and summary["growth_events"] == 3
    assert summary["params_final"] == summary["params_start"] + 3 * 2 * (64 + 1 + 10)

"""The run's budget binds every method (issue #22): with ``grow_until`` 0.5 of a 12-epoch run and a
trigger that wants growth after every epoch, growth happens, and none comes after epoch 6. A size
set by gradient descent (no trigger) stops moving after epoch 6."""

from __future__ import annotations

import json

import pytest

from selfexpand.presets import get_preset, method_names
from selfexpand.runs import RunConfig, train_run
from selfexpand.strategies import part_class
from selfexpand.strategies.base import Decision, Trigger

GROWTH_KINDS = {"add_units", "split_units", "insert_layer", "split_edges"}  # pruning and compaction are not growth
EPOCHS, GROW_UNTIL = 12, 0.5
SETTINGS = {  # a few settings that make each method's forced growth add something, quickly
    "edge": {"tau": 0.0}, "edge-reference": {"tau": 0.0},
    "senn": {"tau": 0.0, "alpha": 0.0}, "senn-deep": {"tau": 0.0, "alpha": 0.0},
}


def _growing_methods() -> list[str]:
    return [m for m in method_names() if m != "static"]


def _history(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def _force(monkeypatch, method: str) -> None:
    trigger = get_preset(method).parts()["trigger"]
    if trigger is not None:
        monkeypatch.setattr(part_class("trigger", trigger), "should_grow",
                            lambda self, ctx: Decision(True, "forced", amount=4))


@pytest.mark.parametrize("method", _growing_methods())
def test_no_growth_after_grow_until(tmp_path, monkeypatch, method):
    _force(monkeypatch, method)
    settings = {"epochs": EPOCHS, "grow_until": GROW_UNTIL, **SETTINGS.get(method, {})}
    run_dir, summary = train_run(RunConfig(method=method, dataset="digits", seed=0, out=str(tmp_path / "run"),
                                           settings=settings))
    history = _history(run_dir)
    last_open = int(GROW_UNTIL * EPOCHS)
    if get_preset(method).parts()["trigger"] is None:  # size by gradient descent: the size weight stops
        sizes = [r["size_control"] for r in history if r["type"] == "epoch"]
        assert sizes[0] != sizes[last_open - 1], "the size never moved"
        assert all(s == sizes[last_open - 1] for s in sizes[last_open:])
        return
    growth = [r["epoch"] for r in history if r["type"] == "growth" and r["kind"] in GROWTH_KINDS]
    assert growth, "no growth at all"
    assert max(growth) <= last_open, growth


def test_a_trigger_that_ignores_the_budget_is_caught(tmp_path, monkeypatch):
    """The check above can fail: a trigger whose ``decide`` ignores the budget grows after epoch 6."""
    _force(monkeypatch, "random")
    monkeypatch.setattr(Trigger, "decide", lambda self, ctx: self.should_grow(ctx))
    run_dir, _ = train_run(RunConfig(method="random", dataset="digits", seed=0, out=str(tmp_path / "run"),
                                     settings={"epochs": EPOCHS, "grow_until": GROW_UNTIL}))
    growth = [r["epoch"] for r in _history(run_dir) if r["type"] == "growth" and r["kind"] in GROWTH_KINDS]
    assert max(growth) > int(GROW_UNTIL * EPOCHS)

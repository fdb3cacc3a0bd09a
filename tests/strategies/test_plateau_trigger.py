"""``PlateauTrigger`` on constructed validation-loss sequences (ALGORITHMS.md §1, "When").

Fires after epoch ``t`` exactly when ``t - t_last > max(prune_after, min_gap, window)`` and
``mean_{k=1..window} |v_{t-k+1} - v_{t-k}| < plateau_threshold``; ``t_last`` is the last firing.
Losses are multiples of 1/64 and thresholds odd multiples of 1/128 or exact multiples of 1/64, so the
float computation is exact and the reference (in ``Fraction``) decides ties the same way.
"""

from __future__ import annotations

import json
from fractions import Fraction
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from selfexpand.strategies.triggers.plateau import PlateauTrigger
from selfexpand.train.history import History


def run(trigger: PlateauTrigger, losses: list[float], start: int = 0) -> list[int]:
    """Feed epochs ``start + 1 .. len(losses)`` (history holding all losses up to ``t``); return the
    epochs at which the trigger fired."""
    fired = []
    for t in range(start + 1, len(losses) + 1):
        history = History([{"type": "epoch", "epoch": e + 1, "val_loss": v} for e, v in enumerate(losses[:t])])
        # a growth record in between must not count as an epoch
        history.append({"type": "growth", "epoch": t, "kind": "split_edges"})
        decision = trigger.should_grow(SimpleNamespace(epoch=t, history=history))
        assert isinstance(decision.reason, str) and decision.reason
        if decision.grow:
            fired.append(t)
    return fired


def reference(losses, threshold, min_gap, window, prune_after, t_last: int = 0, start: int = 0):
    gap = max(prune_after, min_gap, window)
    fired = []
    for t in range(start + 1, len(losses) + 1):
        if t - t_last <= gap:
            continue
        v = [Fraction(x) for x in losses[:t]]
        delta = sum(abs(v[t - k] - v[t - k - 1]) for k in range(1, window + 1)) / window
        if delta < Fraction(threshold):
            fired.append(t)
            t_last = t
    return fired


def test_planted_sequence_fires_exactly_when_due():
    # steep descent for 6 epochs, then flat: plateau from epoch 8 on (window 2 needs v6, v7, v8 flat)
    losses = [2.0, 1.5, 1.0, 0.75, 0.5, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25]
    trigger = PlateauTrigger(plateau_threshold=0.01, min_gap=4, window=2, prune_after=1)
    assert run(trigger, losses) == [8, 13]  # 8, then the gap: 13 - 8 = 5 > 4
    assert trigger.t_last == 13


def test_gap_uses_the_largest_of_prune_after_min_gap_window():
    flat = [1.0] * 30
    assert run(PlateauTrigger(0.5, min_gap=2, window=1, prune_after=6), flat) == [7, 14, 21, 28]
    assert run(PlateauTrigger(0.5, min_gap=5, window=1, prune_after=0), flat) == [6, 12, 18, 24, 30]
    assert run(PlateauTrigger(0.5, min_gap=0, window=4, prune_after=2), flat) == [5, 10, 15, 20, 25, 30]


def test_threshold_is_strict_and_the_mean_is_over_the_window():
    # |diffs| of the last 3 steps: 0.25, 0, 0.125 -> mean 0.125
    losses = [3.0, 2.0, 1.0, 0.75, 0.75, 0.625]
    assert run(PlateauTrigger(0.125, min_gap=0, window=3, prune_after=0), losses) == []
    assert run(PlateauTrigger(0.125 + 1 / 128, min_gap=0, window=3, prune_after=0), losses) == [6]
    # a rise counts like a fall (absolute changes)
    assert run(PlateauTrigger(0.1, min_gap=0, window=2, prune_after=0), [1.0, 1.0, 1.25, 1.0]) == []
    # one step too few (window 3 needs 4 losses): epoch 3 never fires, even on a flat curve
    assert run(PlateauTrigger(0.5, min_gap=0, window=3, prune_after=0), [1.0, 1.0, 1.0]) == []


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(st.integers(-8, 8), min_size=1, max_size=40),
    threshold=st.integers(1, 40).map(lambda k: k / 128),
    min_gap=st.integers(0, 6), window=st.integers(1, 5), prune_after=st.integers(0, 4),
)
def test_random_sequences_match_the_rule(steps, threshold, min_gap, window, prune_after):
    losses = [4.0]
    for s in steps:
        losses.append(losses[-1] + s / 64)
    trigger = PlateauTrigger(threshold, min_gap=min_gap, window=window, prune_after=prune_after)
    expected = reference(losses, threshold, min_gap, window, prune_after)
    assert run(trigger, losses) == expected
    assert trigger.t_last == (expected[-1] if expected else 0)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.integers(-3, 3), min_size=4, max_size=30),
    cut=st.integers(1, 30), window=st.integers(1, 3), min_gap=st.integers(0, 4),
)
def test_state_dict_round_trip_continues_identically(steps, cut, window, min_gap):
    losses = [2.0]
    for s in steps:
        losses.append(losses[-1] + s / 64)
    cut = min(cut, len(losses))
    make = lambda: PlateauTrigger(3 / 128, min_gap=min_gap, window=window, prune_after=1)  # noqa: E731
    uninterrupted = make()
    all_fired = run(uninterrupted, losses)

    first = make()
    fired = run(first, losses[:cut])
    state = json.loads(json.dumps(first.state_dict()))
    resumed = make()
    resumed.load_state_dict(state)
    assert resumed.state_dict() == first.state_dict()
    assert fired + run(resumed, losses, start=cut) == all_fired
    assert resumed.t_last == uninterrupted.t_last


def test_loaded_t_last_holds_back_the_next_firing():
    flat = [1.0] * 12
    trigger = PlateauTrigger(0.5, min_gap=3, window=1, prune_after=0)
    trigger.load_state_dict({"t_last": 6})
    assert run(trigger, flat, start=6) == [10]
    assert PlateauTrigger(0.5, 3, 1, 0).state_dict() == {"t_last": 0}

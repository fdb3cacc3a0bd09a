"""A preset keeps its shape at any run length (issue #22): its growth epochs, as fractions of the run,
agree at 10, 20 and 64 epochs. Only the trigger runs, on a validation curve shaped by the fraction
of the run (it falls, then stays flat); no training."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from selfexpand.presets import get_preset, method_names, resolve_config
from selfexpand.strategies import part_class
from selfexpand.strategies.budget import scale_epochs, scale_rate
from selfexpand.train.history import History

LENGTHS = (10, 20, 64)


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


class _Ctx:
    """What a trigger reads: the epoch, the run's length, the history, the model (rounds restore
    their best weights), the metric's direction and the stop flag."""

    def __init__(self, total: int):
        self.epoch, self.epochs_total, self.history = 0, total, History()
        self.model, self.higher_is_better, self.stopped = _Model(), True, False
        self.grow_until = 1.0

    @property
    def growth_open(self) -> bool:
        return self.epoch <= self.grow_until * self.epochs_total

    def request_stop(self, reason: str) -> None:
        self.stopped = True


def _val_loss(x: float) -> float:
    """Falls steeply over the first half of the run, then is flat (a fraction ``x`` of the run)."""
    return 0.05 + math.exp(-6 * min(x, 0.6))


def growth_fractions(method: str, row: str, total: int, scaled: bool = True) -> list[float]:
    config = resolve_config(method, row, {"epochs": total})
    if not scaled:
        config["tuned_epochs"] = None
    trigger = part_class("trigger", config["trigger"]).from_settings(config)
    ctx, grown = _Ctx(total), []
    while ctx.epoch < total and not ctx.stopped:
        ctx.epoch += 1
        loss = _val_loss(ctx.epoch / total)
        ctx.history.append({"type": "epoch", "epoch": ctx.epoch, "val_loss": loss, "val_metric": 1 - loss})
        if trigger.decide(ctx).grow:
            grown.append(ctx.epoch / total)
            trigger.on_grow_end(ctx, events=[])
    return grown


def _marks(fractions: list[float]) -> list[float]:
    """First, median and last growth, as fractions of the run."""
    return [min(fractions), statistics.median(fractions), max(fractions)]


def _cases():
    for method in method_names():
        preset = get_preset(method)
        trigger = preset.parts()["trigger"]
        if trigger is None or "tuned_epochs" not in {s.name for s in part_class("trigger", trigger).declared()}:
            continue
        for row in preset.rows:
            yield method, row


CASES = list(_cases())


def test_every_trigger_of_a_preset_counts_epochs_by_the_budget():
    triggers = {get_preset(m).parts()["trigger"] for m in method_names()} - {None}
    assert triggers == {"plateau", "interval", "checks", "rounds"}
    assert {m for m, _ in CASES} == {m for m in method_names() if get_preset(m).parts()["trigger"]}


def _disagreement(method: str, row: str, scaled: bool) -> float:
    runs = {total: growth_fractions(method, row, total, scaled) for total in LENGTHS}
    if not scaled and not all(runs.values()):
        return math.inf  # unscaled counts that never fire in a short run: the shape is lost
    assert all(runs.values()), f"{method}/{row}: no growth at some length: {runs}"
    marks = [_marks(f) for f in runs.values()]
    return max(abs(a - b) for x in marks for y in marks for a, b in zip(x, y))


@pytest.mark.parametrize("method, row", CASES)
def test_growth_epochs_keep_their_fractions_at_10_20_and_64_epochs(method, row):
    assert _disagreement(method, row, scaled=True) <= 0.1


def test_without_scaling_the_same_comparison_fails():
    """The test has teeth: with the counts read as plain epochs, the timetables and plateaus of the
    presets land at different fractions of runs of different lengths."""
    failing = [(m, r) for m, r in CASES if _disagreement(m, r, scaled=False) > 0.1]
    assert {m for m, _ in failing} >= {"edge", "random", "swe"}


@pytest.mark.parametrize("count, tuned, total, expected", [
    (8, 64, 64, 8), (8, 64, 10, 1), (8, 64, 20, 3), (3, 20, 64, 10), (0, 64, 10, 0), (1, 64, 10, 1),
    (5, None, 10, 5), (5, 64, 0, 5),
])
def test_scale_epochs(count, tuned, total, expected):
    assert scale_epochs(count, tuned, total) == expected


def test_scale_rate_is_per_epoch():
    assert scale_rate(0.005, 64, 64) == 0.005
    assert scale_rate(0.005, 64, 32) == pytest.approx(0.01)
    assert scale_rate(0.005, None, 32) == 0.005


def test_a_row_tunes_its_counts_to_its_own_epochs_and_a_user_may_say_otherwise():
    assert resolve_config("edge", "mnist", {"epochs": 20})["tuned_epochs"] == resolve_config("edge", "mnist")["epochs"]
    assert resolve_config("edge", "mnist", {"tuned_epochs": 20})["tuned_epochs"] == 20
    assert "tuned_epochs" not in resolve_config("static", "mnist")

"""``IntervalTrigger`` and ``ScheduleTrigger``: grow on a fixed timetable (the baselines' triggers).

``IntervalTrigger(every, start, times)`` grows after epochs ``start, start + every, ...``, at most
``times`` times (GroMo's schedule: after every one of the first 11 epochs).
``ScheduleTrigger(grow_after)`` grows after exactly the listed epochs. Neither looks at the data.
Their epochs scale with the run's length (``tuned_epochs``, see ``strategies.budget``): growth step
``k`` comes after epoch ``round((start + k * every) * T / tuned_epochs)``; steps that fall on one epoch
are one step, so a shorter run grows fewer times at the same fractions of its length.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...settings import setting
from ...spaces import Int
from ...validators import Integer, IntegerList, Optional
from ..base import Decision, Trigger
from ..budget import run_length, scale_epochs, tuned_epochs_setting
from ..registry import register_part

__all__ = ["IntervalTrigger", "ScheduleTrigger"]


@register_part
@dataclass(eq=False)
class IntervalTrigger(Trigger):
    """Grow after epoch ``start`` and every ``every`` epochs after it, ``times`` times at most."""

    name = "interval"
    every: int = setting(Integer(1), 1, "epochs between two growth steps", space=Int(1, 4))
    start: int = setting(Integer(1), 1, "the epoch after which the first growth step comes")
    times: int | None = setting(Optional(Integer(1)), None, "growth steps at most (null: no limit)")
    tuned_epochs: int | None = tuned_epochs_setting()

    def setup(self) -> None:
        self.count = 0  # scheduled steps passed (grown, or merged into a step of the same epoch)

    def _step_epoch(self, k: int, total: int) -> int:
        return scale_epochs(self.start + k * self.every, self.tuned_epochs, total)

    def should_grow(self, ctx) -> Decision:
        passed = self.count
        while (self.times is None or self.count < self.times) and \
                self._step_epoch(self.count, run_length(ctx)) <= ctx.epoch:
            self.count += 1
        if self.count == passed:
            return Decision(False)
        return Decision(True, f"scheduled growth {self.count}" + (f"/{self.times}" if self.times else ""))

    def state_dict(self) -> dict:
        return {"count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.count = int(state.get("count", 0))


@register_part
@dataclass(eq=False)
class ScheduleTrigger(Trigger):
    """Grow after exactly the epochs listed (1-based, the epoch just completed)."""

    name = "schedule"
    grow_after: list = setting(IntegerList(1, min_length=1), [1], "the epochs after which to grow")
    tuned_epochs: int | None = tuned_epochs_setting()

    def should_grow(self, ctx) -> Decision:
        if ctx.epoch in {scale_epochs(e, self.tuned_epochs, run_length(ctx)) for e in self.grow_after}:
            return Decision(True, f"scheduled growth after epoch {ctx.epoch}")
        return Decision(False)

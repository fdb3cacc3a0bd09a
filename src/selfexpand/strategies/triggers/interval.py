"""``IntervalTrigger`` and ``ScheduleTrigger``: grow on a fixed timetable (the baselines' triggers).

``IntervalTrigger(every, start, times)`` grows after epochs ``start, start + every, ...``, at most
``times`` times (GroMo's schedule: after every one of the first 11 epochs). ``ScheduleTrigger(epochs)``
grows after exactly the listed epochs. Neither looks at the data.
"""

from __future__ import annotations

from ...errors import ConfigError
from ..base import Decision, Trigger

__all__ = ["IntervalTrigger", "ScheduleTrigger"]


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {name}={value!r}")
    return value


class IntervalTrigger(Trigger):
    """Grow after epoch ``start`` and every ``every`` epochs after it, ``times`` times at most
    (None: no limit)."""

    def __init__(self, every: int = 1, *, start: int = 1, times: int | None = None):
        self.every, self.start = _positive("every", every), _positive("start", start)
        self.times = None if times is None else _positive("times", times)
        self.count = 0

    def should_grow(self, ctx) -> Decision:
        due = ctx.epoch >= self.start and (ctx.epoch - self.start) % self.every == 0
        if not due or (self.times is not None and self.count >= self.times):
            return Decision(False)
        self.count += 1
        return Decision(True, f"scheduled growth {self.count}" + (f"/{self.times}" if self.times else ""))

    def state_dict(self) -> dict:
        return {"count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.count = int(state.get("count", 0))


class ScheduleTrigger(Trigger):
    """Grow after exactly the epochs listed (1-based, the epoch just completed)."""

    def __init__(self, epochs):
        epochs = list(epochs)
        if not epochs or not all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in epochs):
            raise ConfigError(f"epochs must list positive integers, got epochs={epochs!r}")
        self.epochs = sorted(set(epochs))

    def should_grow(self, ctx) -> Decision:
        if ctx.epoch in self.epochs:
            return Decision(True, f"scheduled growth after epoch {ctx.epoch}")
        return Decision(False)

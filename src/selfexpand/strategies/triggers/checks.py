"""``CheckTrigger``: SENN's schedule of expansion checks (ALGORITHMS.md §3).

A check runs after the first epoch and after every epoch with ``epoch % cooldown == 0``. The
reference also checks after the last epoch; units added then never train (their outgoing weights are
zero), so that check is off by default (``check_last=True`` restores it). The selector decides
whether a check adds anything.
"""

from __future__ import annotations

from ...errors import ConfigError
from ..base import Decision, Trigger

__all__ = ["CheckTrigger"]


class CheckTrigger(Trigger):
    """Check after epoch 1, every ``cooldown`` epochs, and (``check_last``) after the last one."""

    def __init__(self, cooldown: int = 10, *, check_last: bool = False):
        if isinstance(cooldown, bool) or not isinstance(cooldown, int) or cooldown < 1:
            raise ConfigError(f"cooldown must be a positive integer, got cooldown={cooldown!r}")
        self.cooldown, self.check_last = cooldown, bool(check_last)

    def should_grow(self, ctx) -> Decision:
        last = self.check_last and ctx.epoch == ctx.epochs_total
        if ctx.epoch == 1 or ctx.epoch % self.cooldown == 0 or last:
            return Decision(True, f"expansion check after epoch {ctx.epoch}")
        return Decision(False)

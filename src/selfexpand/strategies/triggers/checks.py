"""``CheckTrigger``: SENN's schedule of expansion checks (ALGORITHMS.md §3).

A check runs after the first epoch and after every epoch with ``epoch % cooldown == 0``. The
reference also checks after the last epoch; units added then never train (their outgoing weights are
zero), so that check is off by default (``check_last=True`` restores it). The selector decides
whether a check adds anything. ``cooldown`` scales with the run's length (``tuned_epochs``, see
``strategies.budget``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...settings import setting
from ...spaces import Int
from ...validators import Boolean, Integer
from ..base import Decision, Trigger
from ..budget import run_length, scale_epochs, tuned_epochs_setting
from ..registry import register_part

__all__ = ["CheckTrigger"]


@register_part
@dataclass(eq=False)
class CheckTrigger(Trigger):
    """Check after epoch 1, every ``cooldown`` epochs, and (``check_last``) after the last one."""

    name = "checks"
    cooldown: int = setting(Integer(1), 10, "epochs between two expansion checks (the first comes after epoch 1)",
                           space=Int(1, 20))
    check_last: bool = setting(Boolean(), False, "also check after the last epoch, as the reference does")
    tuned_epochs: int | None = tuned_epochs_setting()

    def should_grow(self, ctx) -> Decision:
        last = self.check_last and ctx.epoch == run_length(ctx)
        cooldown = scale_epochs(self.cooldown, self.tuned_epochs, run_length(ctx))
        if ctx.epoch == 1 or ctx.epoch % cooldown == 0 or last:
            return Decision(True, f"expansion check after epoch {ctx.epoch}")
        return Decision(False)

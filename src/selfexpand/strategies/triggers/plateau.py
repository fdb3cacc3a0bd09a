"""``PlateauTrigger``: grow when the validation loss has flattened (edge expansion, ALGORITHMS.md §1).

After epoch ``t``, growth is considered only when ``t - t_last > max(prune_after, min_gap, window)``
(``t_last``: the last growth); then ``delta = mean_{k=1..window} |v_{t-k+1} - v_{t-k}|`` over the
validation losses ``v``, and the trigger fires when ``delta < plateau_threshold``. The epoch counts
and the threshold (a change per epoch) scale with the run's length (``tuned_epochs``, see
``strategies.budget``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...settings import setting
from ...spaces import Int, LogFloat
from ...validators import Integer, Number
from ..base import Decision, Trigger
from ..budget import run_length, scale_epochs, scale_rate, tuned_epochs_setting
from ..registry import register_part

__all__ = ["PlateauTrigger"]


@register_part
@dataclass(eq=False)
class PlateauTrigger(Trigger):
    """Grow when the validation loss's mean absolute change over ``window`` epochs falls below
    ``plateau_threshold``, at least ``max(prune_after, min_gap, window)`` epochs after the last growth."""

    name = "plateau"
    plateau_threshold: float = setting(Number(0, low_open=True), 0.005,
                                       "grow when the validation loss moves less than this per epoch",
                                       space=LogFloat(1e-3, 0.1))
    min_gap: int = setting(Integer(0), 8, "epochs after a growth step before the next may come",
                           space=Int(1, 12))
    window: int = setting(Integer(1), 5, "epochs over which the validation loss's change is averaged",
                          space=Int(1, 8))
    prune_after: int = setting(Integer(0), 2, "epochs after a split before its eps edges are pruned "
                                              "(growth waits for them)")
    tuned_epochs: int | None = tuned_epochs_setting()

    def setup(self) -> None:
        self.t_last = 0

    def delta(self, losses: list[float], window: int | None = None) -> float | None:
        """Mean absolute change of the last ``window`` (default: the setting) steps of ``losses``
        (None if too short)."""
        window = window or self.window
        if len(losses) < window + 1:
            return None
        tail = losses[-(window + 1):]
        return sum(abs(b - a) for a, b in zip(tail, tail[1:])) / window

    def should_grow(self, ctx) -> Decision:
        t, total = ctx.epoch, run_length(ctx)
        window = scale_epochs(self.window, self.tuned_epochs, total)
        gap = max(scale_epochs(c, self.tuned_epochs, total) for c in (self.prune_after, self.min_gap, self.window))
        if t - self.t_last <= gap:
            return Decision(False, f"{t - self.t_last} epochs since the last growth, need > {gap}")
        threshold = scale_rate(self.plateau_threshold, self.tuned_epochs, total)
        delta = self.delta(ctx.history.values("val_loss"), window)
        if delta is None or not delta < threshold:
            return Decision(False, f"validation loss still moving (delta={delta})")
        self.t_last = t
        return Decision(True, f"plateau: delta={delta:.5f} < {threshold:.5g}")

    def state_dict(self) -> dict:
        return {"t_last": self.t_last}

    def load_state_dict(self, state: dict) -> None:
        self.t_last = int(state.get("t_last", 0))

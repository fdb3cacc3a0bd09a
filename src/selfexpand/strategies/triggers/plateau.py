"""``PlateauTrigger``: grow when the validation loss has flattened (edge expansion, ALGORITHMS.md §1).

After epoch ``t``, growth is considered only when ``t - t_last > max(prune_after, min_gap, window)``
(``t_last``: the last growth); then ``delta = mean_{k=1..window} |v_{t-k+1} - v_{t-k}|`` over the
validation losses ``v``, and the trigger fires when ``delta < plateau_threshold``.
"""

from __future__ import annotations

from ...errors import ConfigError
from ..base import Decision, Trigger

__all__ = ["PlateauTrigger"]


class PlateauTrigger(Trigger):
    def __init__(self, plateau_threshold: float = 0.005, min_gap: int = 8, window: int = 5,
                 prune_after: int = 2):
        if isinstance(plateau_threshold, bool) or not isinstance(plateau_threshold, (int, float)) \
                or not plateau_threshold > 0:
            raise ConfigError(f"plateau_threshold must be > 0, got plateau_threshold={plateau_threshold!r}")
        for name, value in (("min_gap", min_gap), ("window", window), ("prune_after", prune_after)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "window" else 0):
                raise ConfigError(f"{name} must be an integer >= {1 if name == 'window' else 0}, got {name}={value!r}")
        self.plateau_threshold, self.min_gap, self.window = plateau_threshold, min_gap, window
        self.prune_after = prune_after
        self.t_last = 0

    def delta(self, losses: list[float]) -> float | None:
        """Mean absolute change of the last ``window`` steps of ``losses`` (None if too short)."""
        if len(losses) < self.window + 1:
            return None
        tail = losses[-(self.window + 1):]
        return sum(abs(b - a) for a, b in zip(tail, tail[1:])) / self.window

    def should_grow(self, ctx) -> Decision:
        t = ctx.epoch
        gap = max(self.prune_after, self.min_gap, self.window)
        if t - self.t_last <= gap:
            return Decision(False, f"{t - self.t_last} epochs since the last growth, need > {gap}")
        delta = self.delta(ctx.history.values("val_loss"))
        if delta is None or not delta < self.plateau_threshold:
            return Decision(False, f"validation loss still moving (delta={delta})")
        self.t_last = t
        return Decision(True, f"plateau: delta={delta:.5f} < {self.plateau_threshold}")

    def state_dict(self) -> dict:
        return {"t_last": self.t_last}

    def load_state_dict(self, state: dict) -> None:
        self.t_last = int(state.get("t_last", 0))

"""``RoundsTrigger``: train in rounds ended by early stopping, then grow by a schedule (SWE + SVoD).

A round trains until the monitored validation value has not improved for ``patience`` epochs
(``final_patience`` in the last round) or the round has trained ``max_round_epochs`` epochs. At the
end of a round the best weights of the round are restored; then, except after the last round, the
trigger asks for ``amount`` new units in total: the reference schedule 36, 47, 60, 80, 102, 134, 174
(ALGORITHMS.md §2; about x1.3 per round), an explicit list, or ``first`` growing by ``ratio`` per round.
After the last round it stops the run. Integration epochs (SWE) count as epochs of the run but
belong to no round.
"""

from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ..base import Decision, Trigger

__all__ = ["RoundsTrigger", "REFERENCE_SCHEDULE"]

REFERENCE_SCHEDULE = (36, 47, 60, 80, 102, 134, 174)
MONITORS = ("val_loss", "val_metric")


class RoundsTrigger(Trigger):
    """Grow at the end of each round of early-stopped training.

    Args:
        rounds: number of training rounds (growth happens ``rounds - 1`` times).
        schedule: units to add after round ``r`` (its length must be at least ``rounds - 1``);
            default: the reference's.
        ratio: with ``first``, use ``round(first * ratio**r)`` instead of a schedule.
        first: the first amount for ``ratio``.
        patience / final_patience: epochs without improvement that end a round / the last round.
        max_round_epochs: epochs that end a round in any case.
        monitor: ``val_loss`` (lower is better) or ``val_metric`` (in the metric's own direction).
        higher_is_better: direction of ``val_metric`` (accuracy: True).
        min_delta: an improvement must exceed this.
    """

    def __init__(self, rounds: int = 3, *, schedule=None, ratio: float | None = None, first: int | None = None,
                 patience: int = 20, final_patience: int = 30, max_round_epochs: int = 250,
                 monitor: str = "val_loss", higher_is_better: bool = True, min_delta: float = 0.0):
        for name, value in (("rounds", rounds), ("patience", patience), ("final_patience", final_patience),
                            ("max_round_epochs", max_round_epochs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {name}={value!r}")
        if monitor not in MONITORS:
            raise ConfigError(f"monitor must be one of {list(MONITORS)}, got monitor={monitor!r}")
        if ratio is not None:
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 0:
                raise ConfigError(f"ratio must be a number > 0, got ratio={ratio!r}")
            if isinstance(first, bool) or not isinstance(first, int) or first < 1:
                raise ConfigError(f"first must be a positive integer when ratio is set, got first={first!r}")
            schedule = [max(1, round(first * ratio ** r)) for r in range(rounds - 1)]
        schedule = list(REFERENCE_SCHEDULE if schedule is None else schedule)
        if len(schedule) < rounds - 1 or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1
                                                 for b in schedule):
            raise ConfigError(f"schedule must list at least rounds - 1 = {rounds - 1} positive integers, "
                              f"got schedule={schedule!r}")
        self.rounds, self.schedule = rounds, schedule[:max(rounds - 1, 0)]
        self.patience, self.final_patience, self.max_round_epochs = patience, final_patience, max_round_epochs
        self.monitor, self.higher_is_better, self.min_delta = monitor, bool(higher_is_better), float(min_delta)
        self._reset_round(0, 0)
        self.best_weights: dict[str, torch.Tensor] = {}

    def _reset_round(self, round_index: int, start_epoch: int) -> None:
        self.round, self.round_start = round_index, start_epoch
        self.best, self.best_epoch, self.wait = math.inf, start_epoch, 0

    def _value(self, record: dict) -> float:
        value = float(record[self.monitor])
        higher = self.monitor == "val_metric" and self.higher_is_better
        return -value if higher else value

    def should_grow(self, ctx) -> Decision:
        record = ctx.history.epochs()[-1]
        value = self._value(record)
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, ctx.epoch, 0
            self.best_weights = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
        else:
            self.wait += 1
        last = self.round == self.rounds - 1
        patience = self.final_patience if last else self.patience
        trained = ctx.epoch - self.round_start
        if self.wait < patience and trained < self.max_round_epochs:
            return Decision(False, f"round {self.round + 1}/{self.rounds}, epoch {trained}")
        why = f"no improvement for {self.wait} epochs" if self.wait >= patience else f"{trained} epochs"
        if self.best_weights:
            ctx.model.load_state_dict(self.best_weights)
        restored = f"best weights of epoch {self.best_epoch} restored"
        if last:
            ctx.stop_training = True
            return Decision(False, f"last round ended ({why}); {restored}; run stops")
        amount = self.schedule[self.round]
        # the next round starts now; growth (and its integration epochs) happens before it trains
        self._reset_round(self.round + 1, ctx.epoch)
        self.best_weights = {}
        self._pending_start = True
        return Decision(True, f"round {self.round}/{self.rounds} ended ({why}); {restored}; grow {amount} units",
                        amount=amount)

    def on_grow_end(self, ctx, events: list) -> None:
        if getattr(self, "_pending_start", False):
            self.round_start = ctx.epoch  # integration epochs belong to no round
            self.best_epoch = ctx.epoch
            self._pending_start = False

    def state_dict(self) -> dict:
        return {"round": self.round, "round_start": self.round_start,
                "best": None if math.isinf(self.best) else self.best,
                "best_epoch": self.best_epoch, "wait": self.wait,
                "pending_start": bool(getattr(self, "_pending_start", False))}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.round, self.round_start = int(state["round"]), int(state["round_start"])
        self.best = math.inf if state["best"] is None else float(state["best"])
        self.best_epoch, self.wait = int(state["best_epoch"]), int(state["wait"])
        self._pending_start = bool(state.get("pending_start", False))

    def state_tensors(self) -> dict:
        return {f"best.{k}": v for k, v in self.best_weights.items()}

    def load_state_tensors(self, tensors: dict) -> None:
        self.best_weights = {k[len("best."):]: v.clone() for k, v in tensors.items() if k.startswith("best.")}

"""``RoundsTrigger``: train in rounds ended by early stopping, then grow by a schedule (SWE + SVoD).

A round trains until the monitored validation value has not improved for ``patience`` epochs
(``final_patience`` in the last round) or the round has trained ``max_round_epochs`` epochs. At the
end of a round the best weights of the round are restored; then, except after the last round, the
trigger asks for ``amount`` new units in total: the reference schedule 36, 47, 60, 80, 102, 134, 174
(ALGORITHMS.md §2; about x1.3 per round), an explicit list, or its first entry growing by ``ratio``
per round.
After the last round it stops the run. Integration epochs (SWE) count as epochs of the run but
belong to no round. ``patience``, ``final_patience`` and ``max_round_epochs`` scale with the run's
length (``tuned_epochs``, see ``strategies.budget``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...errors import ConfigError
from ...settings import setting
from ...spaces import Int
from ...validators import Choice, Integer, IntegerList, Number
from ..base import Decision, Trigger
from ..budget import run_length, scale_epochs, tuned_epochs_setting
from ..registry import register_part

__all__ = ["RoundsTrigger", "REFERENCE_SCHEDULE"]

REFERENCE_SCHEDULE = (36, 47, 60, 80, 102, 134, 174)
MONITORS = ("val_loss", "val_metric")


@register_part
@dataclass(eq=False)
class RoundsTrigger(Trigger):
    """Grow at the end of each round of early-stopped training.

    With ``ratio > 0`` the amounts are ``round(schedule[0] * ratio**r)`` instead of the schedule. A
    ``val_metric`` is better higher or lower as the run's metric says (accuracy: higher).
    """

    name = "rounds"
    rounds: int = setting(Integer(1), 3, "training rounds (growth happens rounds - 1 times)")
    schedule: list = setting(IntegerList(1, min_length=1), list(REFERENCE_SCHEDULE),
                             "units to add after each round (at least rounds - 1 entries)")
    ratio: float = setting(Number(0), 0.0, "grow schedule[0] * ratio**r units after round r instead "
                                           "(0: use the schedule)")
    patience: int = setting(Integer(1), 20, "epochs without improvement that end a round",
                            space=Int(3, 30))
    final_patience: int = setting(Integer(1), 30, "epochs without improvement that end the last round",
                                  space=Int(3, 40))
    max_round_epochs: int = setting(Integer(1), 250, "epochs that end a round in any case")
    monitor: str = setting(Choice(*MONITORS), "val_loss", "the validation value that must improve")
    min_delta: float = setting(Number(0), 0.0, "an improvement must exceed this")
    tuned_epochs: int | None = tuned_epochs_setting()

    def setup(self) -> None:
        if self.ratio > 0:
            self.amounts = [max(1, round(self.schedule[0] * self.ratio ** r)) for r in range(self.rounds - 1)]
        elif len(self.schedule) < self.rounds - 1:
            raise ConfigError(f"schedule must list at least rounds - 1 = {self.rounds - 1} positive integers, "
                              f"got schedule={self.schedule!r}")
        else:
            self.amounts = self.schedule[:self.rounds - 1]
        self._reset_round(0, 0)
        self.best_weights: dict[str, torch.Tensor] = {}
        self._pending_start = False

    def _reset_round(self, round_index: int, start_epoch: int) -> None:
        self.round, self.round_start = round_index, start_epoch
        self.best, self.best_epoch, self.wait = math.inf, start_epoch, 0

    def should_grow(self, ctx) -> Decision:
        value = float(ctx.history.epochs()[-1][self.monitor])
        if self.monitor == "val_metric" and ctx.higher_is_better:
            value = -value
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, ctx.epoch, 0
            self.best_weights = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
        else:
            self.wait += 1
        last = self.round == self.rounds - 1
        patience, longest = (scale_epochs(c, self.tuned_epochs, run_length(ctx)) for c in
                             (self.final_patience if last else self.patience, self.max_round_epochs))
        trained = ctx.epoch - self.round_start
        if self.wait < patience and trained < longest:
            return Decision(False, f"round {self.round + 1}/{self.rounds}, epoch {trained}")
        why = f"no improvement for {self.wait} epochs" if self.wait >= patience else f"{trained} epochs"
        if self.best_weights:
            ctx.model.load_state_dict(self.best_weights)
        restored = f"best weights of epoch {self.best_epoch} restored"
        if last:
            ctx.request_stop("the last round of the rounds trigger ended")
            return Decision(False, f"last round ended ({why}); {restored}; run stops")
        amount = self.amounts[self.round]
        # the next round starts now; growth (and its integration epochs) happens before it trains
        self._reset_round(self.round + 1, ctx.epoch)
        self.best_weights = {}
        self._pending_start = True
        return Decision(True, f"round {self.round}/{self.rounds} ended ({why}); {restored}; grow {amount} units",
                        amount=amount)

    def on_grow_end(self, ctx, events: list, reason: str = "", **kwargs) -> None:
        if self._pending_start:
            self.round_start = ctx.epoch  # integration epochs belong to no round
            self.best_epoch = ctx.epoch
            self._pending_start = False

    def state_dict(self) -> dict:
        return {"round": self.round, "round_start": self.round_start,
                "best": None if math.isinf(self.best) else self.best,
                "best_epoch": self.best_epoch, "wait": self.wait,
                "pending_start": self._pending_start}

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

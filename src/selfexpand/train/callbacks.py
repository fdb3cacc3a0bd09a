"""Callbacks: the trainer's hooks (``selfexpand.hooks``, the vocabulary growth parts use too).

Here: the base class, a logging callback and early stopping. The recorders that add figures to each
epoch record are in ``recorders.py``, the CLI's progress bar in ``progress.py``; ``selfexpand.runs``
adds the recorders and the run-directory writer to every run it trains.
"""

from __future__ import annotations

import logging

from ..hooks import Hooks
from ..validators import positive_int

__all__ = ["Callback", "LoggingCallback", "EarlyStopping"]

log = logging.getLogger("selfexpand.train")


class Callback(Hooks):
    """Base class; override the hooks you need (:class:`selfexpand.hooks.Hooks` lists them and when
    they are called). ``ctx`` is the :class:`GrowthContext`."""


class LoggingCallback(Callback):
    """Logs every epoch and growth event at INFO level."""

    def on_epoch_end(self, ctx, record: dict, **kwargs) -> None:
        log.info("epoch %d train_loss %.4f val_loss %.4f val_%s %.4f params %d", record["epoch"],
                 record["train_loss"], record["val_loss"], ctx.metric_name, record["val_metric"],
                 record["params"])

    def on_grow_end(self, ctx, events: list, reason: str = "", **kwargs) -> None:
        for event in events:
            log.info("growth %s at %s: +%d units, +%d / -%d edges, params %d -> %d (%s)",
                     event.kind, event.site, event.units_added, event.edges_added,
                     event.edges_removed, event.params_before, event.params_after, reason)


class EarlyStopping(Callback):
    """Stop when the validation loss has not improved for ``patience`` epochs."""

    def __init__(self, patience: int):
        self.patience, self.best, self.wait = positive_int("patience", patience), float("inf"), 0

    def on_epoch_end(self, ctx, record: dict, **kwargs) -> None:
        if record["val_loss"] < self.best:
            self.best, self.wait = record["val_loss"], 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            ctx.request_stop(f"early stopping: no better validation loss for {self.wait} epochs")

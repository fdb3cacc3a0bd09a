"""Callbacks: one vocabulary of hooks, every hook taking ``**kwargs``; stopping is a flag.

The library's own callbacks only log. The CLI adds a progress bar and the run directory writer.
"""

from __future__ import annotations

import logging

__all__ = ["Callback", "LoggingCallback", "EarlyStopping"]

log = logging.getLogger("selfexpand.train")


class Callback:
    """Base class; override what you need. ``ctx`` is the :class:`GrowthContext`."""

    def on_train_begin(self, ctx, **kwargs) -> None:
        pass

    def on_epoch_begin(self, ctx, **kwargs) -> None:
        pass

    def on_epoch_end(self, ctx, record: dict, **kwargs) -> None:
        pass

    def on_grow_end(self, ctx, events: list, reason: str = "", **kwargs) -> None:
        pass

    def on_train_end(self, ctx, **kwargs) -> None:
        pass


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
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got patience={patience}")
        self.patience, self.best, self.wait = patience, float("inf"), 0

    def on_epoch_end(self, ctx, record: dict, **kwargs) -> None:
        if record["val_loss"] < self.best:
            self.best, self.wait = record["val_loss"], 0
        else:
            self.wait += 1
            ctx.stop_training = self.wait >= self.patience

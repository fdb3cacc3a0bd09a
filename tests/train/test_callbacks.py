"""Callbacks and parts share one vocabulary of hooks, called in one order; a stop request only ever
turns on: early stopping cannot clear another callback's request."""

from __future__ import annotations

import logging

import pytest

from edgekit import toy_dataset

from selfexpand.errors import ConfigError
from selfexpand.graph import GrowableNet
from selfexpand.hooks import HOOK_NAMES, Hooks
from selfexpand.strategies import GrowthMethod, GrowthPart
from selfexpand.train.callbacks import Callback, EarlyStopping, LoggingCallback
from selfexpand.train.trainer import Trainer


class StopAfter(Callback):
    """Asks the run to stop at the end of epoch ``epoch``."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, ctx, record: dict, **kwargs) -> None:
        if ctx.epoch == self.epoch:
            ctx.request_stop(f"planted stop after epoch {self.epoch}")


class Flat(Callback):
    """Records the same validation loss every epoch: early stopping counts towards its patience."""

    def on_epoch_end(self, ctx, record: dict, **kwargs) -> None:
        record["val_loss"] = 1.0


def _fit(callbacks, epochs: int = 6, method=None):
    trainer = Trainer(method, epochs=epochs, batch_size=32, lr=1e-2, callbacks=callbacks)
    trainer.fit(GrowableNet.mlp([6, 4, 3], seed=0), toy_dataset())
    return trainer.ctx


@pytest.mark.parametrize("order", ["stop first", "early stopping first"])
def test_early_stopping_cannot_clear_another_callback_s_stop(order):
    # early stopping has not run out of patience: it used to write stop_training = False, clearing the stop
    stop, early = StopAfter(2), EarlyStopping(patience=100)
    callbacks = [Flat(), stop, early] if order == "stop first" else [Flat(), early, stop]
    ctx = _fit(callbacks)
    assert ctx.epoch == 2 and ctx.stop_training
    assert ctx.stop_reasons == ["planted stop after epoch 2"]


def test_assigning_false_does_not_withdraw_a_stop_request():
    class Clears(Callback):
        def on_epoch_end(self, ctx, record: dict, **kwargs) -> None:
            ctx.stop_training = False  # what EarlyStopping used to do when it had not run out of patience

    ctx = _fit([StopAfter(3), Clears()])
    assert ctx.epoch == 3 and ctx.stop_training


def test_early_stopping_stops_when_the_loss_stops_improving():
    ctx = _fit([Flat(), EarlyStopping(patience=2)], epochs=10)
    assert ctx.epoch == 3 and "early stopping" in ctx.stop_reasons[0]


@pytest.mark.parametrize("patience", [0, -1, 1.5, True])
def test_early_stopping_refuses_a_bad_patience(patience):
    with pytest.raises(ConfigError, match="patience"):
        EarlyStopping(patience)


def _recording(base: type, who: str, calls: list):
    """An instance of ``base`` noting ``(who, hook)`` for every hook called on it."""
    def note(hook):
        return lambda self, ctx, **kwargs: calls.append((who, hook))

    return type(f"Recording{base.__name__}", (base,), {hook: note(hook) for hook in HOOK_NAMES})()


def test_parts_and_callbacks_hear_the_same_hooks_parts_first():
    calls: list = []
    part, callback = _recording(GrowthPart, "part", calls), _recording(Callback, "callback", calls)
    _fit([callback], epochs=1, method=GrowthMethod("watch", extras=[part]))
    for hook in ("on_train_begin", "on_epoch_begin", "on_validation_end", "on_epoch_end", "on_train_end"):
        assert [who for who, h in calls if h == hook] == ["part", "callback"], hook
    batches = [who for who, h in calls if h == "on_batch_end"]
    assert batches == ["part", "callback"] * (len(batches) // 2) and batches
    assert list(dict.fromkeys(h for _, h in calls)) == ["on_train_begin", "on_epoch_begin", "on_batch_end",
                                                         "on_validation_end", "on_epoch_end", "on_train_end"]
    assert set(HOOK_NAMES) == {n for n in dir(Hooks) if n.startswith("on_")}


def test_logging_callback_logs_epochs(caplog):
    with caplog.at_level(logging.INFO, logger="selfexpand.train"):
        _fit([LoggingCallback()], epochs=2)
    assert sum("epoch" in r.message and "params" in r.message for r in caplog.records) == 2

"""The one vocabulary of training hooks, shared by growth parts and callbacks.

Every hook takes the :class:`~selfexpand.train.context.GrowthContext` and keyword arguments, and
ignores those it does not use (``**kwargs``), so a hook can learn more later without breaking
anyone. The trainer calls each hook on its growth-aware learning rate (when one is on), then on the
method's parts, then on the callbacks, at these moments of an epoch:

``on_train_begin`` once, before the first epoch (also when a run resumes);
``on_epoch_begin`` before the epoch's first batch;
``on_batch_end`` after each batch's ``optimizer.step`` (gradients still in ``.grad``);
``on_validation_end(record=...)`` after the epoch's evaluation, before the trigger is asked; a part
may return growth events here (pruning does); the record is the epoch's history record;
``on_grow_end(events=..., reason=...)`` after a growth step changed the network;
``on_epoch_end(record=...)`` when the epoch is over (growth included); a callback may add keys to the
record, which ``history.jsonl`` keeps when the callback runs before the run directory's writer (the
run's own recorders do; callbacks given to ``train_run`` run after it, so theirs are not stored);
``on_train_end`` once, after the last epoch.

To stop a run, call ``ctx.request_stop(reason)``: the request is a flag that only ever turns on.
"""

from __future__ import annotations

__all__ = ["Hooks", "HOOK_NAMES"]

HOOK_NAMES = ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_validation_end", "on_grow_end",
              "on_epoch_end", "on_train_end")


class Hooks:
    """Base of growth parts and callbacks: every hook does nothing unless overridden."""

    def on_train_begin(self, ctx, **kwargs) -> None:
        pass

    def on_epoch_begin(self, ctx, **kwargs) -> None:
        pass

    def on_batch_end(self, ctx, **kwargs) -> None:
        pass

    def on_validation_end(self, ctx, record: dict, **kwargs) -> list | None:
        """May return growth events (a part that prunes, for instance)."""
        return None

    def on_grow_end(self, ctx, events: list, reason: str = "", **kwargs) -> None:
        pass

    def on_epoch_end(self, ctx, record: dict, **kwargs) -> None:
        pass

    def on_train_end(self, ctx, **kwargs) -> None:
        pass

    def overrides(self, hook: str) -> bool:
        """Whether this object does something at ``hook`` (the trainer skips it per batch if not)."""
        return getattr(type(self), hook) is not getattr(Hooks, hook)

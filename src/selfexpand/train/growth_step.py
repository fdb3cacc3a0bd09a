"""The growth step after an epoch, one sequence for every driver of training (``Trainer`` and the
Lightning callback): the hooks' ``on_validation_end`` (pruning may return events), the trigger's
decision, the selector's sites, the initializer's growth; then the events go to the history and to
the hooks' ``on_grow_end``."""

from __future__ import annotations

from ..hooks import Hooks
from ..ops.storage import dense_storage
from ..strategies.method import GrowthMethod
from .context import GrowthContext

__all__ = ["call_hooks", "grow", "announce"]


def call_hooks(hooks: list[Hooks], hook: str, ctx, **kwargs) -> list:
    """Call ``hook`` on every object of ``hooks`` in order; the growth events they return, in order."""
    events = []
    for h in hooks:
        events += getattr(h, hook)(ctx, **kwargs) or []
    return events


def grow(method: GrowthMethod, hooks: list[Hooks], ctx: GrowthContext, record: dict) -> tuple[list, str]:
    """The step's growth: ``(events, reason)``, ``reason`` the trigger's (``""`` without one). Sets
    ``ctx.decision``. Hooks and strategy see every connection stored dense; sparse storage is chosen
    again when the step ends (``ops.storage``)."""
    with dense_storage(ctx.model, ctx.optimizer):
        return _grow(method, hooks, ctx, record)


def _grow(method: GrowthMethod, hooks: list[Hooks], ctx: GrowthContext, record: dict) -> tuple[list, str]:
    events = call_hooks(hooks, "on_validation_end", ctx, record=record)
    reason = ""
    if method.trigger is not None:
        decision = method.trigger.decide(ctx)
        ctx.decision = decision
        reason = decision.reason
        if decision.grow:
            sites = method.selector.select(ctx) if method.selector else []
            if sites:
                events += method.initializer.grow(ctx, sites)
    return events, reason


def announce(hooks: list[Hooks], ctx: GrowthContext, events: list, reason: str) -> None:
    """The step's events into the history, then ``on_grow_end`` (only when there are events)."""
    if not events:
        return
    for event in events:
        ctx.history.append({"type": "growth", "epoch": ctx.epoch, "reason": reason, **event.to_dict()})
    call_hooks(hooks, "on_grow_end", ctx, events=events, reason=reason)

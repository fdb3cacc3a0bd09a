"""Growth-aware learning rates: after a growth step, a warm-up of the whole rate and a scaled rate for
the entries the step added (in the spirit of variance-transfer growth, Yuan et al. 2023).

Two run-level training settings (:class:`~selfexpand.train.settings.TrainingSettings`), both off by
default and both lengths given as fractions of the run, like ``grow_until``, so that a preset keeps its
shape at 10, 20 or 64 epochs. With ``E`` epochs of ``n`` training steps each:

- ``growth_warmup`` ``w``: the ``k``-th training step after a growth step that added units or edges
  (``k = 1, 2, ...``) trains at the scheduled rate (``lr_schedule``) times ``min(1, k / K)``,
  ``K = max(1, round(w E n))``: a linear ramp from ``1/K`` of the rate. A growth step during a ramp
  starts it again. The factor is set per step on every parameter group; the group's scheduled rate is
  back in place at the end of the epoch's training (before evaluation and growth), so growth and
  checkpoints see the schedule's rate.
- ``new_lr_scale`` ``s`` for ``new_lr_span`` ``f``: an entry added by a growth step takes, at its
  ``k``-th training step, the update its optimizer computed times ``s + (1 - s) (k - 1) / M``,
  ``M = max(1, round(f E n))``: ``s`` at the first step, decaying linearly to 1, an ordinary entry from
  step ``M + 1`` on (no jump when the span ends). The update is rescaled after ``optimizer.step``:
  ``p = where(new, before + scale (p - before), p)``, so it holds for any optimizer (scaling the
  gradient would do nothing to Adam) and every other entry keeps the optimizer's value bit for bit.
  Weight decay is part of the update and is scaled with it.

Both act on the run's training steps (``on_batch_end``), not on training done inside a growth step
(SWE's integration epochs, trained copies).

Which entries are new: at ``on_validation_end`` (this hook runs first, so before any pruning and
growth) every optimizer parameter with optimizer state gets a marker in that state: each entry's flat
index + 1. The ops' carry-over (``selfexpand.ops.optimizer_state.carry_state``) resizes the marker with
the parameter, 0 at new positions; after growth it says where every entry came from. An entry is new
where the marker is 0 or repeats an earlier entry's (a Net2Net copy), and live (its connection's mask);
a parameter that joined the optimizer without a marker is wholly new. An entry still in its span when
a later op moves it (compaction) keeps its place in the schedule. Markers leave the state when growth
is over (``on_grow_end`` / ``on_epoch_end``), before any checkpoint. One limit: Adam, AdamW and RMSprop
start a parameter's state only while it is empty, so a parameter with no state yet (never given a
gradient) gets no marker; if an op then resizes it, all its entries count as new.
"""

from __future__ import annotations

import logging
import math

import torch

from ..errors import CheckpointError
from ..hooks import Hooks
from .natural_gradient import NaturalGradient

__all__ = ["GrowthLR", "MARKER", "TENSOR_PREFIX"]

log = logging.getLogger("selfexpand.train")

#: the optimizer-state key of the entry markers (present only while a growth step runs)
MARKER = "growth_lr_source"
#: checkpoint tensors of the new entries' remaining steps: ``growth_lr.<parameter name>``
TENSOR_PREFIX = "growth_lr."


class GrowthLR(Hooks):
    """The two growth-aware rates as one hook; the trainer builds it and calls it first.

    Args:
        epochs: the run's epochs (``E``).
        warmup: ``growth_warmup`` (fraction of the run, 0: off).
        scale: ``new_lr_scale`` (1: off).
        span: ``new_lr_span`` (fraction of the run, 0: off).
    """

    def __init__(self, *, epochs: int, warmup: float = 0.0, scale: float = 1.0, span: float = 0.0):
        self.epochs, self.warmup, self.scale, self.span = epochs, warmup, scale, span
        self.warm_step: int | None = None  # steps taken since the growth step that started the ramp
        self.left: dict[torch.nn.Parameter, torch.Tensor] = {}  # per entry: steps left at a scaled rate
        self._base: list[tuple[dict, float]] = []  # (param group, its scheduled rate) while ramping
        self._before: dict[torch.nn.Parameter, torch.Tensor] = {}
        self._marked: dict[torch.nn.Parameter, int] = {}  # param -> its markers' offset, during growth
        self._loaded = False  # state restored by load() for the coming fit

    # ------------------------------------------------------------------ settings
    @property
    def warms(self) -> bool:
        return self.warmup > 0

    @property
    def scales(self) -> bool:
        return self.scale != 1 and self.span > 0

    @property
    def active(self) -> bool:
        """Whether either option is on (off: the trainer leaves this hook out entirely)."""
        return self.warms or self.scales

    def steps(self, ctx, fraction: float) -> int:
        """``max(1, round(fraction * epochs * steps per epoch))``."""
        per_epoch = math.ceil(ctx.data.x_train.shape[0] / ctx.batch_size)
        return max(1, round(fraction * self.epochs * per_epoch))

    def factor(self, ctx) -> float:
        """The warm-up factor of the next training step (1 when no ramp is running)."""
        if self.warm_step is None:
            return 1.0
        return min(1.0, (self.warm_step + 1) / self.steps(ctx, self.warmup))

    def on_train_begin(self, ctx, **kwargs) -> None:
        if not self._loaded:  # a fresh run: nothing pending from an earlier fit
            self.warm_step, self.left = None, {}
        self._loaded = False

    # ------------------------------------------------------------------ training steps
    def begin_epoch(self, ctx) -> None:
        """Called by the trainer once the epoch's scheduled rate is set: apply the ramp to the first
        step and note the values the first step starts from."""
        if not self.active:
            return
        if self.warms and self.warm_step is not None:
            self._base = [(group, group["lr"]) for group in ctx.optimizer.param_groups]
            self._set_lr(ctx)
        self._snapshot()

    @torch.no_grad()
    def on_batch_end(self, ctx, **kwargs) -> None:
        if self.left:
            self._rescale(ctx)
        if self._base:
            self.warm_step += 1
            if self.factor(ctx) >= 1.0:
                self._restore_lr()
                self.warm_step = None
            else:
                self._set_lr(ctx)

    def _set_lr(self, ctx) -> None:
        f = self.factor(ctx)
        for group, lr in self._base:
            group["lr"] = lr * f

    def _restore_lr(self) -> None:
        for group, lr in self._base:
            group["lr"] = lr
        self._base = []

    def _snapshot(self) -> None:
        self._before = {p: p.detach().clone() for p in self.left}

    def _rescale(self, ctx) -> None:
        m = self.steps(ctx, self.span)
        for p, left in list(self.left.items()):
            before = self._before.get(p)
            if before is None or before.shape != p.shape:
                continue
            scale = 1 + (self.scale - 1) * left.to(p.dtype) / m
            p.copy_(torch.where(left > 0, before + scale * (p - before), p))
            left.sub_(1).clamp_(min=0)
            if not bool(left.any()):
                del self.left[p]
        self._snapshot()

    # ------------------------------------------------------------------ growth
    def on_validation_end(self, ctx, record: dict, **kwargs) -> None:
        if self._base:  # growth and checkpoints see the schedule's rate; the ramp goes on next epoch
            self._restore_lr()
        if self.scales:
            self._mark(ctx.optimizer)
        return None

    def _mark(self, optimizer) -> None:
        """Put a marker into the state of every optimizer parameter that may hold one: the entries'
        indices + 1 in one numbering over all parameters (so a resized tensor tells where it came from)."""
        tolerant = isinstance(optimizer, (torch.optim.SGD, NaturalGradient))  # no "empty state" rule
        self._marked, offset = {}, 0
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p in self._marked:
                    continue
                if tolerant or optimizer.state.get(p):
                    optimizer.state[p][MARKER] = torch.arange(offset + 1, offset + p.numel() + 1,
                                                              device=p.device).view(p.shape)
                self._marked[p] = offset
                offset += p.numel()

    def on_grow_end(self, ctx, events: list, reason: str = "", **kwargs) -> None:
        added = any(e.units_added > 0 or e.edges_added > 0 for e in events)
        new = self._collect(ctx) if self.scales else 0
        if self.warms and (added or new):
            self.warm_step = 0
        if new:
            log.info("growth_lr: %d new entries at rate x%g for %d steps", new, self.scale,
                     self.steps(ctx, self.span))

    def on_epoch_end(self, ctx, record: dict, **kwargs) -> None:
        self._unmark(ctx.optimizer)

    def on_train_end(self, ctx, **kwargs) -> None:
        self._unmark(ctx.optimizer)
        self._restore_lr()

    def _unmark(self, optimizer) -> None:
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p in optimizer.state:
                    optimizer.state[p].pop(MARKER, None)
        self._marked = {}

    @torch.no_grad()
    def _collect(self, ctx) -> int:
        """Find the new entries after growth, carry the pending ones, drop the markers; how many are new."""
        optimizer, span, masks = ctx.optimizer, self.steps(ctx, self.span), _masks(ctx.model)
        pending = self._pending_by_marker()
        old_left, self.left, count = self.left, {}, 0
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p in self.left:
                    continue
                marker = optimizer.state[p].pop(MARKER, None) if p in optimizer.state else None
                left = torch.zeros(p.shape, dtype=torch.int32, device=p.device)
                if marker is not None:
                    is_new = _new_entries(marker)
                    if pending is not None:
                        old = ~is_new
                        left[old] = pending[(marker[old] - 1).to(pending.device)].to(left.device)
                elif p in self._marked:  # kept, without a marker (no optimizer state yet): all old
                    is_new = torch.zeros(p.shape, dtype=torch.bool, device=p.device)
                    if p in old_left:
                        left = old_left[p]
                else:  # joined the optimizer during growth
                    is_new = torch.ones(p.shape, dtype=torch.bool, device=p.device)
                mask = masks.get(p)
                if mask is not None:
                    is_new &= mask != 0
                left[is_new] = span
                count += int(is_new.sum())
                if bool(left.any()):
                    self.left[p] = left
        self._marked = {}
        return count

    def _pending_by_marker(self) -> torch.Tensor | None:
        """The steps left of every marked entry, indexed by marker - 1 (None: nothing pending)."""
        if not any(p in self._marked for p in self.left):
            return None
        total = sum(p.numel() for p in self._marked)
        device = next(iter(self.left.values())).device
        out = torch.zeros(total, dtype=torch.int32, device=device)
        for p, left in self.left.items():
            if p in self._marked:
                offset = self._marked[p]
                out[offset:offset + p.numel()] = left.reshape(-1).to(device)
        return out

    # ------------------------------------------------------------------ resume
    def save(self, ctx, state: dict) -> dict[str, torch.Tensor]:
        """Write the JSON part into ``state["growth_lr"]`` (nothing when off); the tensors, keyed
        ``growth_lr.<parameter name>``, are returned."""
        if not self.active:
            return {}
        names = {p: n for n, p in ctx.model.named_parameters()}
        tensors = {TENSOR_PREFIX + names[p]: left for p, left in self.left.items() if p in names}
        state["growth_lr"] = {"warm_step": self.warm_step, "pending": sorted(tensors)}
        return tensors

    def load(self, ctx, state: dict) -> None:
        """Restore what :meth:`save` wrote (``state["tensors"]`` holds the checkpoint tensors).

        Raises:
            CheckpointError: a pending tensor that the state names is missing or does not fit its parameter.
        """
        self.warm_step, self.left, self._loaded = None, {}, True
        saved = state.get("growth_lr")
        if not self.active or not saved:
            return
        self.warm_step = saved.get("warm_step")
        params, tensors = dict(ctx.model.named_parameters()), state.get("tensors", {})
        for key in saved.get("pending", []):
            p = params.get(key[len(TENSOR_PREFIX):])
            value = tensors.get(key)
            if p is None or value is None or tuple(value.shape) != tuple(p.shape):
                problem = "missing from the checkpoint tensors" if value is None else "does not fit its parameter"
                raise CheckpointError(f"growth_lr state {key!r}: {problem}")
            self.left[p] = value.to(device=p.device, dtype=torch.int32).clone()


def _new_entries(marker: torch.Tensor) -> torch.Tensor:
    """New where the marker is 0 or repeats an earlier entry's (a copy, e.g. Net2Net's)."""
    flat = marker.reshape(-1)
    first = torch.zeros(flat.shape, dtype=torch.bool, device=flat.device)
    if flat.numel():
        values, inverse = torch.unique(flat, return_inverse=True)
        pos = torch.full(values.shape, flat.numel(), dtype=torch.long, device=flat.device)
        pos = pos.scatter_reduce(0, inverse, torch.arange(flat.numel(), device=flat.device), "amin")
        first[pos] = True
    return ((flat == 0) | ~first).view(marker.shape)


def _masks(model) -> dict:
    """Each connection weight -> its mask (same shape), for the entries that are live."""
    out = {}
    for conn in getattr(model, "connections", {}).values():
        mask, weight = getattr(conn, "mask", None), conn.weight
        if mask is not None and isinstance(weight, torch.nn.Parameter) and mask.shape == weight.shape:
            out[weight] = mask
    return out

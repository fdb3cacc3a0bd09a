"""``Trainer.fit``: epochs over in-memory tensors, evaluation, growth, records.

Per epoch: train on shuffled mini-batches (each growth part sees every batch after the step, so
statistics cost no extra pass), evaluate on the validation split, let the parts act (pruning), ask
the trigger, select, grow, record. ``--epochs`` is the total budget of training epochs. The method's
parts and the callbacks share one vocabulary of hooks (``selfexpand.hooks``), called on the
growth-aware learning rate (``growth_lr``, when one is on) first, then the parts, then the callbacks.

Training that has gone wrong stops: an epoch whose training or validation loss is not finite (an
integration epoch's too) asks the run to stop through the context's stop flag, with its reason, and
is kept in :attr:`Trainer.failure`; that epoch has no growth step. Whoever saves checkpoints reads
``failure`` and keeps the last good one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..hooks import Hooks
from ..strategies.method import GrowthMethod
from ..validators import number, one_of
from . import growth_step
from .callbacks import Callback
from .context import GrowthContext
from .distributed import from_environment
from .flops import FLOP_KEYS, FlopMeter, warm_up
from .growth_lr import GrowthLR
from .history import History
from .metrics import task_loss, task_metric
from .natural_gradient import NaturalGradient
from .settings import TrainingSettings

__all__ = ["Trainer", "FitResult", "make_optimizer", "OPTIMIZERS"]

log = logging.getLogger("selfexpand.train")

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
              "rmsprop": torch.optim.RMSprop, "gd": torch.optim.SGD,  # gd: plain gradient descent
              "natural": NaturalGradient}  # SENN's damped Gauss-Newton steps by conjugate gradient

_NATURAL_LOSS = {"classification": "cross_entropy", "regression": "mse"}  # task -> NaturalGradient loss


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, *,
                   task: str = "classification") -> torch.optim.Optimizer:
    """An optimizer by name (``adam``, ``adamw``, ``sgd`` with momentum 0.9, ``rmsprop``, ``gd``: plain
    gradient descent, i.e. SGD without momentum, ``natural``: :class:`NaturalGradient` with SENN's
    damping 0.1 and at most 100 CG iterations, its curvature that of the ``task``'s loss:
    cross-entropy for ``classification``, MSE for ``regression``)."""
    one_of("optimizer", name, sorted(OPTIMIZERS))
    number("lr", lr, 0, low_open=True)
    if name == "natural":
        one_of("task", task, sorted(_NATURAL_LOSS))
        return NaturalGradient(params, lr=lr, weight_decay=weight_decay, loss=_NATURAL_LOSS[task])
    extra = {"momentum": 0.9} if name == "sgd" else {}
    if name in ("adam", "adamw"):
        # One fused kernel per step instead of a Python loop over parameters: a grown graph has
        # many small tensors, and on CPU this makes its step about 15 % faster (dense: 30 %).
        extra["fused"] = True
    return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay, **extra)


@dataclass
class FitResult:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    history: History
    train_seconds: float
    growth_seconds: float


class Trainer:
    """Trains a growable network and lets a :class:`GrowthMethod` grow it.

    Args:
        method: the growth method (None: a static run).
        epochs: total training epochs of the run.
        batch_size, lr, optimizer, weight_decay: training settings.
        lr_schedule: ``constant``, or ``cosine``: epoch ``t`` (from 0) trains at
            ``lr * (1 + cos(pi t / epochs)) / 2``.
        seed: seeds the data order and random initial values of growth.
        max_params: growth never makes ``params`` exceed this.
        grow_until: no growth after epoch ``grow_until * epochs`` (a fraction of the run).
        growth_warmup, new_lr_scale, new_lr_span: growth-aware learning rates
            (:mod:`selfexpand.train.growth_lr`; off by default; when on, its hook runs before the parts').
        callbacks: :class:`Callback` instances.
        device: where to train.
        dtype: the floating-point type to train in (``torch.float32`` / ``torch.float64`` or their
            names): the model and the data's floating tensors are converted to it; None (default):
            as the model and data are.

    Raises:
        ConfigError: a setting its declaration (:class:`TrainingSettings`) refuses.
    """

    def __init__(self, method: GrowthMethod | None = None, *, epochs: int = 10, batch_size: int = 64,
                 lr: float = 1e-3, optimizer: str = "adam", weight_decay: float = 0.0,
                 lr_schedule: str = "constant", seed: int = 0,
                 max_params: int | None = None, grow_until: float = 1.0, callbacks: list[Callback] | None = None,
                 device: str | torch.device = "cpu", growth_warmup: float = 0.0, new_lr_scale: float = 1.0,
                 new_lr_span: float = 0.1, dtype: str | torch.dtype | None = None):
        checked = TrainingSettings(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                                   weight_decay=weight_decay, lr_schedule=lr_schedule, max_params=max_params,
                                   grow_until=grow_until, growth_warmup=growth_warmup,
                                   new_lr_scale=new_lr_scale, new_lr_span=new_lr_span)
        self.method = method or GrowthMethod("static")
        self.epochs, self.batch_size, self.lr = checked.epochs, checked.batch_size, checked.lr
        self.optimizer_name, self.weight_decay = checked.optimizer, checked.weight_decay
        self.lr_schedule, self.max_params = checked.lr_schedule, checked.max_params
        self.grow_until = checked.grow_until
        self.growth_lr = GrowthLR(epochs=checked.epochs, warmup=checked.growth_warmup, scale=checked.new_lr_scale,
                                  span=checked.new_lr_span)
        self.seed = seed
        self.callbacks = list(callbacks or [])
        self.device = torch.device(device)
        self.dtype = _float_dtype(dtype)
        self.ctx: GrowthContext | None = None
        #: ``{"epoch": E, "reason": "non-finite training loss (nan)"}`` once training went wrong (else None)
        self.failure: dict | None = None

    @classmethod
    def from_settings(cls, method: GrowthMethod | None, settings, **kwargs) -> "Trainer":
        """A trainer with the training settings of a configuration (``selfexpand.presets.resolve_config``,
        or a run's stored one): a training setting the configuration lacks (a run stored before the
        setting existed) takes its default. ``kwargs`` (``seed``, ``max_params``, ``callbacks``,
        ``device``, ...) win over the configuration."""
        values = {s.name: settings[s.name] for s in TrainingSettings.declared() if s.name in settings}
        return cls(method, **{**values, **kwargs})

    def fit(self, model, data, *, optimizer: torch.optim.Optimizer | None = None,
            state: dict | None = None) -> FitResult:
        """Train ``model`` on ``data`` (a ``selfexpand.data.Dataset``) until ``epochs`` are done.

        Args:
            optimizer: resume with this optimizer (its state carried); default: a fresh one.
            state: :meth:`state_dict` of an earlier run, to continue exactly where it stopped.
        """
        model = model.to(self.device) if self.dtype is None else model.to(self.device, self.dtype)
        data = _to_device(data, self.device, self.dtype)
        if optimizer is None:
            optimizer = make_optimizer(self.optimizer_name, model.parameters(), self.lr, self.weight_decay,
                                       task=data.task)
        generator = torch.Generator().manual_seed(self.seed)
        ctx = GrowthContext(model=model, optimizer=optimizer, loss_fn=task_loss(data.task), data=data,
                            batch_size=self.batch_size, generator=generator, device=self.device,
                            max_params=self.max_params, metric_name=task_metric(data.task),
                            epochs_total=self.epochs, grow_until=self.grow_until,
                            parallel=from_environment(self.device))
        self.ctx, self.failure = ctx, None
        spent = {"train": 0.0, "growth": 0.0}
        self._spent = spent
        if state is not None:
            self._load_state(ctx, state, spent)
        hooks = [*([self.growth_lr] if self.growth_lr.active else []), *self.method.parts(), *self.callbacks]
        # a growth step is measured when anything may act in it
        self._acts = self.method.trigger is not None or any(h.overrides("on_validation_end") for h in hooks)
        if self._acts:
            warm_up()  # the process's first dispatch mode imports torch._dynamo (once): in no timed region
        self._call(hooks, "on_train_begin", ctx)
        while ctx.epoch < self.epochs and not ctx.stop_training:
            _freeze_size_past_budget(ctx)
            self._epoch(ctx, hooks, spent)
        self._call(hooks, "on_train_end", ctx)
        return FitResult(model, optimizer, ctx.history, spent["train"], spent["growth"])

    # ------------------------------------------------------------------ one epoch
    def _epoch(self, ctx: GrowthContext, hooks: list[Hooks], spent: dict) -> None:
        start = time.perf_counter()
        self._call(hooks, "on_epoch_begin", ctx)
        if self.lr_schedule == "cosine":
            for group in ctx.optimizer.param_groups:
                group["lr"] = self.lr * (1 + math.cos(math.pi * ctx.epoch / self.epochs)) / 2
        self.growth_lr.begin_epoch(ctx)  # after a growth step: the warm-up factor on the scheduled rate
        per_batch = [h for h in hooks if h.overrides("on_batch_end")]
        loss = ctx.train_epoch(after_step=(lambda: [h.on_batch_end(ctx) for h in per_batch]) if per_batch else None)
        record = ctx.record_epoch(loss, start)
        n_records = len(ctx.history.records)
        if self._fail(ctx, [record]):  # no growth on a network whose loss is not finite
            record["growth_seconds"], record["growth_flops"], growth_seconds = 0.0, 0, 0.0
        else:
            growth_seconds = self._grow(ctx, hooks, record, n_records)
            self._fail(ctx, [r for r in ctx.history.records[n_records:] if r["type"] == "epoch"])
        if ctx.parallel is not None:  # the ranks decided alike: the same network and optimizer state
            ctx.parallel.check_same(ctx.model, ctx.optimizer, f"epoch {ctx.epoch} and its growth step")
        for key in FLOP_KEYS:  # run totals (saved with the trainer's state): this epoch, integration epochs included
            spent[key] = spent.get(key, 0) + sum(r.get(key, 0) for r in [record, *ctx.history.records[n_records:]]
                                                 if r["type"] == "epoch")
        spent["growth"] += growth_seconds
        spent["train"] += time.perf_counter() - start
        self._call(hooks, "on_epoch_end", ctx, record=record)

    def _grow(self, ctx: GrowthContext, hooks: list[Hooks], record: dict, n_records: int) -> float:
        """The growth step after an epoch: the parts act (pruning), the trigger decides, the selector and
        the initializer grow; events go to the history. Its FLOPs are measured (``FlopMeter``:
        FlopCounterMode's count; the context's helpers count their part from the structure) when
        anything may act. Returns its seconds (integration epochs are epochs of the run, not growth)."""
        grow_start = time.perf_counter()
        meter = ctx.growth_meter = FlopMeter() if self._acts else None
        try:
            with meter if meter is not None else contextlib.nullcontext():
                events, reason = growth_step.grow(self.method, hooks, ctx, record)
                integration = sum(r["seconds"] for r in ctx.history.records[n_records:]
                                  if r["type"] == "epoch" and r.get("phase") == "integration")
                growth_seconds = time.perf_counter() - grow_start - integration
                record["growth_seconds"] = growth_seconds
                if integration:
                    record["integration_seconds"] = integration
                growth_step.announce(hooks, ctx, events, reason)
        finally:
            ctx.growth_meter = None
        record["growth_flops"] = meter.total if meter is not None else 0
        return growth_seconds

    def _fail(self, ctx: GrowthContext, records: list[dict]) -> bool:
        """Stop the run if one of these epoch records has a non-finite training or validation loss."""
        for record in records:
            for key, what in (("train_loss", "training"), ("val_loss", "validation")):
                value = record.get(key)
                if isinstance(value, float) and not math.isfinite(value):
                    reason = f"non-finite {what} loss ({value})"
                    self.failure = {"epoch": int(record["epoch"]), "reason": reason}
                    log.warning("epoch %d: %s; training stops", record["epoch"], reason)
                    ctx.request_stop(reason)
                    return True
        return False

    @staticmethod
    def _call(hooks: list[Hooks], hook: str, ctx, **kwargs) -> list:
        """Call ``hook`` on every part, then every callback; the growth events they return, in order."""
        return growth_step.call_hooks(hooks, hook, ctx, **kwargs)

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """JSON-able trainer state and the tensors that go with it (the data-order generator)."""
        ctx = self.ctx
        state = {"epoch": ctx.epoch, "method": self.method.state_dict(),
                 "history": ctx.history.state_dict(), "spent": dict(self._spent)}
        return state, {"generator": ctx.generator.get_state(), **self.method.state_tensors(),
                       **self.growth_lr.save(ctx, state)}

    def _load_state(self, ctx: GrowthContext, state: dict, spent: dict) -> None:
        ctx.epoch = int(state["epoch"])
        ctx.history.load_state_dict(state["history"])
        self.method.load_state_dict(state["method"])
        if "generator" in state:
            ctx.generator.set_state(state["generator"])
        self.method.load_state_tensors(state.get("tensors", {}))
        spent.update(state.get("spent", {}))
        self.growth_lr.load(ctx, state)


def _freeze_size_past_budget(ctx: GrowthContext) -> None:
    """Past ``grow_until`` no method grows: a size set by gradient descent (size modulators) is frozen
    for the epochs after epoch ``grow_until * epochs``."""
    if ctx.epochs_total <= 0 or ctx.epoch < ctx.grow_until * ctx.epochs_total - 1e-9:
        return
    for layer in ctx.model.layers.values():
        modulator = getattr(layer, "modulator", None)
        if modulator is not None and hasattr(modulator, "live_count"):
            modulator.requires_grad_(False)


def _float_dtype(dtype) -> torch.dtype | None:
    if dtype is None:
        return None
    value = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if value not in (torch.float32, torch.float64):
        raise ConfigError(f"dtype must be float32 or float64, got dtype={dtype!r}")
    return value


def _to_device(data, device, dtype: torch.dtype | None = None):
    """``data`` on ``device``, its floating tensors (inputs, regression targets) in ``dtype`` if given."""
    names = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    tensors = {k: getattr(data, k) for k in names}
    if all(t.device == device and (dtype is None or not t.is_floating_point() or t.dtype == dtype)
           for t in tensors.values()):
        return data
    import dataclasses

    moved = {k: t.to(device, dtype) if dtype is not None and t.is_floating_point() else t.to(device)
             for k, t in tensors.items()}
    return dataclasses.replace(data, **moved)


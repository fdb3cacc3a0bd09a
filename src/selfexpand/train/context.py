"""``GrowthContext``: everything a strategy may look at or use while deciding and growing."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import torch

from ..graph.network import GrowableNet
from .auxiliary import auxiliary_loss, auxiliary_terms
from .flops import FlopMeter, flop_breakdown, natural_step_flops
from .history import History
from .metrics import HIGHER_IS_BETTER

__all__ = ["GrowthContext"]


@dataclass
class GrowthContext:
    """The model, its optimizer, the data and the helpers strategies share.

    Attributes:
        model: the growable network (edit it only through ``selfexpand.ops``).
        optimizer: the optimizer training it (pass it to every op so its state is carried).
        loss_fn: ``loss_fn(outputs, targets) -> scalar``.
        data: the ``selfexpand.data.Dataset`` (tensors already on ``device``).
        batch_size: training batch size.
        generator: the run's ``torch.Generator`` (shuffling, random initial values).
        history: the run's :class:`History`.
        max_params: growth never makes ``params`` exceed this (None: no bound).
        epoch: number of training epochs completed so far.
        epochs_total: the run's budget of training epochs.
        grow_until: the fraction of ``epochs_total`` after which no method grows (:attr:`growth_open`).
        decision: the trigger's latest :class:`~selfexpand.strategies.base.Decision` (a selector
            reads ``decision.amount`` when the trigger sets how many units to add).
        stop_training: whether a part or callback asked the run to stop (:meth:`request_stop`); the
            flag only ever turns on: assigning False after a request does not clear it.
        growth_meter: the :class:`~selfexpand.train.flops.FlopMeter` measuring the growth step in
            progress (set by the trainer; None outside growth steps). The helpers below count their
            work on a :class:`GrowableNet` from its structure and add it to the meter, paused meanwhile
            (``selfexpand.train.flops``).
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: Callable
    data: object
    batch_size: int
    generator: torch.Generator
    history: History = field(default_factory=History)
    device: torch.device = torch.device("cpu")
    max_params: int | None = None
    epoch: int = 0
    epochs_total: int = 0
    grow_until: float = 1.0
    metric_name: str = "accuracy"
    decision: object = None
    stop_reasons: list[str] = field(default_factory=list)
    growth_meter: FlopMeter | None = field(default=None, repr=False)
    #: the data-parallel group (``train.distributed``) when the run trains on several ranks, else None
    parallel: object = field(default=None, repr=False)
    # (stored, live) training FLOPs of the model since the last epoch record (record_epoch stores them)
    _train_flops: list[int] = field(default_factory=lambda: [0, 0], init=False, repr=False)

    @property
    def stop_training(self) -> bool:
        return bool(self.stop_reasons)

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        if value:
            self.request_stop("stop_training set")

    def request_stop(self, reason: str) -> None:
        """Ask the run to stop after this epoch (every request is kept; none can be withdrawn)."""
        self.stop_reasons.append(str(reason))

    @property
    def growth_open(self) -> bool:
        """Whether growth may still come after the epoch just completed: not after epoch
        ``grow_until * epochs_total`` (at 1, growth after the last epoch is allowed, as the reference
        codes do, though nothing trains what it adds). Always open when the budget is unknown
        (``epochs_total`` 0)."""
        return self.epochs_total <= 0 or self.epoch <= self.grow_until * self.epochs_total + 1e-9

    @property
    def higher_is_better(self) -> bool:
        """Whether the run's metric improves upwards (accuracy) or downwards (MSE)."""
        return HIGHER_IS_BETTER[self.metric_name]

    @property
    def params(self) -> int:
        return self.model.counts()["params"]

    def params_left(self) -> float:
        """How many ``params`` growth may still add (infinity without a budget)."""
        return float("inf") if self.max_params is None else self.max_params - self.params

    def train_batches(self, shuffle: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Mini-batches of the training split, shuffled by the run's generator."""
        x, y = self.data.x_train, self.data.y_train
        n = x.shape[0]
        order = torch.randperm(n, generator=self.generator) if shuffle else torch.arange(n)
        order = order.to(x.device)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            yield x[idx], y[idx]

    @torch.no_grad()
    def evaluate(self, split: str = "val", model: torch.nn.Module | None = None) -> dict[str, float]:
        """Mean loss and metric of ``model`` (default: the context's) on ``split``. Asked for during
        a growth step, its forward FLOPs are growth FLOPs."""
        from .metrics import evaluate

        model = model or self.model
        x, y = getattr(self.data, f"x_{split}"), getattr(self.data, f"y_{split}")
        meter = self.growth_meter
        if meter is None or not meter.running or not isinstance(model, GrowableNet):
            return evaluate(model, x, y, self.loss_fn, self.metric_name)
        with meter.paused():
            result = evaluate(model, x, y, self.loss_fn, self.metric_name)
        meter.add(flop_breakdown(model).forward * x.shape[0])
        return result

    def _meter_paused(self, model: torch.nn.Module | None = None):
        """The growth meter paused (nothing when there is none, or ``model`` is not counted from its
        structure and so must stay measured)."""
        if self.growth_meter is None or (model is not None and not isinstance(model, GrowableNet)):
            return nullcontext()
        return self.growth_meter.paused()

    def gradient_pass(self, on_batch: Callable[[], None], n_batches: int | None = None, *,
                      model: torch.nn.Module | None = None, batch_size: int | None = None) -> None:
        """Backward over training batches without updating anything: ``on_batch()`` reads the
        ``.grad`` of whatever parameters it needs after each batch. Gradients are cleared after.

        Args:
            n_batches: stop after this many batches (default: one pass over the training set).
            model: the model to differentiate (default: the context's; a throw-away copy works too).
            batch_size: batch size of the pass (default: the run's).

        Its FLOPs (forward and backward) are growth FLOPs when a growth step is being measured.
        """
        model = model or self.model
        was_training = model.training
        model.train()
        saved, self.batch_size = self.batch_size, batch_size or self.batch_size
        counted = self.growth_meter is not None and isinstance(model, GrowableNet)
        per_example = flop_breakdown(model).train[0] if counted else 0
        seen = 0
        try:
            with self._meter_paused(model):
                for i, (xb, yb) in enumerate(self.train_batches(shuffle=False)):
                    if n_batches is not None and i >= n_batches:
                        break
                    model.zero_grad(set_to_none=True)
                    self.loss_fn(model(xb), yb).backward()
                    seen += xb.shape[0]
                    on_batch()
        finally:
            self.batch_size = saved
            model.zero_grad(set_to_none=True)
            model.train(was_training)
            if counted:
                self.growth_meter.add(per_example * seen)

    def mean_gradients(self, params: list[torch.nn.Parameter], *, model: torch.nn.Module | None = None,
                       batch_size: int | None = None) -> list[torch.Tensor]:
        """The gradients of the training set's mean loss with respect to ``params`` (float64, on the
        CPU), from one :meth:`gradient_pass`: each batch's gradient weighted by its size, summed on
        the parameters' device (one copy to the host at the end, none per batch)."""
        n = self.data.x_train.shape[0]
        batch = batch_size or self.batch_size
        totals = [torch.zeros(p.shape, dtype=torch.float64, device=p.device) for p in params]
        seen = [0]

        def on_batch():
            size = min(batch, n - seen[0])
            seen[0] += size
            for total, p in zip(totals, params):
                total.add_(p.grad.detach().double() * size)

        self.gradient_pass(on_batch, model=model, batch_size=batch)
        return [(total / max(n, 1)).cpu() for total in totals]

    def train_epoch(self, model: torch.nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None,
                    *, params: Iterable[torch.nn.Parameter] | None = None,
                    after_backward: Callable[[], None] | None = None,
                    after_step: Callable[[], None] | None = None) -> float:
        """One epoch over shuffled training batches; returns the mean training loss.

        Args:
            model, optimizer: default the context's (a copy with its own optimizer works too).
            params: train only these; every other parameter of ``model`` has ``requires_grad``
                off for the epoch, so it gets no gradient and the optimizer skips it entirely (no
                weight decay, no state change). Default: all parameters.
            after_backward: called after each ``backward``, before ``optimizer.step``.
            after_step: called after each ``optimizer.step`` (gradients still in ``.grad``).

        An optimizer with ``needs_outputs`` (e.g. ``NaturalGradient``) gets the batch's outputs:
        ``backward`` keeps the graph and ``optimizer.set_outputs(outputs)`` precedes each step.

        On several ranks (``parallel``), the context's model trains on this rank's shard of every
        batch and its gradients are averaged over the ranks before ``after_backward`` (see
        ``train.distributed``); a copy, or an optimizer with ``needs_outputs``, trains on whole batches
        on every rank. The returned loss is the whole epoch's on every rank.

        FLOPs (``selfexpand.train.flops``, counted from the structure of a :class:`GrowableNet`
        under the epoch's ``requires_grad`` flags): training the context's model adds to the next
        epoch record's ``train_flops`` / ``live_train_flops``; training another model (a copy) during
        a growth step adds to its growth FLOPs.
        """
        model, optimizer = model or self.model, optimizer or self.optimizer
        needs_outputs = getattr(optimizer, "needs_outputs", False)
        frozen = []
        if params is not None:
            keep = {id(p) for p in params}
            frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in keep]
            for p in frozen:
                p.requires_grad_(False)
        model.train()
        total, count = torch.zeros((), device=self.device), 0
        terms = auxiliary_terms(model)  # size losses of modulators, as the trainer adds them
        counted = isinstance(model, GrowableNet)
        breakdown = flop_breakdown(model) if counted else None
        solver = [0, 0]  # the natural gradient's CG products (stored, live)
        measure_step = counted and needs_outputs and model.front is not None
        split = self.parallel if model is self.model and not needs_outputs else None
        try:
            with self._meter_paused(model):
                for xb, yb in self.train_batches():
                    share = 1.0
                    if split is not None:
                        xb, yb, share = split.shard(xb, yb)
                    optimizer.zero_grad(set_to_none=True)
                    out = model(xb)
                    loss = self.loss_fn(out, yb) if xb.shape[0] else out.sum() * 0  # an empty shard adds 0
                    extra = auxiliary_loss(model, terms)
                    objective = loss if split is None else loss * share
                    (objective if extra is None else objective + extra).backward(retain_graph=needs_outputs)
                    if split is not None:
                        split.average_gradients(model.parameters())
                    if after_backward is not None:
                        after_backward()
                    if needs_outputs:
                        optimizer.set_outputs(out)
                    # behind a front the solver's products are measured (see natural_step_flops)
                    with FlopMeter() if measure_step else nullcontext() as step_meter:
                        optimizer.step()
                    if counted and needs_outputs:
                        iterations = getattr(optimizer, "last_info", {}).get("iterations", 0)
                        stored, live = natural_step_flops(breakdown, xb.shape[0], iterations,
                                                          step_meter.total if measure_step else None)
                        solver[0] += stored
                        solver[1] += live
                    if after_step is not None:
                        after_step()
                    total += loss.detach() * xb.shape[0]
                    count += xb.shape[0]
        finally:
            for p in frozen:
                p.requires_grad_(True)
            optimizer.zero_grad(set_to_none=True)
        if split is not None:  # the epoch's loss and examples over every rank
            total, count = split.sum(float(total), count)
            count = int(count)
        if counted:
            stored, live = breakdown.train
            stored, live = stored * count + solver[0], live * count + solver[1]
            if model is self.model:
                self._train_flops[0] += stored
                self._train_flops[1] += live
            elif self.growth_meter is not None:
                self.growth_meter.add(stored)
        return float(total) / max(count, 1)

    def record_epoch(self, train_loss: float, start: float, **extra) -> dict:
        """Count one training epoch of the model: evaluate on the validation split and append the
        epoch record (``type: epoch``) to the history. Integration epochs (SWE) use it too, with
        ``phase="integration"``. ``start`` is the epoch's ``time.perf_counter()`` start: the
        record's ``seconds`` run from it to the end of the evaluation. The record's ``train_flops``
        and ``live_train_flops`` are those of the model's training since the previous record (see
        :meth:`train_epoch`); the validation pass is neither training nor growth. Returns the record
        (callers may add keys to it)."""
        self.epoch += 1
        with self._meter_paused():
            val = self.evaluate("val")
        (train_flops, live_train_flops), self._train_flops = self._train_flops, [0, 0]
        record = {"type": "epoch", "epoch": self.epoch, "train_loss": train_loss,
                  "val_loss": val["loss"], "val_metric": val[self.metric_name], **self.model.counts(),
                  "seconds": time.perf_counter() - start, "train_flops": train_flops,
                  "live_train_flops": live_train_flops, **extra}
        self.history.append(record)
        return record

    def model_epoch(self, *, params: Iterable[torch.nn.Parameter] | None = None,
                    after_backward: Callable[[], None] | None = None,
                    optimizer: torch.optim.Optimizer | None = None, **extra) -> dict:
        """Train the model itself for one epoch (see :meth:`train_epoch`; default optimizer: the
        run's) and record it as an epoch of the run (see :meth:`record_epoch`)."""
        start = time.perf_counter()
        loss = self.train_epoch(optimizer=optimizer, params=params, after_backward=after_backward)
        return self.record_epoch(loss, start, **extra)

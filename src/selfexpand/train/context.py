"""``GrowthContext``: everything a strategy may look at or use while deciding and growing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import torch

from .auxiliary import auxiliary_loss, auxiliary_terms
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
        decision: the trigger's latest :class:`~selfexpand.strategies.base.Decision` (a selector
            reads ``decision.amount`` when the trigger sets how many units to add).
        stop_training: whether a part or callback asked the run to stop (:meth:`request_stop`); the
            flag only ever turns on: assigning False after a request does not clear it.
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
    metric_name: str = "accuracy"
    decision: object = None
    stop_reasons: list[str] = field(default_factory=list)

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
        """Mean loss and metric of ``model`` (default: the context's) on ``split``."""
        from .metrics import evaluate

        x, y = getattr(self.data, f"x_{split}"), getattr(self.data, f"y_{split}")
        return evaluate(model or self.model, x, y, self.loss_fn, self.metric_name)

    def gradient_pass(self, on_batch: Callable[[], None], n_batches: int | None = None, *,
                      model: torch.nn.Module | None = None, batch_size: int | None = None) -> None:
        """Backward over training batches without updating anything: ``on_batch()`` reads the
        ``.grad`` of whatever parameters it needs after each batch. Gradients are cleared after.

        Args:
            n_batches: stop after this many batches (default: one pass over the training set).
            model: the model to differentiate (default: the context's; a throw-away copy works too).
            batch_size: batch size of the pass (default: the run's).
        """
        model = model or self.model
        was_training = model.training
        model.train()
        saved, self.batch_size = self.batch_size, batch_size or self.batch_size
        try:
            for i, (xb, yb) in enumerate(self.train_batches(shuffle=False)):
                if n_batches is not None and i >= n_batches:
                    break
                model.zero_grad(set_to_none=True)
                self.loss_fn(model(xb), yb).backward()
                on_batch()
        finally:
            self.batch_size = saved
            model.zero_grad(set_to_none=True)
            model.train(was_training)

    def mean_gradients(self, params: list[torch.nn.Parameter], *, model: torch.nn.Module | None = None,
                       batch_size: int | None = None) -> list[torch.Tensor]:
        """The gradients of the training set's mean loss with respect to ``params`` (float64, on the
        CPU), from one :meth:`gradient_pass`: each batch's gradient weighted by its size."""
        n = self.data.x_train.shape[0]
        batch = batch_size or self.batch_size
        totals = [torch.zeros(p.shape, dtype=torch.float64) for p in params]
        seen = [0]

        def on_batch():
            size = min(batch, n - seen[0])
            seen[0] += size
            for total, p in zip(totals, params):
                total.add_(p.grad.detach().double().cpu() * size)

        self.gradient_pass(on_batch, model=model, batch_size=batch)
        return [total / max(n, 1) for total in totals]

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
        try:
            for xb, yb in self.train_batches():
                optimizer.zero_grad(set_to_none=True)
                out = model(xb)
                loss = self.loss_fn(out, yb)
                extra = auxiliary_loss(model, terms)
                (loss if extra is None else loss + extra).backward(retain_graph=needs_outputs)
                if after_backward is not None:
                    after_backward()
                if needs_outputs:
                    optimizer.set_outputs(out)
                optimizer.step()
                if after_step is not None:
                    after_step()
                total += loss.detach() * xb.shape[0]
                count += xb.shape[0]
        finally:
            for p in frozen:
                p.requires_grad_(True)
            optimizer.zero_grad(set_to_none=True)
        return float(total) / max(count, 1)

    def record_epoch(self, train_loss: float, start: float, **extra) -> dict:
        """Count one training epoch of the model: evaluate on the validation split and append the
        epoch record (``type: epoch``) to the history. Integration epochs (SWE) use it too, with
        ``phase="integration"``. ``start`` is the epoch's ``time.perf_counter()`` start: the
        record's ``seconds`` run from it to the end of the evaluation. Returns the record (callers
        may add keys to it)."""
        self.epoch += 1
        val = self.evaluate("val")
        record = {"type": "epoch", "epoch": self.epoch, "train_loss": train_loss,
                  "val_loss": val["loss"], "val_metric": val[self.metric_name], **self.model.counts(),
                  "seconds": time.perf_counter() - start, **extra}
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

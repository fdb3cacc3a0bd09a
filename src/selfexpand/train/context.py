"""``GrowthContext``: everything a strategy may look at or use while deciding and growing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from .history import History

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
    stop_training: bool = False
    metric_name: str = "accuracy"

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

    def gradient_pass(self, on_batch: Callable[[], None], n_batches: int | None = None) -> None:
        """Backward over training batches without updating anything: ``on_batch()`` reads the
        ``.grad`` of whatever parameters it needs after each batch. Gradients are cleared after."""
        model = self.model
        was_training = model.training
        model.train()
        for i, (xb, yb) in enumerate(self.train_batches(shuffle=False)):
            if n_batches is not None and i >= n_batches:
                break
            model.zero_grad(set_to_none=True)
            self.loss_fn(model(xb), yb).backward()
            on_batch()
        model.zero_grad(set_to_none=True)
        model.train(was_training)

"""Loss and metric per task: cross-entropy / accuracy, or mean squared error / MSE."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["task_loss", "task_metric", "evaluate", "HIGHER_IS_BETTER"]

HIGHER_IS_BETTER = {"accuracy": True, "mse": False}


def task_loss(task: str):
    """The training loss of ``task`` (``classification`` or ``regression``)."""
    return F.cross_entropy if task == "classification" else F.mse_loss


def task_metric(task: str) -> str:
    return "accuracy" if task == "classification" else "mse"


@torch.no_grad()
def evaluate(model, x, y, loss_fn, metric: str, batch_size: int = 4096) -> dict[str, float]:
    """Mean loss and ``metric`` of ``model`` over ``(x, y)`` in evaluation mode."""
    was_training = model.training
    model.eval()
    total_loss = total_metric = 0.0
    n = x.shape[0]
    for start in range(0, n, batch_size):
        out = model(x[start:start + batch_size])
        yb = y[start:start + batch_size]
        total_loss += float(loss_fn(out, yb, reduction="sum"))
        if metric == "accuracy":
            total_metric += float((out.argmax(1) == yb).sum())
        else:
            total_metric += float(F.mse_loss(out, yb, reduction="sum")) / max(1, out.shape[1])
    model.train(was_training)
    if n == 0:
        return {"loss": float("nan"), metric: float("nan")}
    if loss_fn is F.mse_loss:
        total_loss /= max(1, y.shape[1] if y.dim() > 1 else 1)
    return {"loss": total_loss / n, metric: total_metric / n}

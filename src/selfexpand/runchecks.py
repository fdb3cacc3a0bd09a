"""What a run says when it is not going as it should: warnings, and the message of a stopped run.

Warnings are plain sentences, logged when found (each record marked ``run_warning``, so that the CLI,
which prints them after the run's table, can leave the log's copy out) and listed in ``summary.json``
under ``warnings``:

- a classification target with a single class in the training labels;
- a method that cannot grow from its start: its selector grows the units of hidden layers
  (``Selector.grows == "units"``) and the start network has none;
- a ``params`` budget below the start network's ``params`` (nothing can grow);
- divergence: a validation loss above 100 times the first epoch's, or above 1e6.
"""

from __future__ import annotations

import logging
import math

__all__ = ["start_warnings", "divergence_warning", "stop_message", "RUN_WARNING", "DIVERGENCE_FACTOR", "DIVERGENCE_LOSS"]

log = logging.getLogger("selfexpand.runs")

#: the ``extra`` of a warning's log record: the same text is in the run's summary
RUN_WARNING = {"run_warning": True}

DIVERGENCE_FACTOR = 100.0
DIVERGENCE_LOSS = 1e6


def start_warnings(method, model, data, budget: int | None, params_start: int) -> list[str]:
    """The warnings known before training: single-class target, no site to grow, budget below the
    start (``method``: a ``GrowthMethod``; ``model``: the network training starts from)."""
    out = []
    if data.task == "classification":
        classes = int(data.y_train.unique().numel())
        if classes < 2:
            out.append(f"the training labels of {data.name} hold {classes} class: a classifier has nothing to "
                       f"learn (is the target column right?)")
    selector = getattr(method, "selector", None)
    hidden = getattr(model, "hidden_layers", None)
    if selector is not None and getattr(selector, "grows", None) == "units" and hidden is not None \
            and not hidden():
        out.append(f"method {method.name!r} grows the units of hidden layers and its start network has none "
                   f"(hidden: []): it cannot grow; give it hidden layers (--set hidden=[16])")
    if budget is not None and budget < params_start:
        out.append(f"the params budget (max_params {budget}) is below the start network's {params_start} "
                   f"params: nothing can grow")
    for text in out:
        log.warning(text, extra=RUN_WARNING)
    return out


def divergence_warning(history: list[dict]) -> str | None:
    """A warning when the validation loss diverged: above ``DIVERGENCE_FACTOR`` times the first
    epoch's, or above ``DIVERGENCE_LOSS`` (classification and regression alike)."""
    losses = [(r["epoch"], r.get("val_loss")) for r in history if r.get("type") == "epoch"]
    losses = [(e, v) for e, v in losses if isinstance(v, (int, float)) and math.isfinite(v)]
    if not losses:
        return None
    first = losses[0][1]
    epoch, worst = max(losses, key=lambda ev: ev[1])
    if worst > DIVERGENCE_LOSS or (first > 0 and worst > DIVERGENCE_FACTOR * first):
        text = (f"training diverged: the validation loss reached {worst:.4g} at epoch {epoch} (epoch "
                f"{losses[0][0]}: {first:.4g}); try a smaller --lr")
        log.warning(text, extra=RUN_WARNING)
        return text
    return None


def stop_message(failure: dict, kept_epoch: int | None, lr: float, run_dir) -> str:
    """The message of a run stopped on a non-finite loss (``TrainingStopped``)."""
    kept = (f"the last good checkpoint (epoch {kept_epoch}) is kept" if kept_epoch is not None else
            "no checkpoint was saved")
    return (f"training stopped at epoch {failure['epoch']}: {failure['reason']}; {kept}: resume with a smaller "
            f"--lr (this run's is {lr:g}), e.g. `selfexpand resume {run_dir} --lr {lr / 10:g}`")

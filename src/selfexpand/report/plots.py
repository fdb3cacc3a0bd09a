"""``growth.png``: a run's losses, validation metric and ``params`` per epoch, growth and prune events
marked."""

from __future__ import annotations

import json
from pathlib import Path

from .summary import GROWING_KINDS

__all__ = ["plot_growth", "PRUNE_KINDS"]

#: event kinds drawn as pruning (red, dashed); growth (green, dotted) is ``GROWING_KINDS``
PRUNE_KINDS = ("prune_edges", "remove_units")


def _title(path: Path) -> str | None:
    """``method on dataset, seed N`` from the ``summary.json`` beside ``path`` (None without one)."""
    try:
        summary = json.loads((path.parent / "summary.json").read_text())
        return f"{summary['method']} on {summary['dataset']}, seed {summary['seed']}"
    except (OSError, KeyError, ValueError):
        return None


def plot_growth(history: list[dict], path: str | Path, metric_name: str = "metric", *,
                title: str | None = None) -> None:
    """Three stacked panels sharing the epoch axis: training and validation loss, validation metric,
    ``params``; a vertical line at each epoch with a growth event (green, dotted) or a prune event
    (red, dashed), in every panel; a legend in each panel (the events' in the top one).

    Args:
        title: the figure's title; default ``method on dataset, seed N`` from the ``summary.json``
            beside ``path`` when there is one (a run directory), else none.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    epochs = [r for r in history if r["type"] == "epoch"]
    events = [r for r in history if r["type"] == "growth"]
    grown = sorted({r["epoch"] for r in events if r["kind"] in GROWING_KINDS})
    pruned = sorted({r["epoch"] for r in events if r["kind"] in PRUNE_KINDS})
    x = [r["epoch"] for r in epochs]
    fig, (loss, metric, size) = plt.subplots(3, 1, sharex=True, figsize=(7, 7))
    loss.plot(x, [r.get("train_loss") for r in epochs], color="tab:orange", label="training loss")
    loss.plot(x, [r.get("val_loss") for r in epochs], color="tab:purple", label="validation loss")
    loss.set_ylabel("loss")
    metric.plot(x, [r["val_metric"] for r in epochs], color="tab:blue", label=f"validation {metric_name}")
    metric.set_ylabel(f"validation {metric_name}")
    size.plot(x, [r["params"] for r in epochs], color="tab:green", label="params")
    size.set_ylabel("params")
    size.set_xlabel("epoch")
    for ax in (loss, metric, size):
        first = ax is loss  # the events' legend once, in the top panel
        for i, e in enumerate(grown):
            ax.axvline(e, color="tab:green", linestyle=":", linewidth=1.2, label="growth" if first and not i else None)
        for i, e in enumerate(pruned):
            ax.axvline(e, color="tab:red", linestyle="--", linewidth=1, label="pruning" if first and not i else None)
        ax.grid(True, alpha=0.25)
        ax.legend(fontsize=7, loc="best")
    size.xaxis.set_major_locator(MaxNLocator(integer=True))
    title = title if title is not None else _title(path)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

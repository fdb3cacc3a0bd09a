"""``growth.png``: validation metric and ``params`` per epoch, growth events marked."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_growth"]


def plot_growth(history: list[dict], path: str | Path, metric_name: str = "metric") -> None:
    """Two stacked panels sharing the epoch axis; vertical lines at growth epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r for r in history if r["type"] == "epoch"]
    grown = sorted({r["epoch"] for r in history if r["type"] == "growth"
                    and r["kind"] in ("split_edges", "add_units", "insert_layer")})
    x = [r["epoch"] for r in epochs]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(6, 5))
    top.plot(x, [r["val_metric"] for r in epochs], color="tab:blue")
    top.set_ylabel(f"validation {metric_name}")
    bottom.plot(x, [r["params"] for r in epochs], color="tab:green")
    bottom.set_ylabel("params")
    bottom.set_xlabel("epoch")
    for ax in (top, bottom):
        for e in grown:
            ax.axvline(e, color="grey", linestyle=":", linewidth=1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

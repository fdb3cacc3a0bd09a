"""The run summary (``summary.json``) from a history, the final model and its test metric.

A figure that is not a number (a run stopped on a non-finite loss: no test metric) is None, written
as ``null``; the best validation metric is over the epochs whose metric is finite.
"""

from __future__ import annotations

import math

from .inactivity import inactivity_fields

__all__ = ["GROWING_KINDS", "FLOP_KEYS", "summarize", "flop_totals", "SUMMARY_TABLE_KEYS"]

GROWING_KINDS = ("split_edges", "add_units", "insert_layer", "split_units", "add_channels", "split_channels",
                 "insert_conv_layer")

SUMMARY_TABLE_KEYS = ("method", "dataset", "seed", "epochs", "test_metric", "best_val_metric",
                      "params_start", "params_final", "weights_active_final", "stored_params_final",
                      "growth_events", "units_added", "edges_added", "edges_pruned", "train_seconds",
                      "growth_seconds", "train_flops", "live_train_flops", "growth_flops",
                      "inactive_units_fraction", "inactive_new_units_fraction")

#: compute accounting (``selfexpand.train.flops``): per epoch record and run totals, same names
FLOP_KEYS = ("train_flops", "live_train_flops", "growth_flops")


def flop_totals(history: list[dict]) -> dict[str, int | None]:
    """The run totals of :data:`FLOP_KEYS`: sums over the epoch records (integration epochs
    included); None for a key no epoch record holds (runs made before the accounting)."""
    epochs = [r for r in history if r["type"] == "epoch"]
    return {key: (int(sum(r.get(key, 0) for r in epochs)) if any(key in r for r in epochs) else None)
            for key in FLOP_KEYS}


def summarize(*, method: str, dataset: str, seed: int, history: list[dict], counts_start: dict,
              counts_final: dict, metric_name: str, higher_is_better: bool, test_metric: float | None,
              train_seconds: float, growth_seconds: float, inactivity: dict | None = None,
              extra: dict | None = None) -> dict:
    """Every key the CLI table, the bench and the docs rely on (counts are plain ints; the FLOP
    totals from :func:`flop_totals`).

    Args:
        inactivity: :func:`selfexpand.report.inactivity.inactivity` of the final model on the
            validation set; its fractions and per-layer counts are copied (None when not given).
    """
    epochs = [r for r in history if r["type"] == "epoch"]
    growth = [r for r in history if r["type"] == "growth"]
    val = [r["val_metric"] for r in epochs if _finite(r.get("val_metric"))]
    best = (max(val) if higher_is_better else min(val)) if val else None
    grown = [g for g in growth if g["kind"] in GROWING_KINDS]
    return {
        "method": method,
        "dataset": dataset,
        "seed": seed,
        "epochs": len(epochs),
        "metric_name": metric_name,
        "higher_is_better": higher_is_better,
        "test_metric": float(test_metric) if _finite(test_metric) else None,
        "best_val_metric": float(best) if best is not None else None,
        "params_start": int(counts_start["params"]),
        "params_final": int(counts_final["params"]),
        "weights_active_final": int(counts_final["weights_active"]),
        "stored_params_final": int(counts_final["stored_params"]),
        "front_params": int(counts_final["front_params"]),
        "train_seconds": float(train_seconds),
        "growth_seconds": float(growth_seconds),
        **flop_totals(history),
        "growth_events": len(grown),
        "units_added": int(sum(g["units_added"] for g in grown)),
        "edges_added": int(sum(g["edges_added"] for g in grown)),
        "edges_pruned": int(sum(g["edges_removed"] for g in growth if g["kind"] == "prune_edges")),
        **(inactivity_fields(inactivity) if inactivity is not None else
           {"inactivity": None, "inactive_units_fraction": None, "inactive_new_units_fraction": None}),
        **(extra or {}),
    }


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

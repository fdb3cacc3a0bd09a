"""The bench's rows: one per run, its ``kind`` (``grown``, ``twin``, ``compute-twin``, ``front``), the
columns of ``results.csv``, read from the run's ``summary.json`` and ``history.jsonl``."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

__all__ = ["BENCH_COLUMNS", "KINDS", "summary_row", "error_row", "ok", "kind_of", "finished_summary",
           "write_results_csv"]

#: grown run, equal-epoch static twin, equal-compute static twin, static front network
KINDS = ("grown", "twin", "compute-twin", "front")

#: ``twin`` (True for both twins) stays for readers of the tables made before ``kind``
BENCH_COLUMNS = ("method", "seed", "kind", "twin", "family", "params_final", "test_metric", "best_val_metric",
                 "final_val_metric", "train_flops", "live_train_flops", "growth_flops", "train_seconds",
                 "growth_seconds", "inactive_new_units_fraction", "inactive_units_fraction", "params_start",
                 "epochs", "growth_events", "units_added", "edges_added", "edges_pruned", "weights_active_final",
                 "stored_params_final", "front_params", "metric_name", "higher_is_better", "chance_metric",
                 "hidden", "run_dir", "error")


def summary_row(method: str, seed: int, kind: str, summary: dict, run_dir, *, family: str = "",
                hidden: list | None = None) -> dict:
    """The row of a finished run: its summary's columns, ``final_val_metric`` (the last epoch's, the
    model the test metric is of) and ``chance_metric`` (``1 / classes`` for accuracy, else empty)."""
    row = {k: summary.get(k) for k in BENCH_COLUMNS}
    row.update(method=method, seed=seed, kind=kind, twin=kind in ("twin", "compute-twin"), family=family,
               final_val_metric=_final_val_metric(Path(run_dir)), chance_metric=_chance(Path(run_dir), summary),
               hidden="" if hidden is None else "-".join(str(w) for w in hidden), run_dir=str(run_dir), error="")
    return row


def error_row(method: str, seed: int, kind: str, exc: BaseException, *, family: str = "") -> dict:
    """The row of a run that failed: what and why (the bench goes on)."""
    return {"method": method, "seed": seed, "kind": kind, "twin": kind in ("twin", "compute-twin"),
            "family": family, "error": f"{type(exc).__name__}: {exc}"}


def ok(row: dict) -> bool:
    """Whether the row is of a run that finished."""
    return not row.get("error")


def kind_of(row: dict) -> str:
    """The row's kind; a row from before ``kind`` existed is ``twin`` or ``grown`` by its ``twin``."""
    if row.get("kind"):
        return row["kind"]
    return "twin" if str(row.get("twin")) == "True" else "grown"


def _final_val_metric(run_dir: Path) -> float | None:
    try:
        lines = (run_dir / "history.jsonl").read_text().splitlines()
    except OSError:
        return None
    epochs = [r for r in map(json.loads, filter(None, lines)) if r.get("type") == "epoch"]
    return float(epochs[-1]["val_metric"]) if epochs else None


def _chance(run_dir: Path, summary: dict) -> float | None:
    if summary.get("metric_name") != "accuracy":
        return None
    try:
        n = json.loads((run_dir / "preprocessing.json").read_text())["n_outputs"]
    except (OSError, KeyError, ValueError):
        return None
    return 1.0 / n if n else None


def finished_summary(run_dir) -> dict | None:
    """The summary of a run that finished (its ``summary.json`` and final ``model.safetensors``
    written, as ``train_run`` does last), else None."""
    run_dir = Path(run_dir)
    if not (run_dir / "model.safetensors").is_file():
        return None
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def write_results_csv(rows: list[dict], path) -> None:
    """``results.csv``: one row per run, the columns :data:`BENCH_COLUMNS`; written to a temporary
    file and renamed, so a reader (or an interrupted bench) never sees half a table."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=BENCH_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in BENCH_COLUMNS})
    os.replace(tmp, path)

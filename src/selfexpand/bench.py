"""``selfexpand bench``: several methods on one dataset, each growing run beside its static twin.

Every method runs for every seed through :func:`selfexpand.runs.train_run` (same data split per seed);
every growing run is followed by its static twin (``train --twin-of``: the final architecture, fresh
values, the same epochs, optimizer and seed). A run that fails is recorded with its error and the
others go on. :func:`write_bench` writes ``results.csv`` (one row per run), ``results.md`` (mean and
standard deviation per method, the twin beside its method, the command on top) and ``pareto.png``
(test metric against final ``params``, twins hollow, the metric's better direction up).
"""

from __future__ import annotations

import csv
import logging
import statistics
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

from .errors import ConfigError
from .validators import Integer, Optional, positive_int

__all__ = ["BENCH_COLUMNS", "run_bench", "write_bench"]

log = logging.getLogger("selfexpand.bench")

BENCH_COLUMNS = ("method", "seed", "twin", "params_final", "test_metric", "train_seconds", "growth_seconds",
                 "inactive_new_units_fraction", "inactive_units_fraction", "params_start", "best_val_metric",
                 "epochs", "growth_events", "units_added", "edges_added", "edges_pruned", "weights_active_final",
                 "stored_params_final", "front_params", "metric_name", "higher_is_better", "run_dir", "error")


def _job(method: str, dataset: str, seed: int, epochs: int | None, root: str, data_dir: str | None,
         threads: int | None, settings: dict | None = None) -> list[dict]:
    """One method and seed, then its twin: the rows (a failure becomes a row with ``error``)."""
    import torch

    from .runs import RunConfig, train_run, twin_config

    if threads:
        torch.set_num_threads(threads)
    rows = []
    out = Path(root) / f"{method}-seed{seed}"
    try:
        run_dir, summary = train_run(RunConfig(method=method, dataset=dataset, seed=seed, epochs=epochs,
                                               data_dir=data_dir, out=str(out), settings=dict(settings or {})))
        rows.append(_row(method, seed, False, summary, run_dir))
    except Exception as exc:  # recorded; the bench goes on
        log.debug("run failed: %s", traceback.format_exc())
        return [{"method": method, "seed": seed, "twin": False, "error": f"{type(exc).__name__}: {exc}"}]
    if method == "static":
        return rows
    try:
        twin_dir, twin = train_run(twin_config(run_dir, out=str(out) + "-twin"))
        rows.append(_row(method, seed, True, twin, twin_dir))
    except Exception as exc:
        rows.append({"method": method, "seed": seed, "twin": True, "error": f"{type(exc).__name__}: {exc}"})
    return rows


def _row(method: str, seed: int, twin: bool, summary: dict, run_dir) -> dict:
    row = {k: summary.get(k) for k in BENCH_COLUMNS}
    row.update(method=method, seed=seed, twin=twin, run_dir=str(run_dir), error="")
    return row


def run_bench(dataset: str, methods: list[str], seeds: int, out: str | Path, *, epochs: int | None = None,
              jobs: int = 1, data_dir: str | None = None, threads: int | None = 1,
              progress: Callable[[int, int], None] | None = None, settings: dict | None = None) -> list[dict]:
    """Run every method for seeds ``0 .. seeds - 1`` (and the twins) into ``out/runs``.

    Args:
        jobs: processes running at once (timings are comparable only with ``jobs=1``).
        threads: torch threads per run.
        progress: called with ``(done, total)`` jobs after each method-and-seed job.
        settings: method settings every run overrides (``--set``; a key a method lacks fails its runs).

    Returns:
        The rows, in method and seed order.

    Raises:
        ConfigError: an unknown method, no method, ``seeds`` / ``jobs`` not a positive integer, or
            ``threads`` neither None nor an integer >= 0 (0 and None leave torch's own count).
    """
    from .presets import method_names

    unknown = [m for m in methods if m not in method_names()]
    if not methods or unknown:
        raise ConfigError(f"methods must be names from {method_names()}, got methods={methods!r}")
    positive_int("seeds", seeds)
    positive_int("jobs", jobs)
    Optional(Integer(0))("threads", threads)
    root = Path(out) / "runs"
    root.mkdir(parents=True, exist_ok=True)
    tasks = [(m, dataset, s, epochs, str(root), data_dir, threads, settings) for m in methods for s in range(seeds)]
    results: dict[int, list[dict]] = {}
    if jobs == 1:
        for i, task in enumerate(tasks):
            results[i] = _job(*task)
            if progress:
                progress(i + 1, len(tasks))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(_job, *task): i for i, task in enumerate(tasks)}
            for done, future in enumerate(as_completed(futures), 1):
                results[futures[future]] = future.result()
                if progress:
                    progress(done, len(tasks))
    return [row for i in range(len(tasks)) for row in results[i]]


def _mean_std(values: list) -> str:
    values = [float(v) for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def write_bench(rows: list[dict], out: str | Path, *, command: str, jobs: int = 1) -> None:
    """``results.csv``, ``results.md`` and ``pareto.png`` in ``out``."""
    out = Path(out)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=BENCH_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in BENCH_COLUMNS})
    timing = ("timings comparable across methods (--jobs 1)" if jobs == 1 else
              f"--jobs {jobs}: runs shared the machine, so timings are not comparable across methods")
    lines = [f"`{command}`", "", timing, "",
             "| method | runs | test metric | params final | twin test metric | inactive new units | "
             "train seconds | growth seconds | failed |", "|---|---|---|---|---|---|---|---|---|"]
    for method in dict.fromkeys(r["method"] for r in rows):
        grown = [r for r in rows if r["method"] == method and not r["twin"] and not r.get("error")]
        twins = [r for r in rows if r["method"] == method and r["twin"] and not r.get("error")]
        failed = sum(1 for r in rows if r["method"] == method and r.get("error"))
        lines.append(f"| {method} | {len(grown)} | {_mean_std([r['test_metric'] for r in grown])} "
                     f"| {_mean_std([r['params_final'] for r in grown])} "
                     f"| {_mean_std([r['test_metric'] for r in twins])} "
                     f"| {_mean_std([r['inactive_new_units_fraction'] for r in grown])} "
                     f"| {_mean_std([r['train_seconds'] for r in grown])} "
                     f"| {_mean_std([r['growth_seconds'] for r in grown])} | {failed} |")
    errors = [r for r in rows if r.get("error")]
    if errors:
        lines += ["", "Failed runs:", ""] + [f"- {r['method']} seed {r['seed']}{' (twin)' if r['twin'] else ''}: "
                                              f"{r['error']}" for r in errors]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    _pareto(rows, out / "pareto.png")


def _pareto(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if not r.get("error")]
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, method in enumerate(dict.fromkeys(r["method"] for r in ok)):
        color = f"C{i % 10}"
        for twin, marker in ((False, "o"), (True, "o")):
            pts = [r for r in ok if r["method"] == method and r["twin"] == twin]
            if pts:
                ax.scatter([r["params_final"] for r in pts], [r["test_metric"] for r in pts], marker=marker,
                           facecolors="none" if twin else color, edgecolors=color,
                           label=f"{method} (twin)" if twin else method)
    if ok and not ok[0].get("higher_is_better", True):
        ax.invert_yaxis()  # lower is better: up is better
    ax.set_xlabel("params (final)")
    ax.set_ylabel(f"test {ok[0]['metric_name'] if ok else 'metric'} (better: up)")
    if ok:  # every run failed: an empty plot, no legend
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""A sweep's files: ``results.csv`` (one row per run), ``results.md`` (means and spreads), ``sweep.png``.

``results.md`` has one line per grid point and start with the mean, standard deviation, minimum and
maximum of the final test metric over the seeds and the mean final size, then one line per grid point
with the ratio ``fixed / growing`` of the mean test metric (for a loss, above 1 means growing did better).
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

from .runner import SweepResult

__all__ = ["write_sweep", "summary_rows", "summary_markdown", "plot_sweep"]


def _groups(result: SweepResult) -> dict[tuple, list[dict]]:
    keys = list(result.grid)
    groups: dict[tuple, list[dict]] = {}
    for row in result.rows:
        groups.setdefault((tuple(row[k] for k in keys), row["start"]), []).append(row)
    return groups


def summary_rows(result: SweepResult) -> list[dict]:
    """Per grid point and start: ``n``, mean / std / min / max of ``test_metric``, mean ``final_size``."""
    out = []
    for (point, start), rows in _groups(result).items():
        values = [r["test_metric"] for r in rows]
        out.append({**dict(zip(result.grid, point)), "start": start, "n": len(values),
                    "mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
                    "min": min(values), "max": max(values),
                    "size": statistics.fmean(r["final_size"] for r in rows)})
    return out


def summary_markdown(result: SweepResult) -> str:
    """The ``results.md`` text."""
    keys = list(result.grid)
    metric = f"test {result.metric_name}"
    how = "one batch" if result.batched else "one by one"
    variant = ", the control scalar also fed as an input (reference variant)" if result.control_input else ""
    starts = len({r["start"] for r in result.rows})
    lines = [f"# Sweep: {result.method} on {result.dataset}", "",
             f"{len(result.rows)} runs ({len(result.seeds)} seeds x {max(1, len(_points(result)))} grid points x "
             f"{starts} starts), {result.epochs} full-batch steps each, {how}, {result.seconds:.1f} s{variant}.", "",
             "| " + " | ".join([*keys, "start", "runs", f"mean {metric}", "std", "min", "max",
                                "mean final size"]) + " |",
             "|" + "---|" * (len(keys) + 7)]
    summary = summary_rows(result)
    for s in summary:
        lines.append("| " + " | ".join([*(f"{s[k]:g}" for k in keys), s["start"], str(s["n"]), f"{s['mean']:.5g}",
                                        f"{s['std']:.3g}", f"{s['min']:.5g}", f"{s['max']:.5g}",
                                        f"{s['size']:.2f}"]) + " |")
    by = {(tuple(s[k] for k in keys), s["start"]): s for s in summary}
    ratios = [(p, by[(p, "fixed")]["mean"] / by[(p, "growing")]["mean"]) for p in _points(result)
              if (p, "fixed") in by and (p, "growing") in by and by[(p, "growing")]["mean"] != 0]
    if ratios:
        better = "growing did better" if not result.higher_is_better else "fixed did better"
        lines += ["", f"Ratio fixed / growing of the mean {metric} (above 1: {better}):", "",
                  "| " + " | ".join([*keys, "fixed / growing"]) + " |", "|" + "---|" * (len(keys) + 1)]
        lines += ["| " + " | ".join([*(f"{v:g}" for v in p), f"{r:.3f}"]) + " |" for p, r in ratios]
    return "\n".join(lines) + "\n"


def _points(result: SweepResult) -> list[tuple]:
    seen = []
    for row in result.rows:
        point = tuple(row[k] for k in result.grid)
        if point not in seen:
            seen.append(point)
    return seen


def plot_sweep(result: SweepResult, path: str | Path) -> None:
    """Mean final test metric (with the standard deviation) against the first grid key, per start
    (and per value of any other grid key); a log x axis when the values span more than 10x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(result.grid)
    fig, ax = plt.subplots(figsize=(6, 4))
    summary = summary_rows(result)
    lines: dict[tuple, list[dict]] = {}
    for s in summary:
        lines.setdefault((s["start"], *(s[k] for k in keys[1:])), []).append(s)
    for label, rows in lines.items():
        rows.sort(key=lambda s: s[keys[0]] if keys else 0)
        xs = [s[keys[0]] if keys else 0 for s in rows]
        name = label[0] + "".join(f", {k}={v:g}" for k, v in zip(keys[1:], label[1:]))
        ax.errorbar(xs, [s["mean"] for s in rows], yerr=[s["std"] for s in rows], marker="o", capsize=3,
                    label=name)
    if keys:
        values = [v for v in result.grid[keys[0]] if v > 0]
        if values and max(values) / min(values) > 10:
            ax.set_xscale("log")
        ax.set_xlabel(keys[0])
    ax.set_ylabel(f"final test {result.metric_name}")
    ax.set_title(f"{result.method} on {result.dataset}, {len(result.seeds)} seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_sweep(result: SweepResult, out_dir: str | Path) -> Path:
    """Write ``results.csv``, ``results.md``, ``sweep.png`` and ``sweep.json`` (the settings) into
    ``out_dir`` (created; it must be new or empty, nothing is overwritten).

    Raises:
        ConfigError: ``out_dir`` exists and is not empty.
    """
    from ..errors import ConfigError

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"out must be a new or empty folder (nothing is overwritten), got out={str(out)!r}")
    out.mkdir(parents=True, exist_ok=True)
    columns = ["seed", *result.grid, "start", "final_size", "test_metric", "test_loss", "train_loss",
               "final_control"]
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in result.rows:
            writer.writerow({k: row[k] for k in columns})
    (out / "results.md").write_text(summary_markdown(result))
    (out / "sweep.json").write_text(json.dumps({
        "method": result.method, "dataset": result.dataset, "grid": result.grid, "seeds": result.seeds,
        "epochs": result.epochs, "metric": result.metric_name, "settings": result.settings,
        "seconds": result.seconds, "control_input": result.control_input,
        "data_options": result.data_options}, indent=2) + "\n")
    plot_sweep(result, out / "sweep.png")
    return out

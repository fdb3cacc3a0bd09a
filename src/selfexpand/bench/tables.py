"""``results.csv`` (one row per run) and ``results.md`` (per method: the grown runs beside their twins and
the static front; per family: its front and the sweep), then the plots (:mod:`selfexpand.bench.plots`)."""

from __future__ import annotations

import statistics
from pathlib import Path

from .front import front_at, front_rows, point_label, sweeps
from .plots import plot_pareto
from .rows import kind_of, ok, write_results_csv

__all__ = ["write_bench", "method_rows"]


def method_rows(rows: list[dict], method: str, kind: str, *, finished: bool = True) -> list[dict]:
    return [r for r in rows if r["method"] == method and kind_of(r) == kind and (ok(r) or not finished)]


def _numbers(values) -> list[float]:
    return [float(v) for v in values if v not in (None, "")]


def _fmt(values, style: str = "metric") -> str:
    """Mean ± standard deviation: ``metric`` 4 significant digits, ``count`` whole numbers, ``giga`` in
    units of 1e9 with 3 significant digits."""
    values = _numbers(values)
    if not values:
        return "-"
    if style == "giga":
        values = [v / 1e9 for v in values]
    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else None
    if style == "count":
        return f"{mean:,.0f}" + ("" if sd is None else f" ± {sd:,.0f}")
    digits = "3" if style == "giga" else "4"
    return f"{mean:.{digits}g}" + ("" if sd is None else f" ± {sd:.2g}")


def _methods(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in rows if kind_of(r) != "front"))


def _families(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["family"] for r in rows if kind_of(r) == "front" and r.get("family")))


def _front_at_runs(rows: list[dict], grown: list[dict]) -> list[float]:
    """The front's test metric at each grown run's ``params`` (its family's front of its seed)."""
    out = []
    for run in grown:
        value = front_at(front_rows(rows, run.get("family"), run["seed"]), float(run["params_final"]))
        if value is not None:
            out.append(value)
    return out


def _method_lines(rows: list[dict]) -> list[str]:
    lines = ["| method | runs | test metric | equal-epoch twin | equal-compute twin | static front at its params "
             "| params | train GFLOPs | growth GFLOPs | wall seconds | inactive new units | failed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for method in _methods(rows):
        grown = method_rows(rows, method, "grown")
        failed = sum(1 for r in rows if r["method"] == method and not ok(r))
        lines.append(
            f"| {method} | {len(grown)} | {_fmt(r['test_metric'] for r in grown)} "
            f"| {_fmt(r['test_metric'] for r in method_rows(rows, method, 'twin'))} "
            f"| {_fmt(r['test_metric'] for r in method_rows(rows, method, 'compute-twin'))} "
            f"| {_fmt(_front_at_runs(rows, grown))} "
            f"| {_fmt((r['params_final'] for r in grown), 'count')} "
            f"| {_fmt((r.get('train_flops') for r in grown), 'giga')} "
            f"| {_fmt((r.get('growth_flops') for r in grown), 'giga')} "
            f"| {_fmt(r['train_seconds'] for r in grown)} "
            f"| {_fmt(r['inactive_new_units_fraction'] for r in grown)} | {failed} |")
    return lines


def _front_lines(rows: list[dict]) -> list[str]:
    families = _families(rows)
    if not families:
        return []
    conv = any(str(r.get("hidden") or "").startswith("c") for r in rows if kind_of(r) == "front")
    head = "widths (c: conv channels, h: dense hidden)" if conv else "hidden widths"
    lines = ["", "Static fronts (each network trained the full budget with the settings of its family's first "
             "method; mean over seeds):", "",
             f"| family | {head} | params | test metric | validation metric (final) | train GFLOPs |",
             "|---|---|---|---|---|---|"]
    for family in families:
        members = front_rows(rows, family)
        for hidden in dict.fromkeys(r.get("hidden", "") for r in members):
            pts = [r for r in members if r.get("hidden", "") == hidden]
            lines.append(f"| {family} | {hidden or 'none'} | {_fmt((r['params_final'] for r in pts), 'count')} "
                         f"| {_fmt(r['test_metric'] for r in pts)} | {_fmt(r.get('final_val_metric') for r in pts)} "
                         f"| {_fmt((r.get('train_flops') for r in pts), 'giga')} |")
    lines += ["", "Sweep (per seed, the front network with the best validation metric; its test metric; the "
              "training GFLOPs of every front network together):", ""]
    for family in families:
        picks = sweeps(rows, family)
        if not picks:
            lines.append(f"- {family}: no front network finished")
            continue
        chosen = ", ".join(f"{point_label(p['pick'].get('hidden') or '')} ({int(float(p['pick']['params_final'])):,} "
                           f"params, seed {p['seed']})" for p in picks)
        lines.append(f"- {family}: picks {chosen}; test {_fmt(p['pick']['test_metric'] for p in picks)}; "
                     f"{_fmt((p['flops'] for p in picks), 'giga')} GFLOPs")
    return lines


def write_bench(rows: list[dict], out: str | Path, *, command: str, jobs: int = 1) -> None:
    """``results.csv``, ``results.md``, ``pareto.png`` and ``pareto_flops.png`` in ``out``."""
    out = Path(out)
    write_results_csv(rows, out / "results.csv")
    timing = ("timings comparable across methods (--jobs 1)" if jobs == 1 else
              f"--jobs {jobs}: runs shared the machine, so timings are not comparable across methods")
    lines = [f"`{command}`", "", timing, "", *_method_lines(rows), *_front_lines(rows)]
    errors = [r for r in rows if not ok(r)]
    if errors:
        lines += ["", "Failed runs:", ""] + [
            f"- {r['method']} seed {r['seed']}{'' if kind_of(r) == 'grown' else f' ({kind_of(r)})'}: {r['error']}"
            for r in errors]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot_pareto(rows, out / "pareto.png", out / "pareto_flops.png")

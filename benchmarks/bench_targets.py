"""Issue #22's bench targets, checked on a finished `selfexpand bench` folder (its results.csv).

    python benchmarks/bench_targets.py runs/bench-mnist [--out targets.md]

Per growing method (not `static`, the `*-reference` reproductions or the size methods), mean over seeds:
its test metric against the equal-epoch twin (>= twin - 0.3 points) and the equal-compute twin (above);
the static front at its `params` and its total FLOPs (train + growth) against its equal-epoch twin's
training FLOPs (on or above the front at <= 0.7x); and, for a run with no params budget, its family's
sweep (the pick's test - 0.3 points at <= 1/3 of the sweep's FLOPs, per seed). SWE: inactive new units.
Reads the runs' config.yaml for the budget. Accuracy-like metrics (higher is better) only.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

import yaml

from selfexpand.bench.front import front_at, front_rows, sweeps
from selfexpand.bench.rows import kind_of, ok

EXCLUDED = {"static", "size-weight", "controller-mask", "controller-mask-reference"}
SWE_FAMILY = ("swe", "svod-random", "svod-zero")


def _f(value) -> float | None:
    return None if value in (None, "") else float(value)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def _budgeted(row: dict) -> bool:
    config = yaml.safe_load((Path(row["run_dir"]) / "config.yaml").read_text())
    return (config.get("max_params") or (config.get("resolved") or {}).get("max_params")) is not None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.2f}"


def check(rows: list[dict]) -> list[str]:
    methods = [m for m in dict.fromkeys(r["method"] for r in rows if kind_of(r) == "grown")
               if m not in EXCLUDED and not m.endswith("-reference")]
    lines = ["| method | test | vs equal-epoch twin (points; >= -0.3) | vs equal-compute twin (points; > 0) "
             "| vs static front at its params (points) | total FLOPs / twin's | on front at <= 0.7x | "
             "sweep: seeds within 0.3 points at <= 1/3 of its FLOPs |",
             "|---|---|---|---|---|---|---|---|"]
    found = {"twin": [], "compute": [], "front": [], "sweep": []}
    for method in methods:
        grown = [r for r in rows if r["method"] == method and kind_of(r) == "grown" and ok(r)]
        by_seed = {kind: {r["seed"]: r for r in rows if r["method"] == method and kind_of(r) == kind and ok(r)}
                   for kind in ("twin", "compute-twin")}
        test = _mean(_f(r["test_metric"]) for r in grown)
        twin = _mean(_f(r["test_metric"]) for r in by_seed["twin"].values())
        ctwin = _mean(_f(r["test_metric"]) for r in by_seed["compute-twin"].values())
        front = _mean(front_at(front_rows(rows, r.get("family"), r["seed"]), float(r["params_final"])) for r in grown)
        total = _mean(_f(r["train_flops"]) + (_f(r["growth_flops"]) or 0) for r in grown if _f(r["train_flops"]))
        twin_flops = _mean(_f(r["train_flops"]) for r in by_seed["twin"].values())
        ratio = None if total is None or not twin_flops else total / twin_flops
        d_twin = None if twin is None else test - twin
        d_ctwin = None if ctwin is None else test - ctwin
        d_front = None if front is None else test - front
        on_front = d_front is not None and d_front >= 0 and ratio is not None and ratio <= 0.7
        sweep_ok = []
        if grown and not _budgeted(grown[0]):
            picks = {str(p["seed"]): p for p in sweeps(rows, grown[0].get("family"))}
            for r in grown:
                p = picks.get(str(r["seed"]))
                if p is None or p["flops"] is None or _f(r["train_flops"]) is None:
                    continue
                cost = _f(r["train_flops"]) + (_f(r["growth_flops"]) or 0)
                sweep_ok.append(_f(r["test_metric"]) >= _f(p["pick"]["test_metric"]) - 0.003
                                and cost <= p["flops"] / 3)
        sweep = "budgeted" if grown and _budgeted(grown[0]) else f"{sum(sweep_ok)} of {len(sweep_ok)}"
        found["twin"].append(d_twin is not None and d_twin >= -0.003)
        found["compute"].append(d_ctwin is not None and d_ctwin > 0)
        found["front"].append(on_front)
        found["sweep"].append(any(sweep_ok))
        lines.append(f"| {method} | {test:.4f} | {_pct(d_twin)} | {_pct(d_ctwin)} | {_pct(d_front)} "
                     f"| {'-' if ratio is None else f'{ratio:.2f}'} | {'yes' if on_front else 'no'} | {sweep} |")
    lines += ["", f"- >= equal-epoch twin - 0.3 points: {sum(found['twin'])} of {len(methods)} methods",
              f"- above the equal-compute twin: {sum(found['compute'])} of {len(methods)}",
              f"- on or above the static front at <= 0.7x the twin's FLOPs: {sum(found['front'])} "
              f"(target: at least one)",
              f"- a grown run at the sweep's pick - 0.3 points for <= 1/3 of its FLOPs: "
              f"{sum(found['sweep'])} methods (target: at least one run)"]
    swe = []
    for method in SWE_FAMILY:
        grown = [r for r in rows if r["method"] == method and kind_of(r) == "grown" and ok(r)]
        if grown:
            swe.append(f"{method} {_mean(_f(r['inactive_new_units_fraction']) for r in grown):.4f}")
    if swe:
        lines.append(f"- inactive new units (mean fraction): {', '.join(swe)} (SWE target: <= 0.02 and the fewest)")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bench", help="a selfexpand bench folder (holding results.csv)")
    p.add_argument("--out", help="also write the lines to this file")
    args = p.parse_args(argv)
    with open(Path(args.bench) / "results.csv") as f:
        rows = list(csv.DictReader(f))
    lines = check(rows)
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Replace some methods' rows of a bench with those of a later bench of the same protocol.

    python benchmarks/bench_merge.py runs/bench-mnist runs/bench-mnist-swe --methods swe --out runs/merged

For a method whose defaults changed after a table was made: re-run only that method (`selfexpand bench
--methods swe --no-front ...`, same dataset, seeds and epochs) and merge. The grown runs and their twins
come from the later bench; the static fronts and the other methods from the first (a front is built from
the largest grown `params` of its family, so a replaced method that grew larger than the family's largest
would have widened it: the script says so). Writes results.csv, results.md and the plots into --out.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from selfexpand.bench import write_bench
from selfexpand.bench.rows import kind_of


def _read(folder: str) -> list[dict]:
    with open(Path(folder) / "results.csv") as f:
        return list(csv.DictReader(f))


def merge(base: list[dict], later: list[dict], methods: list[str]) -> tuple[list[dict], list[str]]:
    """The rows of ``base`` with those of ``methods`` (grown runs and twins) taken from ``later``, and
    warnings. A later grown row takes its family from the base's rows of the method."""
    family = {r["method"]: r.get("family", "") for r in base if kind_of(r) == "grown"}
    kept = [r for r in base if not (r["method"] in methods and kind_of(r) != "front")]
    new = [dict(r, family=family.get(r["method"], r.get("family", ""))) for r in later
           if r["method"] in methods and kind_of(r) != "front"]
    warnings = []
    for method in methods:
        fam = family.get(method)
        old = [float(r["params_final"]) for r in kept if kind_of(r) == "grown" and r.get("family") == fam
               and r.get("params_final")]
        mine = [float(r["params_final"]) for r in new if r["method"] == method and kind_of(r) == "grown"
                and r.get("params_final")]
        if old and mine and max(mine) > max(old):
            warnings.append(f"{method}: grew to {max(mine):,.0f} params, above the family's largest other run "
                            f"({max(old):,.0f}): its front would have reached {2 * max(mine):,.0f}, not "
                            f"{2 * max(old):,.0f}")
    order = list(dict.fromkeys(r["method"] for r in base))
    rows = sorted(kept + new, key=lambda r: (order.index(r["method"]) if r["method"] in order else len(order)))
    return rows, warnings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base", help="the first bench folder")
    p.add_argument("later", help="the bench folder holding the methods' new runs")
    p.add_argument("--methods", required=True, help="comma-separated methods to take from the later bench")
    p.add_argument("--out", required=True, help="folder for the merged results")
    p.add_argument("--command", default="", help="the commands that made both benches, for results.md")
    args = p.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    rows, warnings = merge(_read(args.base), _read(args.later), methods)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = args.command or " ".join(["python benchmarks/bench_merge.py", *(argv or sys.argv[1:])])
    write_bench(rows, out, command=command, jobs=2)
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

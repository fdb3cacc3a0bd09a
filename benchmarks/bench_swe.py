"""SWE, SVoD + random, SVoD + zero and the static twin of the SWE run, side by side (issue #13).

Every system runs through ``selfexpand.runs.train_run`` on the same data split and seed, with the
method presets of ``selfexpand.presets`` (the reference protocol for MNIST and Fashion-MNIST: start
784-62-62-62-10, 3 rounds of at most 8 epochs, B = 36, 47, Adam lr 1e-3 with weight decay 1e-4, batch
100). Per run it records the test accuracy, the inactivity figures (DESIGN.md: dead, silent,
inactive) for new units and all units, the validation accuracy just before each growth step and
after its integration, and each step's growth cost (the step's wall time over the wall time of the
epoch before it, measured in the same run). Results: a JSON file and a Markdown table on stdout.

    SELFEXPAND_DATA=../shared/data python benchmarks/bench_swe.py --dataset mnist --seeds 0 1 2 \
        --out docs/results/swe_mnist.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from selfexpand.runs import RunConfig, train_run, twin_config

SYSTEMS = ("swe", "svod-random", "svod-zero")


def growth_steps(run_dir: Path) -> list[dict]:
    """One entry per growth step: validation accuracy before / after (SWE records them), the growth
    cost (the step's wall time outside epochs of the run: SVoD's copy epoch and gate pass, SWE's
    attaching and baking; over the wall time of the training epoch just before it), and the step
    cost with SWE's integration epochs, which are epochs of the run (DESIGN.md glossary), included."""
    records = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    steps, last, current = [], None, None
    for r in records:
        if r["type"] == "epoch" and r.get("phase") != "integration":
            last, current = r, None
        elif r["type"] == "growth" and r["kind"] == "add_units" and last is not None and current is None:
            integration = last.get("integration_seconds", 0.0)
            current = {"epoch": last["epoch"], "val_before": None, "val_after": None,
                       "growth_cost_epochs": last["growth_seconds"] / last["seconds"],
                       "step_cost_epochs": (last["growth_seconds"] + integration) / last["seconds"],
                       "growth_seconds": last["growth_seconds"], "integration_seconds": integration,
                       "epoch_seconds": last["seconds"],
                       "svod_seconds": r["details"].get("copy_seconds", 0) + r["details"].get("gate_seconds", 0)}
            steps.append(current)
        if r["type"] == "growth" and current is not None and "val_metric_before" in r["details"]:
            current["val_before"] = r["details"]["val_metric_before"]
            current["val_after"] = r["details"]["val_metric_after"]
    return steps


def run_one(method: str, dataset: str, seed: int, root: Path, front: str | None, settings: dict) -> dict:
    out = root / f"{method}-{seed}"
    start = time.perf_counter()
    run_dir, summary = train_run(RunConfig(method=method, dataset=dataset, seed=seed, out=str(out),
                                           front=front, settings=dict(settings)))
    return {"system": method, "seed": seed, "wall_seconds": time.perf_counter() - start, "run_dir": str(run_dir),
            "steps": growth_steps(run_dir), **{k: summary[k] for k in (
                "test_metric", "best_val_metric", "params_start", "params_final", "epochs", "units_added",
                "inactive_units_fraction", "inactive_new_units_fraction", "train_seconds", "growth_seconds")},
            "inactivity": summary.get("inactivity")}


def run_twin(source: dict, root: Path) -> dict:
    config = twin_config(source["run_dir"], out=str(root / f"twin-{source['seed']}"))
    start = time.perf_counter()
    _, summary = train_run(config)
    return {"system": "static twin of swe", "seed": source["seed"], "wall_seconds": time.perf_counter() - start,
            "steps": [], **{k: summary[k] for k in ("test_metric", "best_val_metric", "params_start", "params_final",
                                                     "epochs", "units_added", "inactive_units_fraction",
                                                     "inactive_new_units_fraction", "train_seconds",
                                                     "growth_seconds")}}


def _mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def table(rows: list[dict]) -> str:
    lines = ["| system | test accuracy | inactive new units | inactive units | val. change at growth (points) "
             "| growth cost (epochs) | with integration (epochs) | params final | epochs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for system in (*SYSTEMS, "static twin of swe"):
        runs = [r for r in rows if r["system"] == system]
        if not runs:
            continue
        drops = [100 * (s["val_after"] - s["val_before"]) for r in runs for s in r["steps"]
                 if s["val_before"] is not None and s["val_after"] is not None]
        costs = [s["growth_cost_epochs"] for r in runs for s in r["steps"]]
        steps = [s["step_cost_epochs"] for r in runs for s in r["steps"]]
        lines.append(
            f"| {system} | {_mean_std([r['test_metric'] for r in runs])} "
            f"| {_mean_std([r['inactive_new_units_fraction'] for r in runs])} "
            f"| {_mean_std([r['inactive_units_fraction'] for r in runs])} "
            f"| {', '.join(f'{d:+.2f}' for d in drops) or '-'} "
            f"| {', '.join(f'{c:.2f}' for c in costs) or '-'} "
            f"| {', '.join(f'{c:.2f}' for c in steps) or '-'} "
            f"| {_mean_std([float(r['params_final']) for r in runs])} | {_mean_std([float(r['epochs']) for r in runs])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    p.add_argument("--front", default=None, help="a fixed front (e.g. conv-small) for image datasets")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a method setting for every system")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-twin", action="store_true")
    p.add_argument("--out", default=None, help="JSON results file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = dict(item.split("=", 1) for item in args.set)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for seed in args.seeds:
            for system in args.systems:
                rows.append(run_one(system, args.dataset, seed, root, args.front, settings))
                print(f"{system} seed {seed}: test {rows[-1]['test_metric']:.4f}, inactive new "
                      f"{rows[-1]['inactive_new_units_fraction']}, {rows[-1]['wall_seconds']:.0f} s",
                      file=sys.stderr, flush=True)
                if system == "swe" and not args.no_twin:
                    rows.append(run_twin(rows[-1], root))
                    print(f"  twin: test {rows[-1]['test_metric']:.4f}", file=sys.stderr, flush=True)
        for r in rows:
            r.pop("run_dir", None)
    command = "python benchmarks/bench_swe.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = f"`{command}` (torch threads: {args.threads})\n\n{table(rows)}\n"
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps({"command": command, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

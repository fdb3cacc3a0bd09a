"""SENN's tables (issue #14): ``selfexpand bench`` of ``senn`` beside its static twin, plus each
run's wall time, final widths and growth cost (DESIGN.md glossary: a growth step's wall time over the
wall time of the training epoch just before it, in the same run), for checks that grew and for all.

    python benchmarks/bench_senn.py --dataset moons --seeds 3 --out runs/senn-moons
    python benchmarks/bench_senn.py --dataset mnist --data-dir ../shared/data --seeds 3 --out runs/senn-mnist
    python benchmarks/bench_senn.py --dataset moons --seeds 3 --set optimizer=adam --set lr=0.01 --out ...

``--static-start`` also trains each seed's start network as it is (the same run with ``grow_until=0``:
no check, no growth) into ``--out/static-start``, the table's "beats its static start" column:

    python benchmarks/bench_senn.py --dataset cifar10 --data-dir ../shared/data --seeds 3 --epochs 15 \
        --set conv=[8,8,8] --set hidden=[32] --set capacity=[33,33,33,129] --static-start --out runs/senn-cnn

Writes ``senn.json`` and ``senn.md`` into ``--out`` beside the bench's own files; prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from selfexpand.bench import run_bench, write_bench
from selfexpand.checkpoint import load_checkpoint


def _run_facts(run_dir: Path, twin: bool = False) -> dict:
    records = [json.loads(line) for line in open(run_dir / "history.jsonl")]
    epochs = [r for r in records if r["type"] == "epoch"]
    grew = {r["epoch"] for r in records if r["type"] == "growth"}
    checks = [r for r in epochs if r.get("growth_seconds", 0) > 1e-3 and not twin]  # epochs followed by a check
    costs = [r["growth_seconds"] / r["seconds"] for r in checks]
    grown = [r["growth_seconds"] / r["seconds"] for r in checks if r["epoch"] in grew]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"widths": load_checkpoint(run_dir / "model.safetensors").model.widths(),
            "train_seconds": summary["train_seconds"], "test_metric": summary["test_metric"],
            "final_val": epochs[-1]["val_metric"], "params_final": summary["params_final"],
            "checks": len(checks), "growth_steps": len(grown),
            "cost_max": max(costs, default=0.0), "cost_median": statistics.median(costs) if costs else 0.0,
            "grown_cost_max": max(grown, default=0.0),
            "grown_cost_median": statistics.median(grown) if grown else 0.0}


def _static_starts(args, settings: dict, out: Path) -> list[dict]:
    """Each seed's start network trained as it is: the method's run with ``grow_until=0`` (no check)."""
    from selfexpand.runconfig import RunConfig
    from selfexpand.runs import train_run

    runs = []
    for seed in range(args.seeds):
        run_dir = out / "static-start" / f"seed{seed}"
        config = RunConfig(method=args.method, dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs,
                           seed=seed, grow_until=0.0, settings=dict(settings), out=str(run_dir))
        train_run(config)
        runs.append({"seed": seed, "twin": "start", **_run_facts(run_dir, twin=True)})
    return runs


def _markdown(command: str, runs: list[dict]) -> list[str]:
    lines = [f"`{command}`", "",
             "| seed | twin | test | final val | params | widths | wall s | checks / growths | "
             "growth cost, grown steps: median / max (epochs) | all checks: median / max |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        if "error" in r:
            lines.append(f"| {r['seed']} | {r['twin']} | error: {r['error']} |||||||")
            continue
        lines.append(f"| {r['seed']} | {r['twin']} | {r['test_metric']:.4g} | {r['final_val']:.4g} | "
                     f"{r['params_final']} | {r['widths']} | {r['train_seconds']:.1f} | {r['checks']} / "
                     f"{r['growth_steps']} | {r['grown_cost_median']:.2f} / {r['grown_cost_max']:.2f} | "
                     f"{r['cost_median']:.2f} / {r['cost_max']:.2f} |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--method", default="senn")
    p.add_argument("--data-dir")
    p.add_argument("--epochs", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True)
    p.add_argument("--static-start", action="store_true", help="also train each seed's start network as it is")
    args = p.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    out = Path(args.out)
    rows = run_bench(args.dataset, [args.method], args.seeds, out, epochs=args.epochs, data_dir=args.data_dir,
                     settings=settings, front=False, compute_twins=False)
    # no equal-compute twin: SENN's proposals cost tens of thousands of epochs of its small final networks
    # on two moons (seed 0: over 70,000 epochs), which the tables here do not need
    command = "python benchmarks/bench_senn.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_bench(rows, out, command=command)
    runs = _static_starts(args, settings, out) if args.static_start else []
    for row in rows:
        if row.get("error"):
            runs.append({"seed": row["seed"], "twin": row["twin"], "error": row["error"]})
            continue
        runs.append({"seed": row["seed"], "twin": row["twin"], **_run_facts(Path(row["run_dir"]), row["twin"])})
    (out / "senn.json").write_text(json.dumps({"command": command, "settings": settings, "runs": runs}, indent=1))
    lines = _markdown(command, runs)
    (out / "senn.md").write_text("\n".join(lines) + "\n")
    print((out / "results.md").read_text())
    print("\n".join(lines))
    return 1 if any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())

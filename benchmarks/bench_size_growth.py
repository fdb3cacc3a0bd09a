"""Size by gradient descent (ALGORITHMS.md §4): the paper's lambda sweep, the controller on spirals, and
the batched sweep's speed against the same runs one after another.

1. ``size-weight`` on ``bessel-sum``, lambda in {0.01, 0.03, 0.1, 0.3, 1, 3}, seeds 0..19, growing
   (``N_0 = 0``) and the fixed-size control (``N_0 = N_inf = 5``), the paper's 40,000 full-batch
   gradient-descent steps, as one batched computation: mean and spread of the final test loss (MSE on
   256 evenly spaced points), the ratio fixed / growing, the final size.
2. ``controller-mask`` (and ``controller-mask-reference``) on spirals with 3, 5, 7, 9 arms, the paper's
   5,000 Adam steps: final width (live units) and test accuracy against the static twin (a tanh MLP of
   the grown run's final width, fresh ``U[-1, 1]`` values of the same seed, same optimizer and steps).
3. Speed: the 240 runs of part 1 for ``--speed-steps`` steps as one batch, against the same runs one
   after another through the same engine, and against a few runs of the library's ``Trainer``
   (``selfexpand train``'s loop, run directory writing excluded), extrapolated to 240 runs.

Usage:
    python benchmarks/bench_size_growth.py --threads 1 --out docs/results/size_growth.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from selfexpand.data import load_dataset
from selfexpand.graph.size_nets import size_weight_net
from selfexpand.presets import build_method, resolve_config
from selfexpand.sweep import run_sweep
from selfexpand.train.trainer import Trainer

LAMBDAS = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
PAPER = {0.1: (0.0072, 0.0118), 1.0: (0.0024, 0.0165)}  # (growing, fixed) final test loss


def _stats(values):
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def lambda_sweep(seeds: int, steps: int, control_input: bool = False, lr: float | None = None) -> dict:
    result = run_sweep("size-weight", "bessel-sum", {"lambda": LAMBDAS}, seeds, epochs=steps,
                       control_input=control_input, settings=None if lr is None else {"lr": str(lr)})
    table = []
    for lam in LAMBDAS:
        row = {"lambda": lam}
        for start in ("growing", "fixed"):
            runs = [r for r in result.rows if r["lambda"] == lam and r["start"] == start]
            mean, std = _stats([r["test_metric"] for r in runs])
            row[start] = {"mean": mean, "std": std, "median": statistics.median(r["test_metric"] for r in runs),
                          "size": statistics.fmean(r["final_size"] for r in runs),
                          "n_final": statistics.fmean(r["final_control"] for r in runs)}
        row["ratio"] = row["fixed"]["mean"] / row["growing"]["mean"]
        row["growing_wins"] = sum(
            g["test_metric"] < f["test_metric"]
            for g in result.rows if g["lambda"] == lam and g["start"] == "growing"
            for f in result.rows if f["lambda"] == lam and f["start"] == "fixed" and f["seed"] == g["seed"])
        table.append(row)
    return {"seconds": result.seconds, "steps": steps, "seeds": seeds, "rows": table, "runs": result.rows}


def spirals(arms_list, seeds: int, steps: int) -> list[dict]:
    out = []
    for arms in arms_list:
        opts = {"arms": str(arms)}
        entry = {"arms": arms}
        for method in ("controller-mask", "controller-mask-reference"):
            grown = run_sweep(method, "spirals", {}, seeds, settings=opts, epochs=steps, starts=("growing",))
            entry[method] = {"acc": _stats([r["test_metric"] for r in grown.rows]),
                             "width": _stats([r["final_size"] for r in grown.rows]),
                             "c": _stats([r["final_control"] for r in grown.rows]), "seconds": grown.seconds}
            if method == "controller-mask":
                twin_acc = []
                widths = sorted({r["final_size"] for r in grown.rows})
                for width in widths:  # one batch per width: the twins of every seed that grew to it
                    group = [r["seed"] for r in grown.rows if r["final_size"] == width]
                    if width == 0:
                        continue
                    # a size-weight net with N far past its last unit and no size loss is a plain tanh MLP:
                    # every factor is exactly 1 and N gets exactly no gradient (so Adam leaves it alone)
                    twins = run_sweep("size-weight", "spirals", {}, group, starts=("fixed",), epochs=steps,
                                      settings={**opts, "n_max": str(width), "n_inf": str(width + 10.0),
                                                "lambda": "0.0", "optimizer": "adam", "lr": "0.001"})
                    twin_acc += [r["test_metric"] for r in twins.rows]
                entry["twin"] = {"acc": _stats(twin_acc)}
                entry["paired"] = [r["test_metric"] for r in grown.rows]
        out.append(entry)
    return out


def speed(seeds: int, steps: int, trainer_runs: int) -> dict:
    grid = {"lambda": LAMBDAS}
    batched = run_sweep("size-weight", "bessel-sum", grid, seeds, epochs=steps)
    one_by_one = run_sweep("size-weight", "bessel-sum", grid, seeds, epochs=steps, batched=False)
    data = load_dataset("bessel-sum")
    cfg = resolve_config("size-weight", "*", {"epochs": steps})
    start = time.perf_counter()
    for seed in range(trainer_runs):
        net = size_weight_net(1, 1, size_lambda=LAMBDAS[seed % len(LAMBDAS)], seed=seed)
        Trainer(build_method("size-weight", cfg), epochs=steps, batch_size=cfg["batch_size"], lr=cfg["lr"],
                optimizer="gd").fit(net, data)
    per_trainer_run = (time.perf_counter() - start) / trainer_runs
    n_runs = len(batched.rows)
    return {"runs": n_runs, "steps": steps, "batched_s": batched.seconds, "one_by_one_s": one_by_one.seconds,
            "ratio": one_by_one.seconds / batched.seconds, "trainer_run_s": per_trainer_run,
            "trainer_ratio": per_trainer_run * n_runs / batched.seconds,
            "max_diff": max(abs(a["test_metric"] - b["test_metric"]) for a, b in zip(batched.rows, one_by_one.rows))}


def sweep_table(sweep: dict) -> list[str]:
    lines = ["| lambda | growing: mean test loss (std) | fixed: mean (std) | fixed / growing | growing median | "
             "fixed median | seeds where growing wins | growing final size (N) | paper growing / fixed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sweep["rows"]:
        g, f = r["growing"], r["fixed"]
        paper = PAPER.get(r["lambda"])
        lines.append(f"| {r['lambda']:g} | {g['mean']:.4f} ({g['std']:.4f}) | {f['mean']:.4f} ({f['std']:.4f}) | "
                     f"{r['ratio']:.2f} | {g['median']:.4f} | {f['median']:.4f} | {r['growing_wins']}/"
                     f"{sweep['seeds']} | {g['size']:.1f} ({g['n_final']:.2f}) | "
                     f"{'%.4f / %.4f' % paper if paper else '-'} |")
    return lines


def markdown(res: dict) -> str:
    lines = []
    for key, title in (("sweep", "Library method (gating and size loss)"),
                       ("sweep_input", "With the reference's N input (`--control-input`)"),
                       ("sweep_lr", f"Library method, lr {res.get('extra_lr')} (see the text)"),
                       ("sweep_input_lr", f"With the N input, lr {res.get('extra_lr')}")):
        if key in res:
            lines += [f"{title}, {res[key]['seconds']:.0f} s:", "", *sweep_table(res[key]), ""]
    if "spirals" in res:
        lines += ["| arms | controller: final width | test accuracy | static twin accuracy | reference defects: width | "
                  "reference accuracy |", "|---|---|---|---|---|---|"]
    for e in res.get("spirals", []):
        c, ref = e["controller-mask"], e["controller-mask-reference"]
        lines.append(f"| {e['arms']} | {c['width'][0]:.1f} ± {c['width'][1]:.1f} | {c['acc'][0]:.3f} ± {c['acc'][1]:.3f} | "
                     f"{e['twin']['acc'][0]:.3f} ± {e['twin']['acc'][1]:.3f} | {ref['width'][0]:.1f} | "
                     f"{ref['acc'][0]:.3f} ± {ref['acc'][1]:.3f} |")
    s = res.get("speed")
    if s:
        lines += ["", f"Speed ({s['runs']} runs x {s['steps']} steps): batched {s['batched_s']:.1f} s, the same runs one "
                  f"by one through the same engine {s['one_by_one_s']:.1f} s (ratio **{s['ratio']:.1f}x**, largest "
                  f"difference of a final test loss {s['max_diff']:.1e}); the library Trainer {s['trainer_run_s']:.2f} s "
                  f"a run, {s['trainer_ratio']:.0f}x the batch for {s['runs']} runs (extrapolated)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--steps", type=int, default=40000, help="steps of the lambda sweep (the paper: 40,000)")
    p.add_argument("--spiral-seeds", type=int, default=10)
    p.add_argument("--spiral-steps", type=int, default=5000, help="the paper: 5,000")
    p.add_argument("--arms", type=int, nargs="+", default=[3, 5, 7, 9])
    p.add_argument("--speed-steps", type=int, default=500)
    p.add_argument("--trainer-runs", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip", nargs="*", default=[], choices=["sweep", "sweep-input", "spirals", "speed"])
    p.add_argument("--extra-lr", type=float, help="also run both lambda sweeps at this learning rate")
    p.add_argument("--out", help="write every figure (and every run of the sweep) to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = {"command": " ".join(sys.argv), "threads": args.threads, "load_start": os.getloadavg()[0]}
    started = time.perf_counter()
    if "speed" not in args.skip:
        res["speed"] = speed(args.seeds, args.speed_steps, args.trainer_runs)
        print("speed", json.dumps(res["speed"]), flush=True)
    if "sweep" not in args.skip:
        res["sweep"] = lambda_sweep(args.seeds, args.steps)
        print("sweep", json.dumps(res["sweep"]["rows"]), flush=True)
    if "sweep-input" not in args.skip:
        res["sweep_input"] = lambda_sweep(args.seeds, args.steps, control_input=True)
        print("sweep_input", json.dumps(res["sweep_input"]["rows"]), flush=True)
    if args.extra_lr:
        res["extra_lr"] = args.extra_lr
        for key, flag in (("sweep_lr", False), ("sweep_input_lr", True)):
            res[key] = lambda_sweep(args.seeds, args.steps, control_input=flag, lr=args.extra_lr)
            print(key, json.dumps(res[key]["rows"]), flush=True)
    if "spirals" not in args.skip:
        res["spirals"] = spirals(args.arms, args.spiral_seeds, args.spiral_steps)
        print("spirals", json.dumps(res["spirals"]), flush=True)
    res["load_end"] = os.getloadavg()[0]
    res["seconds"] = time.perf_counter() - started
    print(markdown(res))
    print(f"total {res['seconds']:.0f} s, load average {res['load_start']:.2f} -> {res['load_end']:.2f}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(res, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

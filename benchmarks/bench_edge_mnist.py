"""Edge expansion on MNIST (or Fashion-MNIST) against an equal-parameter dense MLP, in one run.

For every seed: the edge-expansion run (from 784 -> 10, the dataset's preset of ``selfexpand.presets`` plus
``--set`` overrides and ``--max-params``), then a dense 784-H-10 MLP whose ``params`` equal the grown
network's, trained the same epochs with the same optimizer, batch size and learning rate. Then the
speed of one epoch of each final network, alternated ``--timing-rounds`` times in this process, and
the cost of each growth step (selection + split + optimizer carry) in epochs of the network before it.

Usage:
    python benchmarks/bench_edge_mnist.py --dataset mnist --seeds 0 1 2 --threads 1 \
        --out docs/results/edge_mnist.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from selfexpand.data import load_dataset
from selfexpand.graph import GrowableNet
from selfexpand.presets import build_method, resolve_config
from selfexpand.train.trainer import Trainer


def dense_width(target_params: int, n_in: int, n_out: int) -> int:
    """Hidden width H whose 784-H-10 MLP has ``params`` closest to ``target_params``."""
    per_unit = n_in + 1 + n_out
    return max(1, round((target_params - n_out) / per_unit))


def train(net, data, cfg, seed, method=None, max_params=None):
    trainer = Trainer.from_settings(method, cfg, seed=seed, max_params=max_params)
    start = time.perf_counter()
    result = trainer.fit(net, data)
    wall = time.perf_counter() - start
    test = trainer.ctx.evaluate("test")["accuracy"]
    return trainer, result, test, wall


def epoch_seconds(net, data, cfg, rounds_seed: int) -> float:
    """Wall time of one training epoch of ``net`` (a throw-away copy of it, fresh optimizer)."""
    import copy

    clone = copy.deepcopy(net)
    trainer = Trainer(None, epochs=1, batch_size=cfg["batch_size"], lr=cfg["lr"],
                      optimizer=cfg["optimizer"], weight_decay=cfg["weight_decay"], seed=rounds_seed)
    start = time.perf_counter()
    trainer.fit(clone, data)
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--max-params", type=int, default=None, help="default: the preset's")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--timing-rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="JSON file for the results")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = dict(item.split("=", 1) for item in args.set)
    rows = []
    for seed in args.seeds:
        data = load_dataset(args.dataset, data_dir=args.data_dir, seed=seed)
        cfg = resolve_config("edge", args.dataset, overrides)
        if args.epochs:
            cfg["epochs"] = args.epochs
        net = GrowableNet.mlp([data.n_features, data.n_outputs], seed=seed)
        budget = args.max_params or cfg["max_params"]
        trainer, result, test, wall = train(net, data, cfg, seed, build_method("edge", cfg), budget)
        epochs = result.history.epochs()
        counts = net.counts()
        costs = [r["growth_seconds"] / r["seconds"] for r in epochs
                 if any(g["epoch"] == r["epoch"] and g["kind"] == "split_edges" for g in result.history.growth())]
        width = dense_width(counts["params"], data.n_features, data.n_outputs)
        dense = GrowableNet.mlp([data.n_features, width, data.n_outputs], seed=seed)
        _, dres, dtest, dwall = train(dense, data, cfg, seed)
        grown_t, dense_t = [], []
        for r in range(args.timing_rounds):
            grown_t.append(epoch_seconds(net, data, cfg, r))
            dense_t.append(epoch_seconds(dense, data, cfg, r))
        row = {
            "seed": seed, "test_edge": test, "val_edge": epochs[-1]["val_metric"],
            "params_edge": counts["params"], "weights_active": counts["weights_active"],
            "stored_params": counts["stored_params"], "growth_events": len(
                [g for g in result.history.growth() if g["kind"] == "split_edges"]),
            "test_dense": dtest, "val_dense": dres.history.epochs()[-1]["val_metric"],
            "params_dense": dense.counts()["params"], "dense_width": width,
            "epoch_ratio": statistics.median(grown_t) / statistics.median(dense_t),
            "epoch_edge_s": statistics.median(grown_t), "epoch_dense_s": statistics.median(dense_t),
            "growth_cost_epochs_max": max(costs) if costs else 0.0,
            "growth_cost_epochs_mean": statistics.mean(costs) if costs else 0.0,
            "wall_edge_s": wall, "wall_dense_s": dwall, "epochs": cfg["epochs"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print("| seed | edge test | edge params | weights_active | dense test (H) | dense params | "
          "epoch ratio | growth cost (epochs, max) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['test_edge']:.4f} | {r['params_edge']} | {r['weights_active']} | "
              f"{r['test_dense']:.4f} ({r['dense_width']}) | {r['params_dense']} | {r['epoch_ratio']:.2f} | "
              f"{r['growth_cost_epochs_max']:.3f} |")
    mean = lambda k: statistics.mean(r[k] for r in rows)  # noqa: E731
    std = lambda k: statistics.pstdev(r[k] for r in rows)  # noqa: E731
    print(f"| mean | {mean('test_edge'):.4f} ± {std('test_edge'):.4f} | {mean('params_edge'):.0f} | "
          f"{mean('weights_active'):.0f} | {mean('test_dense'):.4f} ± {std('test_dense'):.4f} | "
          f"{mean('params_dense'):.0f} | {mean('epoch_ratio'):.2f} | {max(r['growth_cost_epochs_max'] for r in rows):.3f} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

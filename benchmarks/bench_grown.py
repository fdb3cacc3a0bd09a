"""Where the time of a real grown network goes: the MNIST edge preset's final network (seed 0, committed
as ``tests/fixtures/edge_mnist_s0.safetensors``) against the dense MLP 784-H-10 of equal ``params``.

1. *Epoch ratio*: one training epoch on MNIST (the preset's batch 256, Adam lr 1e-3), each network
   timed ``--rounds`` times alternately in this process (median), as ``bench_edge_mnist.py`` times it.
2. *Step parts*: forward, backward and optimizer step of one batch, medians over ``--steps`` steps.
3. *Profile*: ``torch.profiler`` over ``--profile-steps`` training steps of the grown network: the top
   operations by self CPU time and the number of aten calls per step (the dense MLP's beside it).
4. *Sparse cut-over*: one connection's forward + backward + Adam step, the library's masked dense
   connection against the same connection stored sparse (``graph.sparse``: live values and an
   edge-list kernel), over densities, for shapes of the fixture's connections; and the fixture's
   connections' own live fractions. The cut-over ``graph.sparse.SPARSE_BELOW`` is chosen from it.
5. *Storage choice*: the fixture's step with the automatic choice at the default cut-over and at
   higher ``sparse_below`` (more of its connections sparse), with ``stored_params``.

Usage::

    SELFEXPAND_DATA=../shared/data python benchmarks/bench_grown.py --out docs/results/bench_grown.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from selfexpand.data import load_dataset
from selfexpand.graph import GrowableNet
from selfexpand.graph.parts import Connection
from selfexpand.graph.sparse import SPARSE_BELOW, to_sparse
from selfexpand.ops.storage import choose_storage
from selfexpand.presets import resolve_config
from selfexpand.train.trainer import make_optimizer

# ``python benchmarks/bench_grown.py`` puts benchmarks/ first on sys.path: the edge table's epoch timing
from bench_edge_mnist import dense_width, epoch_seconds  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "edge_mnist_s0.safetensors"
DENSITIES = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.4)
SHAPES = ((332, 147, 784), (133, 42, 332), (70, 40, 133), (35, 14, 70))  # rows, columns read, source size


def step_parts(model, x, y, steps: int) -> dict:
    """Median milliseconds of forward (with the loss), backward and Adam's step (the trainer's Adam)."""
    opt = make_optimizer("adam", model.parameters(), 1e-3)
    parts = {"forward": [], "backward": [], "optimizer": []}
    for i in range(steps + 20):
        a = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        b = time.perf_counter()
        loss.backward()
        c = time.perf_counter()
        opt.step()
        d = time.perf_counter()
        if i >= 20:
            for key, value in zip(parts, (b - a, c - b, d - c)):
                parts[key].append(value * 1e3)
    out = {k: statistics.median(v) for k, v in parts.items()}
    out["step"] = sum(out.values())
    return out


def profile_steps(model, x, y, steps: int, top: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    opt = make_optimizer("adam", model.parameters(), 1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(10):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    rows = sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]
    return {"aten_calls_per_step": sum(e.count for e in events) / steps,
            "top": [{"op": e.key, "share": e.self_cpu_time_total / total, "calls_per_step": e.count / steps,
                     "us_per_call": e.self_cpu_time_total / e.count} for e in rows]}


def cutover(rows: int, cols: int, n_source: int, density: float, repeats: int, seed: int) -> dict:
    """Microseconds of one connection's forward, backward and Adam step: the library's masked dense
    ``Connection`` against the same connection stored sparse (``graph.sparse``: values and edge list)."""
    gen = torch.Generator().manual_seed(seed)
    mask = (torch.rand(rows, cols, generator=gen) < density).float()
    weight = torch.randn(rows, cols, generator=gen) * mask
    in_index = torch.randperm(n_source, generator=gen)[:cols]
    x = torch.rand(256, n_source, generator=gen, requires_grad=True)
    masked = Connection("a", "b", weight.clone(), in_index=in_index, mask=mask)
    sparse = Connection("a", "b", weight.clone(), in_index=in_index, mask=mask)
    to_sparse(sparse)
    opts = {"masked_dense": make_optimizer("adam", masked.parameters(), 1e-3),
            "values_only": make_optimizer("adam", sparse.parameters(), 1e-3)}

    def step(conn, opt):
        opt.zero_grad(set_to_none=True)
        x.grad = None
        conn.contribution(x).sum().backward()
        opt.step()

    runs = {"masked_dense": lambda: step(masked, opts["masked_dense"]),
            "values_only": lambda: step(sparse, opts["values_only"])}
    times = {name: [] for name in runs}
    for fn in runs.values():
        for _ in range(10):
            fn()
    for k in range(repeats):
        for name, fn in list(runs.items())[::1 if k % 2 else -1]:
            start = time.perf_counter()
            for _ in range(20):
                fn()
            times[name].append((time.perf_counter() - start) / 20 * 1e6)
    out = {k: statistics.median(v) for k, v in times.items()}
    out["ratio"] = out["values_only"] / out["masked_dense"]
    return out


def storage_rows(x, y, steps: int) -> list[dict]:
    """The fixture's training step under each storage choice: the automatic one at the default cut-over
    and at higher ``sparse_below`` (more connections sparse), with the counts."""
    rows = []
    for below in (SPARSE_BELOW, 0.2, 0.5, 1.0):
        net = GrowableNet.load(FIXTURE)
        net.sparse_below = below
        sparse = choose_storage(net)
        rows.append({"sparse_below": below, "sparse_connections": len(sparse),
                     "stored_params": net.counts()["stored_params"], "step_ms": step_parts(net, x, y, steps)})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="epochs timed per network (alternately)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--profile-steps", type=int, default=30)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--cutover-repeats", type=int, default=7)
    p.add_argument("--skip-epochs", action="store_true", help="no MNIST epochs (needs no data)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    grown = GrowableNet.load(FIXTURE)
    counts = grown.counts()
    width = dense_width(counts["params"], 784, 10)
    dense = GrowableNet.mlp([784, width, 10], seed=0)
    result = {"command": "python benchmarks/bench_grown.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "threads": 1, "load_before": os.getloadavg(), "counts": counts, "dense_width": width,
              "dense_params": dense.counts()["params"], "connections": len(grown.connections),
              "hidden_units": sum(grown.widths()[1:-1])}
    print(f"grown: {counts['params']:,} params ({counts['stored_params']:,} stored), {result['connections']} "
          f"connections, {result['hidden_units']} hidden units; dense 784-{width}-10: {result['dense_params']:,}")
    if not args.skip_epochs:
        data = load_dataset("mnist", seed=0)
        cfg = resolve_config("edge", "mnist", {})
        g, d = [], []
        for r in range(args.rounds):
            g.append(epoch_seconds(grown, data, cfg, r))
            d.append(epoch_seconds(dense, data, cfg, r))
        result["epoch"] = {"grown_s": g, "dense_s": d, "ratio": statistics.median(g) / statistics.median(d)}
        print(f"epoch: grown {statistics.median(g):.3f} s, dense {statistics.median(d):.3f} s, "
              f"ratio {result['epoch']['ratio']:.2f}")
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(256, 784, generator=gen), torch.randint(0, 10, (256,), generator=gen)
    result["step_ms"] = {"grown": step_parts(grown, x, y, args.steps), "dense": step_parts(dense, x, y, args.steps)}
    for name, parts in result["step_ms"].items():
        print(f"step ms, {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
    result["profile"] = {"grown": profile_steps(grown, x, y, args.profile_steps, args.top),
                         "dense": profile_steps(dense, x, y, args.profile_steps, args.top)}
    for name, prof in result["profile"].items():
        print(f"profile, {name}: {prof['aten_calls_per_step']:.0f} aten calls per step; top: " + ", ".join(
            f"{e['op']} {e['share']:.0%}" for e in prof["top"][:6]))
    result["live_fractions"] = sorted(float(c.live().float().mean()) for c in grown.connections.values())
    result["cutover"] = []
    for rows, cols, n_source in SHAPES:
        for density in DENSITIES:
            row = {"shape": [rows, cols], "n_source": n_source, "density": density,
                   **cutover(rows, cols, n_source, density, args.cutover_repeats, 0)}
            result["cutover"].append(row)
            print(f"cut-over {rows}x{cols} at {density:.1%}: masked dense {row['masked_dense']:.0f} us, "
                  f"values-only {row['values_only']:.0f} us ({row['ratio']:.2f})")
    result["storage"] = storage_rows(x, y, args.steps)
    for row in result["storage"]:
        print(f"storage, sparse_below {row['sparse_below']}: {row['sparse_connections']} sparse, "
              f"{row['stored_params']:,} stored, step {row['step_ms']['step']:.2f} ms")
    result["load_after"] = os.getloadavg()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

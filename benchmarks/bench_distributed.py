"""Bytes a data-parallel run communicates, per training step and per growth step, for every method.

Run under torchrun (each rank runs this file); rank 0 writes the JSON::

    python -m torch.distributed.run --standalone --nproc-per-node 2 benchmarks/bench_distributed.py \\
        --out docs/results/distributed_bytes.json

Each method trains on digits (float32, 4 epochs, global batch 32, seed 0; edge with a plateau every
epoch so that it grows) while every collective of ``torch.distributed`` that the library calls is
counted (bytes this rank sends into it: the tensor's size; for ``all_gather_object`` the pickled
object and its size word), split by where it was called from: the training step (gradient
all-reduce), the epoch's loss sum, the check after each growth step (the trainer's epoch: SWE's
integration epochs run inside its growth step), and the barrier at the end of the run.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch.distributed as dist

from selfexpand.presets import method_names
from selfexpand.runs import RunConfig, train_run

EDGE = {"min_gap": 1, "window": 1, "plateau_threshold": 100, "prune_after": 1, "max_new": 20}
COUNTS: dict = defaultdict(lambda: [0, 0])  # phase -> [calls, bytes sent by this rank]
PHASE = ["other"]


def _count(fn, size, key=None):
    """``fn`` counted under ``key``, or the current phase (the training phase's collectives are the
    gradients')."""
    def wrapped(*args, **kwargs):
        entry = COUNTS[key or ("gradients" if PHASE[0] == "train" else PHASE[0])]
        entry[0] += 1
        entry[1] += size(*args)
        return fn(*args, **kwargs)
    return wrapped


def instrument() -> None:
    """Count the library's collectives (``selfexpand.train.distributed`` calls them through ``dist``)."""
    from selfexpand.train import distributed as lib

    dist.all_reduce = _count(dist.all_reduce, lambda t, *a, **k: t.numel() * t.element_size())
    dist.all_gather_object = _count(dist.all_gather_object, lambda out, obj, *a, **k: len(pickle.dumps(obj)) + 8)
    dist.barrier = _count(dist.barrier, lambda *a, **k: 0, key="end of run")
    original_sum, original_check = lib.DataParallel.sum, lib.DataParallel.check_same

    def summed(self, *values):
        PHASE[0] = "epoch loss"
        try:
            return original_sum(self, *values)
        finally:
            PHASE[0] = "train"

    def checked(self, *args, **kwargs):
        PHASE[0] = "growth check"
        try:
            return original_check(self, *args, **kwargs)
        finally:
            PHASE[0] = "train"

    lib.DataParallel.sum, lib.DataParallel.check_same = summed, checked


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="*", default=None)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--out")
    args = p.parse_args(argv)
    instrument()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods or method_names():
            COUNTS.clear()
            PHASE[0] = "train"
            config = RunConfig(method=method, dataset="digits", epochs=args.epochs, batch_size=32, seed=0,
                               out=str(Path(tmp) / method), settings=dict(EDGE) if method.startswith("edge") else {})
            run_dir, summary = train_run(config)
            PHASE[0] = "other"
            counts = {k: {"calls": v[0], "bytes": v[1]} for k, v in COUNTS.items()}
            if dist.get_rank() == 0:
                history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
                steps = counts.get("gradients", {}).get("calls", 0)
                rows.append({"method": method, "params_final": summary["params_final"],
                             "stored_params_final": summary["stored_params_final"],
                             "growth_events": sum(r["type"] == "growth" for r in history),
                             "epochs": args.epochs, "steps": steps, "counts": counts,
                             "gradient_bytes_per_step": counts.get("gradients", {}).get("bytes", 0) / max(steps, 1),
                             "growth_checks": counts.get("growth check", {}).get("calls", 0),
                             "growth_check_bytes": counts.get("growth check", {}).get("bytes", 0)})
                row = rows[-1]
                print(f"{method}: {row['growth_events']} growth events in {row['growth_checks']} growth steps, "
                      f"gradients {row['gradient_bytes_per_step']:.0f} B/step (final stored_params "
                      f"{summary['stored_params_final']}), growth checks {row['growth_check_bytes']} B in all",
                      flush=True)
    if dist.get_rank() == 0 and args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"command": "python -m torch.distributed.run --standalone "
                                              "--nproc-per-node 2 benchmarks/bench_distributed.py "
                                              + " ".join(argv if argv is not None else sys.argv[1:]),
                                              "world_size": dist.get_world_size(), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

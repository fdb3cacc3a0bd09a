"""The default job, ``selfexpand train`` (edge expansion on digits), against its static start.

Runs the real command line in a subprocess for each seed, timing the whole command (start-up and
imports included), then the static start (the linear 64 -> 10 model trained the same epochs with
the same settings, ``--method static``). Prints a Markdown table.

Usage:
    python benchmarks/bench_default.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: list[str], out: Path) -> tuple[dict, float]:
    start = time.perf_counter()
    subprocess.run(["selfexpand", "train", *args, "--out", str(out), "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    return json.loads((out / "summary.json").read_text()), wall


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args(argv)
    print("| seed | wall (s) | growth events | test accuracy | static start test | params start -> final |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            grown, wall = run(["--seed", str(seed)], Path(tmp) / f"edge{seed}")
            static, _ = run(["--seed", str(seed), "--method", "static", "--epochs", str(grown["epochs"])],
                            Path(tmp) / f"static{seed}")
            print(f"| {seed} | {wall:.1f} | {grown['growth_events']} | {grown['test_metric']:.4f} | "
                  f"{static['test_metric']:.4f} | {grown['params_start']} -> {grown['params_final']} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The scikit-learn estimator's overhead against the same run through ``train_run`` (issue #25 target:
<= 5 % wall time), on digits with edge expansion, one thread.

    python benchmarks/bench_sklearn.py --seeds 0 1 2 --out docs/results/sklearn_overhead.json

For each seed: ``train_run`` of ``--method`` on digits (its row, run directory in a temporary folder),
then ``GrowingClassifier(method).fit`` on the same training and validation rows (``val_fraction`` set
so that the split has the same sizes), alternately, ``--repeats`` times each; the medians and their
ratio. Both train the same row's settings for the same epochs; the estimator writes no files. They do
not train the same network: the estimator standardises the features and draws its own validation
rows, so growth differs; the per-FLOP ratio (wall seconds per training + growth FLOP) corrects for the
size each grew to.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from selfexpand.data import load_dataset
from selfexpand.runconfig import RunConfig
from selfexpand.runs import train_run
from selfexpand.sklearn import GrowingClassifier


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--method", default="edge")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for seed in args.seeds:
        data = load_dataset("digits", seed=seed)
        x = np.concatenate([data.x_train.numpy(), data.x_val.numpy()]).reshape(-1, 64) * 16  # raw pixel values
        y = np.concatenate([data.y_train.numpy(), data.y_val.numpy()])
        val_fraction = len(data.y_val) / len(y)
        runs, fits, summaries = [], [], {}
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                _, summaries["run"] = train_run(RunConfig(method=args.method, dataset="digits", seed=seed,
                                                          out=str(Path(tmp) / "run")))
                runs.append(time.perf_counter() - start)
            estimator = GrowingClassifier(args.method, random_state=seed, val_fraction=val_fraction)
            fits.append(_time(lambda: estimator.fit(x, y)))
            summaries["fit"] = estimator.summary_
        flops = {k: v["train_flops"] + (v.get("growth_flops") or 0) for k, v in summaries.items()}
        row = {"seed": seed, "train_run_s": statistics.median(runs), "fit_s": statistics.median(fits),
               "train_runs": runs, "fits": fits, "flops": flops,
               "params": {k: v["params_final"] for k, v in summaries.items()}}
        row["ratio"] = row["fit_s"] / row["train_run_s"]
        row["per_flop_ratio"] = (row["fit_s"] / flops["fit"]) / (row["train_run_s"] / flops["run"])
        rows.append(row)
        print(f"seed {seed}: train_run {row['train_run_s']:.2f} s ({row['params']['run']} params), fit "
              f"{row['fit_s']:.2f} s ({row['params']['fit']} params), ratio {row['ratio']:.3f}, per FLOP "
              f"{row['per_flop_ratio']:.3f}", flush=True)
    result = {"command": "python benchmarks/bench_sklearn.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "threads": 1, "load": os.getloadavg(), "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

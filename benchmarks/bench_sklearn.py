"""The scikit-learn estimator's overhead against the same run through ``train_run`` (issue #25 target:
<= 5 % wall time), on digits with edge expansion, one thread.

    python benchmarks/bench_sklearn.py --seeds 0 1 2 --out docs/results/sklearn_overhead.json

For each seed: ``train_run`` of ``--method`` on digits (its row, run directory in a temporary folder),
then ``GrowingClassifier(method, standardize=False).fit`` on the run's own training rows (scaled as the
digits loader scales them) with its validation rows (``X_val``, ``y_val``), alternately, ``--repeats``
times each; the medians and their ratio. Both train the same network, epoch by epoch (the script checks
that the final ``params`` and the epochs' training losses agree, and
``tests/test_sklearn.py::test_fit_with_the_runs_split_and_scaling_trains_the_runs_network`` proves it), so
the ratio is the estimator's overhead alone; the run also writes its directory and evaluates the test
split, the estimator does neither.
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
        arrays = [t.numpy() for t in (data.x_train, data.y_train, data.x_val, data.y_val)]
        runs, fits, summaries, losses = [], [], {}, {}
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                _, summaries["run"] = train_run(RunConfig(method=args.method, dataset="digits", seed=seed,
                                                          out=str(Path(tmp) / "run")))
                runs.append(time.perf_counter() - start)
                history = [json.loads(line) for line in (Path(tmp) / "run" / "history.jsonl").read_text().splitlines()]
                losses["run"] = [r["train_loss"] for r in history if r["type"] == "epoch"]
            estimator = GrowingClassifier(args.method, random_state=seed, standardize=False)
            fits.append(_time(lambda: estimator.fit(arrays[0], arrays[1], X_val=arrays[2], y_val=arrays[3])))
            summaries["fit"] = estimator.summary_
            losses["fit"] = [r["train_loss"] for r in estimator.history_ if r["type"] == "epoch"]
        same = losses["run"] == losses["fit"] and summaries["run"]["params_final"] == summaries["fit"]["params_final"]
        if not same:
            raise SystemExit(f"seed {seed}: the estimator did not train the run's network; the ratio would not "
                             "measure overhead")
        flops = {k: v["train_flops"] + (v.get("growth_flops") or 0) for k, v in summaries.items()}
        row = {"seed": seed, "train_run_s": statistics.median(runs), "fit_s": statistics.median(fits),
               "train_runs": runs, "fits": fits, "flops": flops,
               "params": {k: v["params_final"] for k, v in summaries.items()}}
        row["ratio"] = row["fit_s"] / row["train_run_s"]
        rows.append(row)
        print(f"seed {seed}: train_run {row['train_run_s']:.2f} s ({row['params']['run']} params), fit "
              f"{row['fit_s']:.2f} s ({row['params']['fit']} params), ratio {row['ratio']:.3f} (same network)",
              flush=True)
    result = {"command": "python benchmarks/bench_sklearn.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "threads": 1, "load": os.getloadavg(), "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

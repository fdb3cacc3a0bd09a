"""Trials finished by ``selfexpand search`` in a time window: one process alone, then ``--processes``
processes sharing one storage (issue #25 target: two processes finish >= 1.7x the trials of one in the
same 30 minutes).

Each process is ``selfexpand search --dataset D --methods M --epochs E --threads 1 --trials 100000``
stopped by SIGINT when the window ends (a search stops cleanly on it; the trial it was running ends
FAILED and is not counted). The counts are read back from the storage: trials COMPLETE or PRUNED,
their epochs trained (a pruned trial's up to its pruning), and whether the trial numbers are contiguous
(none lost or given out twice).

    SELFEXPAND_DATA=../shared/data python benchmarks/bench_search_throughput.py --window 1800 \
        --out docs/results/search_throughput.json

``--only one`` or ``--only shared`` runs one of the two windows (the other's figures can come from an
earlier ``--out`` file passed as ``--merge``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _window(folder: Path, study: str, processes: int, args) -> dict:
    storage = folder / f"{study}.db"
    command = ["selfexpand", "search", "--dataset", args.dataset, "--methods", args.methods, "--epochs",
               str(args.epochs), "--threads", "1", "--trials", "100000", "--study", study, "--storage",
               str(storage)]
    start = time.time()
    load = os.getloadavg()
    procs = [subprocess.Popen(command + ["--out", str(folder / f"{study}-{i}")], stdout=subprocess.DEVNULL,
                              stderr=open(folder / f"{study}-{i}.log", "w")) for i in range(processes)]
    time.sleep(args.window)
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        p.wait()
    return {"processes": processes, "window_s": args.window, "started": time.strftime("%Y-%m-%d %H:%M:%S",
            time.localtime(start)), "load_at_start": load, **_count(storage, study)}


def _count(storage: Path, study: str) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name=study, storage=f"sqlite:///{storage}").get_trials(deepcopy=False)
    done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    seconds = collections.defaultdict(list)
    for t in done:
        if t.state.name == "COMPLETE":
            seconds[t.params["method"]].append(t.user_attrs.get("seconds", 0.0))
    return {"finished": len(done), "complete": sum(t.state.name == "COMPLETE" for t in done),
            "pruned": sum(t.state.name == "PRUNED" for t in done),
            "states": dict(collections.Counter(t.state.name for t in trials)),
            "by_method": dict(collections.Counter(t.params.get("method") for t in done)),
            "epochs": sum(t.user_attrs.get("pruned_at") or t.user_attrs.get("epochs_run") or 0 for t in done),
            "median_complete_s": {m: statistics.median(v) for m, v in seconds.items()},
            "contiguous": sorted(t.number for t in trials) == list(range(len(trials)))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--methods", default="random,swe,edge")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--window", type=float, default=1800, help="seconds per window")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--only", choices=("one", "shared"))
    p.add_argument("--merge", help="an earlier --out file whose other window is kept")
    p.add_argument("--folder", help="where the studies and runs go (default: a temporary folder)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    result = json.loads(Path(args.merge).read_text()) if args.merge else {}
    result["command"] = "python benchmarks/bench_search_throughput.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if args.only in (None, "one"):
            result["one"] = _window(folder, "one", 1, args)
            print(f"one process: {result['one']['finished']} trials, {result['one']['epochs']} epochs", flush=True)
        if args.only in (None, "shared"):
            result["shared"] = _window(folder, "shared", args.processes, args)
            print(f"{args.processes} processes: {result['shared']['finished']} trials, "
                  f"{result['shared']['epochs']} epochs", flush=True)
    if "one" in result and "shared" in result:
        result["trials_ratio"] = result["shared"]["finished"] / result["one"]["finished"]
        result["epochs_ratio"] = result["shared"]["epochs"] / result["one"]["epochs"]
        print(f"ratio: trials {result['trials_ratio']:.2f}x, epochs {result['epochs_ratio']:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

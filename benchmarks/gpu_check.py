"""Every method on CUDA against the CPU: the same first growth decision, parameters within 1e-4, and the
epoch times (issue #27). For a machine with a GPU (the ``device`` tool lends one to some sessions);
``--against cpu`` runs both sides on the CPU, a check of this script itself.

    python benchmarks/gpu_check.py --out docs/results/gpu_check.json
    python benchmarks/gpu_check.py --against cpu --methods edge random      # no GPU needed

Each method trains on digits in float64 for ``--epochs`` (1) with seed 0 on each device (edge with a
plateau every epoch so that it grows after the first); compared: the growth events (kind, site,
params after), every final parameter (largest absolute difference, must be <= ``--tol``), and the
median epoch time of a float32 run of ``--time-epochs`` on each device (the ratio device / CPU).
Exit status 1 when a method differs, 2 when CUDA is asked for and absent.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from selfexpand.presets import method_names
from selfexpand.runs import RunConfig, train_run

# ``python benchmarks/gpu_check.py`` puts benchmarks/ first on sys.path: edge's settings that grow every epoch
from bench_distributed import EDGE


def _run(method: str, device: str, dtype: str, epochs: int, out: Path) -> tuple[dict, list[dict]]:
    config = RunConfig(method=method, dataset="digits", epochs=epochs, batch_size=32, seed=0, device=device,
                       dtype=dtype, out=str(out), settings=dict(EDGE) if method.startswith("edge") else {})
    run_dir, _ = train_run(config)
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    return load_file(str(run_dir / "model.safetensors")), history


def compare(method: str, device: str, args, tmp: Path) -> dict:
    a, ha = _run(method, "cpu", "float64", args.epochs, tmp / f"{method}-reference")
    b, hb = _run(method, device, "float64", args.epochs, tmp / f"{method}-checked")
    events = [[(r["kind"], r["site"], r["params_after"]) for r in h if r["type"] == "growth"] for h in (ha, hb)]
    same_keys = a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    diff = max((float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point()),
               default=0.0) if same_keys else float("inf")
    times = {}
    for k, side in enumerate(("cpu", device)):  # the same key twice with --against cpu: the second run's
        _, h = _run(method, side, "float32", args.time_epochs, tmp / f"{method}-time-{k}")
        times[side] = statistics.median(r["seconds"] for r in h if r["type"] == "epoch")
    row = {"method": method, "events_cpu": events[0], f"events_{device}": events[1],
           "first_decision_same": events[0][:1] == events[1][:1], "max_param_diff": diff,
           "epoch_s": times, "ratio": times[device] / times["cpu"]}
    row["ok"] = row["first_decision_same"] and diff <= args.tol
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--against", default="cuda", help="the device compared with the CPU (default cuda)")
    p.add_argument("--methods", nargs="*", default=None, help="default: every method")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--time-epochs", type=int, default=3)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--out")
    args = p.parse_args(argv)
    if args.against.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available on this machine (run it where a GPU is lent; --against cpu "
              "checks the script on the CPU)", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods or method_names():
            row = compare(method, args.against, args, Path(tmp))
            rows.append(row)
            print(f"{method}: {'ok' if row['ok'] else 'DIFFERS'}; first decision "
                  f"{'same' if row['first_decision_same'] else 'differs'}, parameters within "
                  f"{row['max_param_diff']:.1e}; epoch {row['epoch_s']['cpu']:.3f} s on the CPU, "
                  f"{row['epoch_s'][args.against]:.3f} s on {args.against} ({row['ratio']:.2f}x)", flush=True)
    if args.out:
        device = torch.cuda.get_device_name() if args.against.startswith("cuda") else "cpu"
        Path(args.out).write_text(json.dumps({"command": "python benchmarks/gpu_check.py " + " ".join(
            argv if argv is not None else sys.argv[1:]), "device": device, "torch": torch.__version__,
            "rows": rows}, indent=2) + "\n")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

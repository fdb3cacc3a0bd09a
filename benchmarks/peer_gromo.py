"""GroMo (``gromo`` 0.1.0, TINY) side by side with this library's methods on GroMo's own task (issue #16).

The task (ALGORITHMS.md §5, GroMo paragraph): MNIST, one hidden layer of 8 ReLU units growing by 6
units after each of the first 11 epochs (784-8 -> 784-74-10, 58,840 parameters), 20 epochs of Adam
lr 1e-3, batch 64. Every system sees the same split (``selfexpand.data.load_dataset("mnist", seed=S)``:
48,000 train / 12,000 validation / 10,000 test, pixels / 255), the same seed, the same batch size,
learning rate and torch thread count, the same batching (a fresh ``randperm`` of the training tensor
each epoch, no ``DataLoader``) and the same per-epoch validation pass; the systems of one seed run
one after another (interleaved), so machine load hits them alike.

Systems (``--systems``, comma-separated):

* ``gromo``: GroMo's ``GrowingMLP`` (one hidden layer, ReLU) trained with GroMo's growth loop as in
  its tutorials (``examples/plot_growing_container_tutorial.py``): after each of the first 11 epochs,
  statistics over one pass of the training set (``init_computation``; per batch forward, summed
  cross-entropy backward, ``update_computation``), ``compute_optimal_updates`` with the TINY
  hyper-parameters of its docstring (``compute_delta=False, use_covariance=True, use_projection=True``,
  ``maximum_added_neurons=6``), ``dummy_select_update``, a line search of the step size (scaling
  factor) over ``--gromo-factors`` (the tutorial's 0, 0.1, 0.5, 1) by the training loss of the
  extended network (``extended_forward``), ``apply_change``; then a fresh Adam (the parameters are new
  tensors; GroMo carries no optimizer state through growth).
  ``gromo[stat_batch=1024,search_batch=4096]`` runs the same computation in larger batches (faster,
  the same sums up to rounding); ``gromo[factors=0;0.1;0.5;1;2;5;10]`` widens the line search;
  ``gromo[delta=1]`` also applies TINY's update of the existing weights (``compute_delta=True``).
* ``gromo-static``: the same GroMo model and loop at the final size 784-74-10, no growth (GroMo's
  overhead without its growth).
* ``static``: this library's ``static`` method, 784-74-10, same epochs / batch / lr.
* ``random``, ``zero``, ``net2net``, ``gradmax``, ``firefly``: this library's presets on GroMo's schedule
  (``selfexpand.presets``, through ``Trainer.fit`` as ``selfexpand.runs.train_run`` builds it, without the
  run directory writing). ``NAME[key=value,...]`` runs a preset with overrides (``resolve_config``
  settings, e.g. ``gradmax[lr=2e-3,lr_schedule=cosine]``).

Per run: test and final validation accuracy, final ``params`` (weights + biases; GroMo's counted the
same way), wall seconds of the whole training (data loading excluded; per-epoch validation included),
growth seconds (ours: ``FitResult.growth_seconds``; GroMo: statistics + optimal update + line search +
apply, each recorded). Output: a JSON file (per-run rows, per-system mean ± std, wall-time ratios to
``static``) and a Markdown table on stdout.

    pip install --no-deps gromo==0.1.0 torchmetrics lightning-utilities deprecated
    python benchmarks/peer_gromo.py --data-dir ../shared/data --seeds 0 1 2 \\
        --systems gromo,static,random,zero,net2net,gradmax,firefly --threads 1 --out docs/results/peer_gromo.json

One torch thread: on this 2-core machine GroMo took 11.0 s at 1 thread and 18.5 s at 2 (5 epochs,
5 growths), the static run 2.0 s and 5.1 s; every system uses ``--threads``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
import warnings

import torch
import torch.nn.functional as F

from selfexpand.data import load_dataset
from selfexpand.graph import GrowableNet
from selfexpand.presets import build_method, resolve_config
from selfexpand.train.metrics import evaluate
from selfexpand.train.trainer import Trainer

OURS = ("static", "random", "zero", "net2net", "gradmax", "firefly")
GROMO_SYSTEMS = ("gromo", "gromo-static")
TARGET = {"test_acc": 0.9763, "params": 58840}
INSTALL = ("gromo is not installed. It is needed by this benchmark only (not a dependency of selfexpand):\n"
           "    pip install --no-deps gromo==0.1.0 torchmetrics lightning-utilities deprecated\n"
           "(--no-deps keeps the installed torch; gromo 0.1.0 also needs numpy and networkx.)")


# ---------------------------------------------------------------------- data and batching
def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None):
    """Mini-batches like ``GrowthContext.train_batches``: a fresh permutation when a generator is given."""
    n = x.shape[0]
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]


def accuracy(model, x, y) -> float:
    return evaluate(model, x, y, F.cross_entropy, "accuracy")["accuracy"]


# ---------------------------------------------------------------------- GroMo
def import_gromo():
    try:
        from gromo.containers.growing_mlp import GrowingMLP
    except ImportError as exc:  # gromo itself, or one of its imports (torchmetrics, deprecated)
        raise SystemExit(f"{INSTALL}\n(import failed: {exc})") from None
    return GrowingMLP


@torch.no_grad()
def _extended_train_loss(model, ds, batch_size: int) -> float:
    total = 0.0
    for xb, yb in batches(ds.x_train, ds.y_train, batch_size, None):
        total += float(F.cross_entropy(model.extended_forward(xb), yb, reduction="sum"))
    return total / ds.x_train.shape[0]


def gromo_grow(model, ds, opts: dict, units: int) -> dict:
    """One GroMo TINY growth step, as its tutorial's ``grow``: statistics, optimal update, line search
    on the scaling factor, apply. Returns its timings and choices."""
    t0 = time.perf_counter()
    model.eval()
    model.init_computation()
    for xb, yb in batches(ds.x_train, ds.y_train, opts["stat_batch"], None):
        model.zero_grad()
        loss = F.cross_entropy(model(xb), yb, reduction="sum")  # GroMo averages in its statistics
        loss.backward()
        model.update_computation()
    t1 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:  # "Using the pseudo-inverse ...": counted, not printed
        warnings.simplefilter("always")
        model.compute_optimal_updates(maximum_added_neurons=units, compute_delta=bool(opts["delta"]),
                                      use_covariance=True, alpha_zero=False, omega_zero=False,
                                      use_projection=True, ignore_singular_values=False)
    model.reset_computation()
    model.dummy_select_update()
    proposed = int(model.currently_updated_layer.eigenvalues_extension.shape[0])
    t2 = time.perf_counter()
    losses = {}
    for factor in opts["factors"]:
        model.set_scaling_factor(factor)
        losses[factor] = _extended_train_loss(model, ds, opts["search_batch"])
    best = min(losses, key=losses.get)
    t3 = time.perf_counter()
    model.set_scaling_factor(best)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "input_extension_scaling is null" when factor 0 wins
        model.apply_change()
    model.zero_grad(set_to_none=True)
    model.train()
    t4 = time.perf_counter()
    return {"statistics_s": t1 - t0, "update_s": t2 - t1, "line_search_s": t3 - t2, "apply_s": t4 - t3,
            "units_proposed": proposed, "factor": best,
            "pinv_warnings": sum("pseudo-inverse" in str(w.message) for w in caught),
            "losses": {str(k): v for k, v in losses.items()}}


def gromo_options(overrides: dict, args) -> dict:
    """GroMo's loop settings: ``stat_batch``, ``search_batch`` (batch sizes of the statistics pass and of
    the line search, default the training batch as in GroMo's tutorial), ``factors`` (the line
    search grid, ``;``-separated in ``gromo[factors=0;0.1;0.5;1]``) and ``delta`` (1: also apply
    TINY's optimal update of the existing weights, ``compute_delta=True``, scaled by the factor squared,
    as ``compute_optimal_updates()``'s defaults in GroMo's tutorial do; 0, the default: the TINY
    hyper-parameters of GroMo's docstring, ``compute_delta=False``)."""
    opts = {"stat_batch": args.gromo_stat_batch or args.batch_size,
            "search_batch": args.gromo_search_batch or args.batch_size, "factors": list(args.gromo_factors),
            "delta": 0}
    for key, value in overrides.items():
        if key not in opts:
            raise ValueError(f"gromo setting must be one of {sorted(opts)}, got {key!r}")
        opts[key] = [float(v) for v in value.split(";")] if key == "factors" else int(value)
    return opts


def gromo_loop(model, ds, seed: int, args, grow_after) -> tuple[dict, list[dict]]:
    """GroMo's training loop (the same batching and per-epoch validation as ours): Adam, then after
    each epoch ``grow_after(epoch)`` (its growth steps' records; a fresh Adam after any growth). Returns
    the common row and the steps."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps, epoch_s, val = [], [], None
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        t = time.perf_counter()
        model.train()
        for xb, yb in batches(ds.x_train, ds.y_train, args.batch_size, generator):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
        val = accuracy(model, ds.x_val, ds.y_val)
        epoch_s.append(time.perf_counter() - t)
        grown = grow_after(epoch)
        if grown:
            steps.extend(grown)
            optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    wall = time.perf_counter() - start
    parts = {k: sum(s[k] for s in steps) for k in ("statistics_s", "update_s", "line_search_s", "apply_s")}
    return {"test_acc": accuracy(model, ds.x_test, ds.y_test), "val_acc": val,
            "params": sum(p.numel() for p in model.parameters()), "wall_s": wall,
            "growth_s": sum(parts.values()), **parts, "train_epochs_s": sum(epoch_s),
            "factors": [s["factor"] for s in steps], "pinv_warnings": sum(s["pinv_warnings"] for s in steps),
            "steps": steps}, steps


def run_gromo(ds, seed: int, args, grow: bool, overrides: dict | None = None) -> dict:
    GrowingMLP = import_gromo()
    opts = gromo_options(overrides or {}, args)
    torch.manual_seed(seed)
    hidden = args.start_hidden if grow else args.start_hidden + args.units * args.times
    model = GrowingMLP(in_features=ds.n_features, out_features=ds.n_outputs, hidden_size=hidden,
                       number_hidden_layers=1, activation=torch.nn.ReLU(), use_bias=True)

    def grow_after(epoch):
        if not grow or epoch > args.times:
            return []
        step = gromo_grow(model, ds, opts, args.units)
        step.update(epoch=epoch, hidden=int(model.layers[0].out_features))
        return [step]

    row, steps = gromo_loop(model, ds, seed, args, grow_after)
    return {**row, "hidden": int(model.layers[0].out_features), "gromo_options": opts,
            "units_proposed": [s["units_proposed"] for s in steps]}


# ---------------------------------------------------------------------- ours
def parse_system(text: str) -> tuple[str, dict]:
    """``gradmax`` -> ("gradmax", {}); ``gradmax[lr=2e-3,lr_schedule=cosine]`` -> with overrides."""
    if "[" not in text:
        return text, {}
    if not text.endswith("]"):
        raise SystemExit(f"--systems: expected NAME[key=value,...], got {text!r}")
    name, body = text[:-1].split("[", 1)
    overrides = {}
    for item in filter(None, body.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--systems: expected key=value in {text!r}, got {item!r}")
        overrides[key.strip()] = value.strip()
    return name, overrides


def split_systems(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def our_settings(method: str, overrides: dict, args) -> dict:
    base = {"batch_size": args.batch_size, "lr": args.lr, "epochs": args.epochs}
    if method == "static":
        base["hidden"] = [args.start_hidden + args.units * args.times]
    else:
        base.update(hidden=[args.start_hidden], units=args.units, times=args.times, every=1)
    return resolve_config(method, "mnist", {**base, **overrides})


def run_ours(ds, seed: int, method: str, overrides: dict, args) -> dict:
    cfg = our_settings(method, overrides, args)
    model = GrowableNet.mlp([ds.n_features, *cfg["hidden"], ds.n_outputs], seed=seed)
    trainer = Trainer.from_settings(build_method(method, cfg), cfg, seed=seed)
    start = time.perf_counter()
    result = trainer.fit(model, ds)
    wall = time.perf_counter() - start
    epochs = [r for r in result.history.records if r["type"] == "epoch"]
    hidden = [result.model.layers[name].size for name in result.model.hidden_layers()]
    return {"test_acc": accuracy(result.model, ds.x_test, ds.y_test), "val_acc": epochs[-1]["val_metric"],
            "params": result.model.counts()["params"], "hidden": hidden[0] if len(hidden) == 1 else hidden,
            "wall_s": wall, "growth_s": result.growth_seconds, "train_s": result.train_seconds,
            "settings": {k: cfg[k] for k in sorted(cfg)}}


# ---------------------------------------------------------------------- summary
def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summary_entry(ok: list[dict]) -> dict:
    """One system's summary over its finished runs ``ok``: runs, seeds, mean +- std of the figures."""
    entry = {"runs": len(ok), "seeds": [r["seed"] for r in ok]}
    for key in ("test_acc", "val_acc", "params", "wall_s", "growth_s"):
        entry[key] = mean_std([float(r[key]) for r in ok])
    for key in ("statistics_s", "line_search_s"):
        if key in ok[0]:
            entry[key] = mean_std([r[key] for r in ok])
    return entry


def summarize(rows: list[dict], systems: list[str]) -> dict:
    static_wall = {r["seed"]: r["wall_s"] for r in rows if r["system"] == "static" and "error" not in r}
    out = {}
    for system in systems:
        ok = [r for r in rows if r["system"] == system and "error" not in r]
        if not ok:
            continue
        entry = summary_entry(ok)
        ratios = [r["wall_s"] / static_wall[r["seed"]] for r in ok if r["seed"] in static_wall]
        if ratios:
            entry["wall_ratio_to_static"] = mean_std(ratios)
        out[system] = entry
    gromo = out.get("gromo")
    if gromo:
        g_wall = {r["seed"]: r["wall_s"] for r in rows if r["system"] == "gromo" and "error" not in r}
        for system, entry in out.items():
            ratios = [r["wall_s"] / g_wall[r["seed"]] for r in rows
                      if r["system"] == system and "error" not in r and r["seed"] in g_wall]
            if ratios:
                entry["wall_ratio_to_gromo"] = mean_std(ratios)
            if system.startswith("gromo"):
                continue
            entry["meets_target"] = (entry["test_acc"][0] >= TARGET["test_acc"] and entry["params"][0] <= TARGET["params"]
                                     and entry["wall_s"][0] < gromo["wall_s"][0])
    return out


def markdown(summary: dict) -> str:
    lines = ["| system | runs | test acc | val acc | params | wall s | growth s | wall / static | wall / gromo | target |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for system, e in summary.items():
        def f(key, fmt):
            if key not in e:
                return "-"
            m, s = e[key]
            return f"{m:{fmt}} ± {s:{fmt}}"
        lines.append(f"| {system} | {e['runs']} | {f('test_acc', '.4f')} | {f('val_acc', '.4f')} | "
                     f"{e['params'][0]:,.0f} | {f('wall_s', '.1f')} | {f('growth_s', '.1f')} | "
                     f"{f('wall_ratio_to_static', '.2f')} | {f('wall_ratio_to_gromo', '.2f')} | "
                     f"{'-' if 'meets_target' not in e else ('met' if e['meets_target'] else 'no')} |")
    return "\n".join(lines)


def _library_version() -> dict:
    """Where selfexpand was imported from and its git commit (with ``dirty`` when the tree has changes)."""
    import subprocess

    import selfexpand

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(selfexpand.__file__))))
    info = {"version": selfexpand.__version__, "path": os.path.dirname(selfexpand.__file__)}
    try:
        info["commit"] = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                                        check=True).stdout.strip()
        info["dirty"] = bool(subprocess.run(["git", "-C", root, "status", "--porcelain", "src"], capture_output=True,
                                            text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit_file = os.path.join(root, "COMMIT")  # an exported tree (git archive) with its commit noted
        if os.path.isfile(commit_file):
            info["commit"] = open(commit_file).read().strip()
    return info


def write(path: str | None, result: dict) -> None:
    if path:
        tmp = path + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(result, handle, indent=1)
        os.replace(tmp, path)


def run_table(result: dict, args, systems: list[str], load, gromo, ours, summarize, markdown,
              describe=lambda row: "") -> int:
    """Every system on every seed of ``args.seeds`` (the systems of one seed one after another), each
    row recorded, summarised and written as it ends; a failed run is recorded and the others go on
    (exit status 1). ``load(seed)`` gives the dataset; ``gromo`` / ``ours`` run one system;
    ``describe(row)`` adds to the progress line."""
    failed = 0
    started = time.perf_counter()
    for seed in args.seeds:
        ds = load(seed)
        for system in systems:
            name, overrides = parse_system(system)
            load_now = os.getloadavg()[0]
            try:
                if name in ("gromo", "gromo-static"):
                    row = gromo(ds, seed, args, grow=name == "gromo", overrides=overrides)
                else:
                    row = ours(ds, seed, name, overrides, args)
            except Exception as exc:  # record and go on; the exit status says it
                failed += 1
                row = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
                print(row["traceback"], file=sys.stderr)
            row = {"system": system, "seed": seed, "load": load_now, **row}
            result["rows"].append(row)
            if "error" in row:
                print(f"seed {seed} {system}: FAILED {row['error']}", flush=True)
            else:
                print(f"seed {seed} {system}: test {row['test_acc']:.4f} val {row['val_acc']:.4f} params {row['params']} "
                      f"{describe(row)}wall {row['wall_s']:.1f} s growth {row['growth_s']:.1f} s (load {load_now:.2f})",
                      flush=True)
            result["summary"] = summarize(result["rows"], systems)
            write(args.out, result)
    result["seconds"] = time.perf_counter() - started
    result["load_end"] = os.getloadavg()
    result["summary"] = summarize(result["rows"], systems)
    write(args.out, result)
    print()
    print(markdown(result["summary"]))
    print(f"\nthreads {result['threads']}, total {result['seconds']:.0f} s, load average "
          f"{result['load_start'][0]:.2f} -> {result['load_end'][0]:.2f}")
    if failed:
        print(f"{failed} run(s) failed", file=sys.stderr)
        return 1
    return 0


def add_common_args(p: argparse.ArgumentParser, systems: str, systems_help: str, epochs: int) -> None:
    """The options every side by side has: data, seeds, systems, threads, the training protocol, GroMo's
    line search and passes, the output file."""
    p.add_argument("--data-dir", default=os.environ.get("SELFEXPAND_DATA"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--systems", default=systems, help=systems_help)
    p.add_argument("--threads", type=int, default=1, help="torch threads, the same for every system")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--gromo-factors", type=float, nargs="+", default=[0.0, 0.1, 0.5, 1.0],
                   help="GroMo's line search grid of scaling factors (its tutorial's)")
    p.add_argument("--gromo-stat-batch", type=int, help="batch of GroMo's statistics pass (default: --batch-size)")
    p.add_argument("--gromo-search-batch", type=int, help="batch of GroMo's line search (default: --batch-size)")
    p.add_argument("--out", help="JSON file for every run and the summary")


def start_result(args, ours: tuple[str, ...], importer, target, protocol: dict) -> tuple[list[str], dict]:
    """The systems of ``args.systems`` (an unknown one refused; GroMo imported by ``importer`` when one
    is GroMo's) and the result's header; sets the torch thread count."""
    systems = split_systems(args.systems)
    for system in systems:
        name, _ = parse_system(system)
        if name not in ours + GROMO_SYSTEMS:
            raise SystemExit(f"--systems: unknown system {name!r}; known: {', '.join(GROMO_SYSTEMS + ours)}")
    gromo_version = None
    if any(parse_system(s)[0] in GROMO_SYSTEMS for s in systems):
        importer()
        from importlib.metadata import version

        gromo_version = version("gromo")
    torch.set_num_threads(args.threads)
    return systems, {"command": " ".join([os.path.basename(sys.executable)] + sys.argv),
                     "threads": torch.get_num_threads(), "torch": torch.__version__, "gromo": gromo_version,
                     "cpu_count": os.cpu_count(), "platform": platform.platform(), "selfexpand": _library_version(),
                     "target": target, "protocol": protocol, "load_start": os.getloadavg(), "rows": []}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p, "gromo,static,random,zero,net2net,gradmax,firefly",
                    "comma-separated: gromo, gromo-static, static, random, zero, net2net, gradmax, firefly, "
                    "or NAME[key=value,...] for one of ours with overrides", epochs=20)
    p.add_argument("--start-hidden", type=int, default=8)
    p.add_argument("--units", type=int, default=6, help="units added per growth")
    p.add_argument("--times", type=int, default=11, help="growths, after each of the first TIMES epochs")
    args = p.parse_args(argv)
    systems, result = start_result(
        args, OURS, import_gromo, TARGET,
        {"dataset": "mnist", "split": "selfexpand load_dataset(seed): 48000/12000/10000",
         "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "optimizer": "adam",
         "start_hidden": args.start_hidden, "units": args.units, "times": args.times,
         "gromo_factors": args.gromo_factors, "gromo_stat_batch": args.gromo_stat_batch or args.batch_size,
         "gromo_search_batch": args.gromo_search_batch or args.batch_size})
    return run_table(result, args, systems, lambda seed: load_dataset("mnist", data_dir=args.data_dir, seed=seed),
                     run_gromo, run_ours, summarize, markdown)


if __name__ == "__main__":
    sys.exit(main())

"""The ``selfexpand`` command line: parses, validates, calls the library, prints.

The only module that talks to the terminal. A bad argument or setting, a missing or damaged file and
every other error the library raises as a ``SelfExpandError`` end with exit status 2 and one line on
standard error; an error the library does not expect (a defect) still shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import ConfigError
from .validators import Integer, Number

__all__ = ["main"]


class UsageError(Exception):
    """A bad command line; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise UsageError(message)


def _typed(rule):
    """An argparse type: the text read and checked by the validator ``rule`` (YAML, as ``--set``
    reads it); a refused value states the rule and echoes the text as typed."""

    def parse(text: str):
        try:
            return rule.parse("value", text)
        except ConfigError:
            raise argparse.ArgumentTypeError(f"must be {rule.describe()}, got {text!r}") from None

    return parse


_positive_int = _typed(Integer(1))
_positive_float = _typed(Number(0, low_open=True))
_fraction = _typed(Number(0, 1, low_open=True, high_open=True))
_unit_interval = _typed(Number(0, 1))


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__
    from .graph.spec import FRONTS  # importing selfexpand.graph registers conv and conv-small

    p = _Parser(prog="selfexpand", description="Self-expanding neural networks.")
    p.add_argument("--version", action="version", version=f"selfexpand {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    t = sub.add_parser("train", help="grow a network (default: edge expansion on digits)")
    t.add_argument("--method", default=None, help="growth method (default: edge; `selfexpand methods` lists them)")
    t.add_argument("--dataset", default=None, help="dataset name or a .csv / .npz file (default: digits)")
    t.add_argument("--target", help="target column of a CSV file")
    t.add_argument("--test-file", help="a CSV / NPZ with the same columns to use as the test set")
    t.add_argument("--data-dir", help="folder holding the dataset (default: $SELFEXPAND_DATA)")
    t.add_argument("--epochs", type=_positive_int, help="total training epochs of the run")
    t.add_argument("--batch-size", type=_positive_int)
    t.add_argument("--lr", type=_positive_float)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--val-fraction", type=_fraction, default=None)
    t.add_argument("--out", help="run directory (default: runs/<dataset>-<method>-<time>)")
    t.add_argument("--config", help="a YAML file of these options and method settings")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one method setting (repeatable; `selfexpand methods NAME` lists them)")
    t.add_argument("--max-params", type=_positive_int, help="growth never exceeds this many params")
    t.add_argument("--grow-until", type=_unit_interval, default=None, metavar="F",
                   help="no growth after this fraction of the epochs (default: the method's; 1: growth may "
                        "come until the end)")
    for kind in ("trigger", "selector", "initializer"):
        t.add_argument(f"--{kind}", default=None, metavar="NAME",
                       help=f"swap in another {kind} (`selfexpand methods --parts` lists them)")
    t.add_argument("--front", choices=sorted(FRONTS), default=None,
                   help="a fixed conv extractor before the growable layers (image datasets; default: none)")
    t.add_argument("--device", choices=["cpu", "cuda"], default=None)
    t.add_argument("--threads", type=_positive_int, help="torch CPU threads (default: 1 for small models)")
    t.add_argument("--twin-of", help="train the static twin of this finished run")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    r = sub.add_parser("resume", help="continue a run from its last checkpoint")
    r.add_argument("run_dir")
    r.add_argument("--epochs", type=_positive_int, help="new total number of epochs")
    r.add_argument("--threads", type=_positive_int)
    r.add_argument("--quiet", action="store_true")
    i = sub.add_parser("inspect", help="architecture, counts and growth events of a run")
    i.add_argument("run_dir")
    pr = sub.add_parser("predict", help="predictions of a finished run for a CSV / NPZ file")
    pr.add_argument("run_dir")
    pr.add_argument("file")
    m = sub.add_parser("methods", help="the methods, or one method's parts and settings")
    m.add_argument("name", nargs="?", help="a method: list its parts and every setting with its value and rule")
    m.add_argument("--dataset", default="*", help="show the settings of the method's row for this dataset")
    m.add_argument("--parts", action="store_true", help="list the registered parts of each kind")
    _add_sweep_parser(sub)
    b = sub.add_parser("bench", help="several methods on one dataset, each beside its static twins, the static "
                                     "front of its start network and the sweep over that front",
                       description="Each growing run is followed by its equal-epoch twin (its final architecture, "
                                   "trained from scratch as long) and its equal-compute twin (as many epochs as fit "
                                   "in the run's training and growth FLOPs). Methods that start from the same "
                                   "network form a family; each family gets a static front (5 static networks "
                                   "from the start's params to twice the largest grown params, each trained the "
                                   "full budget), and the sweep keeps the front network with the best validation "
                                   "metric, paying for all five. Writes results.csv (one row per run, its kind), "
                                   "results.md, pareto.png and pareto_flops.png.")
    b.add_argument("--dataset", default="digits", help="dataset name or a .csv / .npz file (default: digits)")
    b.add_argument("--methods", required=True, help="comma-separated method names")
    b.add_argument("--seeds", type=_positive_int, default=1, help="seeds 0..K-1 (default 1)")
    b.add_argument("--epochs", type=_positive_int, help="epochs of every run (default: each method's own)")
    b.add_argument("--jobs", type=_positive_int, default=1, help="runs in parallel processes (default 1)")
    b.add_argument("--data-dir", help="folder holding the dataset (default: $SELFEXPAND_DATA)")
    b.add_argument("--out", help="folder for results.csv, results.md, pareto.png, pareto_flops.png "
                                 "(default: runs/bench-...)")
    b.add_argument("--no-front", action="store_true", help="no static front and no sweep (only the runs and "
                                                          "their twins)")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting of every method's runs (repeatable; a key a method lacks "
                        "fails its runs)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    from .errors import SelfExpandError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            args = _parser().parse_args(argv)
            if args.command is None:
                args = _parser().parse_args(["train", *argv])
        except SystemExit as exc:  # --help, --version: argparse printed them; return, do not exit
            return exc.code if isinstance(exc.code, int) else 0
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        return {"train": _train, "resume": _resume, "inspect": _inspect, "predict": _predict,
                "sweep": _sweep, "bench": _bench, "methods": _methods}[
            args.command](args, argv)
    except UsageError as exc:
        print(f"selfexpand: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `selfexpand predict ... | head`: the reader left; not an error of ours
        _silence_stdout()
        return 141
    except (SelfExpandError, OSError) as exc:
        print(f"selfexpand: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("selfexpand: interrupted; resume with `selfexpand resume RUN_DIR`", file=sys.stderr)
        return 130


_TRAIN_OPTIONS = ("method", "dataset", "target", "test_file", "data_dir", "epochs", "batch_size", "lr",
                  "seed", "val_fraction", "max_params", "grow_until", "device", "front")


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (captured output)
        pass


def _config_from(args):
    from .runs import RunConfig, twin_config

    if args.twin_of:
        ignored = [f"--{k.replace('_', '-')}" for k in _TRAIN_OPTIONS + ("config", "trigger", "selector", "initializer")
                   if getattr(args, k) is not None] + (["--set"] if args.set else [])
        if ignored:
            raise UsageError(f"--twin-of reuses the run's own settings; it takes only --out, --threads and "
                             f"--quiet, got {' '.join(ignored)}")
        return twin_config(args.twin_of, out=args.out)
    values: dict = {}
    if args.config:
        values = _read_yaml(args.config)
    settings = values.pop("settings", None) or {}
    if not isinstance(settings, dict):
        raise UsageError(f"config {args.config!r}: settings must be a mapping of name: value, "
                         f"got {type(settings).__name__}")
    settings = dict(settings)
    known = set(RunConfig.__dataclass_fields__) - {"settings", "twin_of"}
    for key in list(values):
        if key not in known:
            settings[key] = values.pop(key)  # method settings may sit at the top level too
    settings.update(_parse_sets(args.set))
    for key in (*_TRAIN_OPTIONS, "out"):
        value = getattr(args, key)
        if value is not None:
            values[key] = value
    for kind in ("trigger", "selector", "initializer"):  # method settings: stored with the run
        if getattr(args, kind) is not None:
            settings[kind] = getattr(args, kind)
    try:
        return RunConfig(**values, settings=settings)
    except TypeError as exc:
        raise UsageError(f"bad configuration: {exc}") from None


def _read_yaml(path: str) -> dict:
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read config {path!r}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"config {path!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise UsageError(f"config {path!r} must be a mapping of option: value, got {type(values).__name__}")
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def _set_threads(args, small: bool = True) -> None:
    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    elif small:
        torch.set_num_threads(1)


def _small_dataset(dataset) -> bool:
    """Digits and the user's tables train fastest on one thread; the rest use torch's default.

    Behind a conv front too: on digits' 8x8 images ``conv-small`` took 0.45 s per epoch on one
    thread against 1.5-19 s on two (2-core machine, shared). Tables cannot have a front (no image
    shape); every image dataset with a front keeps torch's default."""
    return str(dataset) == "digits" or str(dataset).lower().endswith((".csv", ".npz"))


def _run_dataset(run_dir: str):
    """The dataset of a run directory's ``config.yaml`` (None when unreadable: resume reports it)."""
    import yaml

    try:
        config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return config.get("dataset") if isinstance(config, dict) else None


def _train(args, argv) -> int:
    from .presets import method_names
    from .runs import train_run

    config = _config_from(args)
    if config.method not in method_names():
        raise UsageError(f"unknown method {config.method!r}; known methods: {', '.join(method_names())}")
    _set_threads(args, small=_small_dataset(config.dataset))
    run_dir, summary = train_run(config, callbacks=_progress(args), command=["selfexpand", *argv])
    _print_summary(summary, run_dir)
    return 0


def _resume(args, argv) -> int:
    from .runs import resume_run

    _set_threads(args, small=_small_dataset(_run_dataset(args.run_dir)))
    run_dir, summary = resume_run(args.run_dir, epochs=args.epochs, callbacks=_progress(args))
    _print_summary(summary, run_dir)
    return 0


def _inspect(args, argv) -> int:
    from .report.describe import describe_run

    print(describe_run(args.run_dir))
    return 0


def _predict(args, argv) -> int:
    from .runs import predict_file

    for value in predict_file(args.run_dir, args.file):
        print(json.dumps(value) if isinstance(value, list) else value)
    return 0


# ---------------------------------------------------------------------- selfexpand sweep
def _add_sweep_parser(sub) -> None:
    s = sub.add_parser("sweep", help="every seed and grid setting of a size method, growing and fixed, "
                                     "as one batched computation")
    s.add_argument("--method", required=True, help="size-weight, controller-mask or controller-mask-reference")
    s.add_argument("--dataset", required=True, help="a named dataset (bessel, bessel-sum, spirals, ...)")
    s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="values of one setting to sweep (repeatable: every combination is run)")
    s.add_argument("--seeds", type=_positive_int, default=20, help="seeds 0..N-1 for every setting (default 20)")
    s.add_argument("--epochs", type=_positive_int, help="full-batch steps of every run (default: the preset's)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a method setting or dataset option shared by every run (repeatable)")
    s.add_argument("--out", help="folder for results.csv, results.md, sweep.png (default: runs/sweep-...)")
    s.add_argument("--float64", action="store_true", help="compute in float64 (default float32)")
    s.add_argument("--control-input", action="store_true",
                   help="also feed N (or c) to every hidden unit as an input, as the reference code does")
    s.add_argument("--threads", type=_positive_int, help="torch CPU threads (default 1)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")


def _sweep(args, argv) -> int:
    """``selfexpand sweep``: ``selfexpand.sweep.run_sweep`` into a new folder; prints ``results.md``."""
    import time

    import torch

    from .sweep import parse_grid, run_sweep, write_sweep
    from .sweep.report import summary_markdown

    settings = _parse_sets(args.set)
    grid = parse_grid(args.grid, args.method)
    out = Path(args.out) if args.out else Path("runs") / (
        f"sweep-{args.dataset}-{args.method}-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out must be a new or empty folder (nothing is overwritten), got {str(out)!r}")
    _set_threads(args, small=True)
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="step", dynamic_ncols=True, file=sys.stderr)
        bar.update(done - bar.n)

    try:
        result = run_sweep(args.method, args.dataset, grid, args.seeds, settings=settings, epochs=args.epochs,
                           dtype=torch.float64 if args.float64 else torch.float32,
                           control_input=args.control_input, progress=None if args.quiet else progress)
    finally:
        if bar is not None:
            bar.close()
    write_sweep(result, out)
    print(summary_markdown(result), end="")
    print(f"\nsweep directory: {out}")
    return 0


def _parse_sets(items: list[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` items as a dict (values stay text: each method coerces its own)."""
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set takes KEY=VALUE, got {item!r}")
        settings[key.strip()] = value
    return settings


# ---------------------------------------------------------------------- selfexpand bench
def _bench(args, argv) -> int:
    """``selfexpand bench``: :func:`selfexpand.bench.run_bench` into a new folder; exit 1 if a run failed."""
    import time

    from .bench import run_bench, write_bench

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    out = Path(args.out) if args.out else Path("runs") / f"bench-{Path(args.dataset).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out must be a new or empty folder (nothing is overwritten), got {str(out)!r}")
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if args.quiet:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="job", desc="bench", dynamic_ncols=True, file=sys.stderr)
        if bar.total != total:  # the fronts' jobs are known once the methods have run
            bar.total = total
            bar.refresh()
        bar.update(done - bar.n)

    progress(0, len(methods) * args.seeds)
    try:
        rows = run_bench(args.dataset, methods, args.seeds, out, epochs=args.epochs, jobs=args.jobs,
                         data_dir=args.data_dir, progress=progress, settings=_parse_sets(args.set),
                         front=not args.no_front)
    finally:
        if bar is not None:
            bar.close()
    write_bench(rows, out, command="selfexpand " + " ".join(argv), jobs=args.jobs)
    print((out / "results.md").read_text(), end="")
    print(f"\nbench directory: {out}")
    failed = [r for r in rows if r.get("error")]
    if failed:
        print(f"selfexpand: error: {len(failed)} of {len(rows)} runs failed (see results.md)", file=sys.stderr)
    return 1 if failed else 0


def _methods(args, argv) -> int:
    """``selfexpand methods``: every method in a line; with a name, its parts and settings."""
    from .presets import get_preset, method_names, method_settings

    if args.parts:
        from .strategies import PART_KINDS, part_class, part_names

        for kind in PART_KINDS:
            for name in part_names(kind):
                settings = ", ".join(s.name for s in part_class(kind, name).declared()) or "no settings"
                print(f"{kind:<12} {name:<20} {settings}")
        return 0
    if args.name is None:
        width = max(len(n) for n in method_names())
        for name in method_names():
            print(f"{name:<{width}}  {get_preset(name).summary}")
        return 0
    preset = get_preset(args.name)
    print(f"{preset.name}: {preset.summary}")
    print(f"row: {preset.row_key(args.dataset)}  (rows: {', '.join(preset.rows)})")
    owner = None
    for label, s, value in method_settings(args.name, args.dataset):
        if label != owner:
            owner = label
            print(f"\n{label}")
        print(f"  {s.name} = {value!r}\n      {s.describe()}")
    return 0


def _progress(args) -> list:
    if args.quiet:
        return []
    from .train.progress import ProgressBar

    return [ProgressBar()]


def _print_summary(summary: dict, run_dir) -> None:
    from .report.summary import SUMMARY_TABLE_KEYS

    keys = list(SUMMARY_TABLE_KEYS)
    if summary.get("front_params"):  # a run behind a conv front: its params are counted apart
        after = keys.index("stored_params_final") + 1 if "stored_params_final" in keys else len(keys)
        keys.insert(after, "front_params")
    width = max(len(k) for k in keys)
    for key in keys:
        value = summary[key]
        if isinstance(value, float):
            value = f"{value:.4f}"
        print(f"{key:<{width}}  {value}")
    print(f"{'run directory':<{width}}  {run_dir}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

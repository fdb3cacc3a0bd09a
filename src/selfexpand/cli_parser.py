"""The ``selfexpand`` argument parser: every subcommand, option, default and listing of ``--help``.

Imports no torch (the method, dataset and front names come from :mod:`selfexpand.catalog`), so
``selfexpand --help`` and a bad command line answer at once. A default that comes from the method's
row for the dataset says so in its help (``selfexpand methods NAME --dataset D`` shows the row).
"""

from __future__ import annotations

import argparse

from . import catalog
from .errors import ConfigError
from .validators import Integer, Number

__all__ = ["UsageError", "build_parser", "parse_sets", "positive_int", "positive_float", "fraction",
           "unit_interval", "ROW"]

ROW = "the method's row"  # defaults resolved per method and dataset


class UsageError(Exception):
    """A bad command line; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise UsageError(message)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help with the description and epilog as written (the listings keep their lines)."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=30)


def _typed(rule):
    """An argparse type: the text read and checked by the validator ``rule`` (YAML, as ``--set``
    reads it); a refused value states the rule and echoes the text as typed."""

    def parse(text: str):
        try:
            return rule.parse("value", text)
        except ConfigError:
            raise argparse.ArgumentTypeError(f"must be {rule.describe()}, got {text!r}") from None

    return parse


positive_int = _typed(Integer(1))
positive_float = _typed(Number(0, low_open=True))
fraction = _typed(Number(0, 1, low_open=True, high_open=True))
unit_interval = _typed(Number(0, 1))


def parse_sets(items: list[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` items as a dict (values stay text: each method coerces its own)."""
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set takes KEY=VALUE, got {item!r}")
        settings[key.strip()] = value
    return settings


def _method_listing() -> str:
    width = max(len(n) for n in catalog.METHODS)
    return "\n".join(f"  {name:<{width}}  {summary}" for name, summary in catalog.METHODS.items())


def _wrapped(label: str, names) -> str:
    import textwrap

    return textwrap.fill(", ".join(names), width=100, initial_indent="  ", subsequent_indent="  ",
                         break_on_hyphens=False) if names else f"  ({label}: none)"


TRAIN_EPILOG = (
    "methods (`selfexpand methods NAME` lists one's parts and settings):\n" + _method_listing() + "\n\n"
    "datasets (or the path of a .csv / .npz file):\n" + _wrapped("datasets", catalog.DATASETS) + "\n\n"
    "fronts (--front):\n" + _wrapped("fronts", catalog.FRONTS) + "\n\n"
    f"A default marked \"{ROW}\" is the method's value for the dataset: `selfexpand methods NAME --dataset D`\n"
    "shows it. Exit status: 0 done, 2 bad command or input, 3 training stopped (a non-finite loss; the last\n"
    "good checkpoint is kept: `selfexpand resume DIR --lr ...`), 130 interrupted (`selfexpand resume DIR`).")


def _add_data_options(p, *, for_train: bool) -> None:
    """``--target``, ``--test-file``, ``--task``, ``--val-fraction``: how a dataset is read."""
    p.add_argument("--target", help="target column of a CSV file (required for a CSV)")
    p.add_argument("--test-file", help="a CSV / NPZ with the same columns to use as the test set (default: a "
                                       "fixed test fifth split off the data)")
    p.add_argument("--task", choices=catalog.TASKS, default=None,
                   help="read the target as classes or as numbers (default: inferred from the target)")
    p.add_argument("--val-fraction", type=fraction, default=None, metavar="F",
                   help="fraction of the training data held out for validation (default: 0.2)")
    if for_train:
        p.add_argument("--data-dir", help="folder holding the dataset (default: $SELFEXPAND_DATA)")


def _add_train(sub) -> None:
    t = sub.add_parser("train", help="grow a network (default: edge expansion on digits)", formatter_class=_Formatter,
                       description="Grow a network on a dataset and write a run directory.", epilog=TRAIN_EPILOG)
    t.add_argument("--method", default=None, help="growth method, listed below (default: edge)")
    t.add_argument("--dataset", default=None, help="dataset name, listed below, or a .csv / .npz file "
                                                   "(default: digits)")
    _add_data_options(t, for_train=True)
    t.add_argument("--epochs", type=positive_int, metavar="N", help=f"total training epochs of the run (default: {ROW})")
    t.add_argument("--batch-size", type=positive_int, metavar="N", help=f"examples per step (default: {ROW})")
    t.add_argument("--lr", type=positive_float, metavar="X", help=f"learning rate (default: {ROW})")
    t.add_argument("--seed", type=int, default=None, help="seed of the split, the start values and growth "
                                                          "(default: 0)")
    t.add_argument("--out", help="run directory, new or empty (default: runs/<dataset>-<method>-<time>)")
    t.add_argument("--config", help="a YAML file of these options and method settings (default: none)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one method setting (repeatable; `selfexpand methods NAME` lists them)")
    t.add_argument("--max-params", type=positive_int, metavar="N",
                   help=f"growth never exceeds this many params (default: {ROW}; most have no bound)")
    t.add_argument("--grow-until", type=unit_interval, default=None, metavar="F",
                   help=f"no growth after this fraction of the epochs (default: {ROW}; 1: growth may come "
                        "until the end)")
    for kind in ("trigger", "selector", "initializer"):
        t.add_argument(f"--{kind}", default=None, metavar="NAME",
                       help=f"swap in another {kind} (default: the method's own; `selfexpand methods --parts` "
                            "lists them)")
    t.add_argument("--front", choices=catalog.FRONTS, default=None,
                   help="a fixed conv extractor before the growable layers (image datasets; default: none)")
    t.add_argument("--device", choices=["cpu", "cuda"], default=None, help="where to train (default: cpu)")
    t.add_argument("--dtype", choices=["float32", "float64"], default=None,
                   help="the floating-point type the model and data train in (default: float32)")
    t.add_argument("--nproc", type=positive_int, default=None, metavar="N",
                   help="train on N data-parallel processes of this machine (torchrun; gloo on the CPU, NCCL "
                        "on CUDA); each takes a share of every batch (default: 1)")
    t.add_argument("--threads", type=positive_int, metavar="N",
                   help="torch CPU threads (default: 1 for digits and tables, else torch's own)")
    t.add_argument("--twin-of", metavar="RUN_DIR", help="train the static twin of this finished run")
    t.add_argument("--tensorboard", metavar="DIR", default=None,
                   help="also log losses, metric, params, FLOPs, widths and growth events to TensorBoard event "
                        "files in DIR (needs the tensorboard extra; default: none)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_runs(sub) -> None:
    r = sub.add_parser("resume", help="continue a run from its last checkpoint", formatter_class=_Formatter,
                       description="Continue a run from its last checkpoint, in its own directory.")
    r.add_argument("run_dir")
    r.add_argument("--epochs", type=positive_int, metavar="N", help="new total number of epochs (default: the "
                                                                     "run's own)")
    r.add_argument("--lr", type=positive_float, metavar="X",
                   help="learning rate from here on, e.g. smaller after a stop at a non-finite loss (default: "
                        "the run's own)")
    r.add_argument("--threads", type=positive_int, metavar="N", help="torch CPU threads (default: as train)")
    r.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="continue on this device (default: the run's own; recorded, not part of its identity)")
    r.add_argument("--tensorboard", metavar="DIR", default=None,
                   help="log to TensorBoard in DIR (the train run's DIR continues its curves; default: none)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    i = sub.add_parser("inspect", help="architecture, counts and growth events of a run")
    i.add_argument("run_dir")
    pr = sub.add_parser("predict", help="predictions of a finished run for a CSV / NPZ file",
                        description="One prediction per row of FILE: a class label, or the outputs of a "
                                    "regression run.")
    pr.add_argument("run_dir")
    pr.add_argument("file")
    pr.add_argument("--proba", action="store_true",
                    help="also the probability of every class, after a header line naming them "
                         "(classification runs)")
    pr.add_argument("--out", metavar="FILE.csv",
                    help="write a CSV with a header instead (columns: prediction, and p_<class> per class "
                         "with --proba; a new file; default: print to stdout)")
    m = sub.add_parser("methods", help="the methods, or one method's parts and settings")
    m.add_argument("name", nargs="?", help="a method: list its parts and every setting with its value and rule")
    m.add_argument("--dataset", default="*", help="show the settings of the method's row for this dataset "
                                                  "(default: the '*' row)")
    m.add_argument("--parts", action="store_true",
                   help="list the registered parts of each kind (with NAME: that method's parts)")


def _add_sweep(sub) -> None:
    s = sub.add_parser("sweep", help="every seed and grid setting of a size method, growing and fixed, "
                                     "as one batched computation")
    s.add_argument("--method", required=True, help="size-weight, controller-mask or controller-mask-reference")
    s.add_argument("--dataset", required=True, help="a named dataset (bessel, bessel-sum, spirals, ...)")
    _add_data_options(s, for_train=False)
    s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="values of one setting to sweep (repeatable: every combination is run)")
    s.add_argument("--seeds", type=positive_int, default=20, help="seeds 0..N-1 for every setting (default: 20)")
    s.add_argument("--epochs", type=positive_int, help="full-batch steps of every run (default: the preset's)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a method setting or dataset option shared by every run (repeatable)")
    s.add_argument("--out", help="folder for results.csv, results.md, sweep.png (default: runs/sweep-...)")
    s.add_argument("--float64", action="store_true", help="compute in float64 (default: float32)")
    s.add_argument("--control-input", action="store_true",
                   help="also feed N (or c) to every hidden unit as an input, as the reference code does")
    s.add_argument("--threads", type=positive_int, help="torch CPU threads (default: 1)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_bench(sub) -> None:
    b = sub.add_parser("bench", help="several methods on one dataset, each beside its static twins, the static "
                                     "front of its start network and the sweep over that front",
                       description="Each growing run is followed by its equal-epoch twin (its final architecture, "
                                   "trained from scratch as long) and its equal-compute twin (as many epochs as fit "
                                   "in the run's training and growth FLOPs). Methods that start from the same "
                                   "network form a family; each family gets a static front (5 static networks "
                                   "from the start's params to twice the largest grown params, each trained the "
                                   "full budget), and the sweep keeps the front network with the best validation "
                                   "metric, paying for all five. Writes results.csv (one row per run, its kind), "
                                   "results.md, pareto.png and pareto_flops.png. Exit status 1 when a run failed; "
                                   "an interrupted bench continues with --resume --out DIR.")
    b.add_argument("--dataset", default="digits", help="dataset name or a .csv / .npz file (default: digits)")
    _add_data_options(b, for_train=False)
    b.add_argument("--methods", required=True, help="comma-separated method names")
    b.add_argument("--seeds", type=positive_int, default=1, help="seeds 0..K-1 (default: 1)")
    b.add_argument("--epochs", type=positive_int, help="epochs of every run (default: each method's own)")
    b.add_argument("--jobs", type=positive_int, default=1, help="runs in parallel processes (default: 1)")
    b.add_argument("--data-dir", help="folder holding the dataset (default: $SELFEXPAND_DATA)")
    b.add_argument("--out", help="folder for results.csv, results.md, pareto.png, pareto_flops.png, new or "
                                 "empty (default: runs/bench-...)")
    b.add_argument("--resume", action="store_true",
                   help="continue the interrupted bench in --out: finished runs are kept, the rest are run")
    b.add_argument("--no-front", action="store_true", help="no static front and no sweep (only the runs and "
                                                          "their twins)")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting of every method's runs (repeatable; a key a method lacks "
                        "fails its runs)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_search(sub) -> None:
    s = sub.add_parser("search", help="let Optuna pick a method and its settings on the validation split",
                       description="Each trial trains one run (a method and settings from their search spaces) on "
                                   "the training split and is judged on the validation split; the test split is never "
                                   "read. The first trials of a new study are the methods' defaults. The study lives "
                                   "in --storage, so several processes can share it; running the command again "
                                   "continues it. Writes OUT/trials/, trials.csv, search.md, PNG plots and OUT/best/.")
    s.add_argument("--dataset", default="digits", help="dataset name or a .csv / .npz file (default: digits)")
    s.add_argument("--methods", default=None, help="comma-separated methods to choose among (default: edge, random, "
                                                   "zero, net2net, gradmax, firefly, swe)")
    s.add_argument("--trials", type=positive_int, required=True, metavar="N",
                   help="trials this process finishes (complete or pruned)")
    s.add_argument("--storage", metavar="URL", help="Optuna storage: an RDB URL, an SQLite .db file or a journal "
                                                    ".log file (default: OUT/study.db)")
    s.add_argument("--study", metavar="NAME", help="study name (default: <dataset>-<methods>-seed<seed>)")
    s.add_argument("--jobs", type=positive_int, default=1, metavar="J", help="worker processes (default: 1)")
    s.add_argument("--threads", type=positive_int, metavar="N", help="torch threads per worker (default: 1 for "
                                                                     "digits and tables, else torch's own, or the "
                                                                     "cores shared out among --jobs)")
    s.add_argument("--timeout", type=positive_float, metavar="S", help="start no trial after S seconds (default: none)")
    s.add_argument("--out", help="folder of the search, new or this search's (default: runs/search-<study>)")
    s.add_argument("--seed", type=int, default=0, help="seed of the runs and the sampler (default: 0)")
    s.add_argument("--repeats", type=positive_int, metavar="R", help="runs per trial, seeds SEED..SEED+R-1, judged by "
                                                                      "their mean (default: 3 when the validation "
                                                                      "split is under 1,000 examples, else 1)")
    s.add_argument("--epochs", type=positive_int, metavar="N", help=f"epochs of every trial (default: {ROW})")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="fix a setting in every trial, not searched (repeatable)")
    s.add_argument("--target", help="target column of a CSV file")
    s.add_argument("--val-fraction", type=fraction, default=0.2, metavar="F", help="validation fraction (default: 0.2)")
    s.add_argument("--data-dir", help="folder holding the dataset (default: $SELFEXPAND_DATA)")
    s.add_argument("--no-prune", action="store_true", help="run every trial to its end (default: prune)")
    s.add_argument("--quiet", action="store_true", help="no line per trial")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand (no torch imported)."""
    from ._version import __version__

    p = _Parser(prog="selfexpand", description="Self-expanding neural networks. With no command: train.",
                formatter_class=_Formatter,
                epilog="`selfexpand COMMAND --help` describes one command; `selfexpand methods` lists the methods.")
    p.add_argument("--version", action="version", version=f"selfexpand {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    _add_train(sub)
    _add_runs(sub)
    _add_sweep(sub)
    _add_bench(sub)
    _add_search(sub)
    return p

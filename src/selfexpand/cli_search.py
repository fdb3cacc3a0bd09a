"""``selfexpand search``: :func:`selfexpand.search.run_search` with a line per finished trial, and at
the end the best trial and how to train it again. Optuna (and torch) are imported when the command
runs, so ``selfexpand --help`` starts without them; without the ``optuna`` extra the command says
how to install it (exit status 2).
"""

from __future__ import annotations

import math
import shlex
import sys

from .cli_commands import _small_dataset, check_out, set_threads
from .cli_parser import UsageError, parse_sets

__all__ = ["search", "trial_line"]


def _value(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


def trial_line(info: dict, metric: str) -> str:
    """One finished trial: number, method, state, value (or why not), seconds, the study's best so far."""
    state = info["state"]
    if state == "COMPLETE":
        what = f"val {metric} {_value(info['value'])}" + (" (defaults)" if info.get("default") else "")
    elif state == "PRUNED":
        seed = f" of seed {info['pruned_seed']}" if info.get("pruned_seed") is not None else ""
        what = f"pruned after epoch {info['pruned_at']}{seed}" if info.get("pruned_at") else \
            f"stopped: {info.get('error')}"
    else:
        what = f"failed: {info.get('error') or 'no value'}"
    seconds = info.get("seconds")
    best = info.get("best")
    tail = "" if best is None else f"  best {_value(best['value'])} (trial {best['number']}, {best['method']})"
    took = f"  {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
    return f"trial {info['number']:>4}  {info['method'] or '?':<10} {state:<8}  {what[:160]}{took}{tail}"


def _options(args, argv):
    from .search import DEFAULT_METHODS, SearchOptions

    check_out(args.out)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods is not None \
        else list(DEFAULT_METHODS)
    if args.methods is not None and not methods:
        raise UsageError("--methods must name at least one method")
    small = _small_dataset(args.dataset)  # digits and tables: one thread is fastest, in each worker too
    return SearchOptions(dataset=args.dataset, methods=methods, trials=args.trials, out=args.out,
                         storage=args.storage, study=args.study, jobs=args.jobs,
                         threads=args.threads or (1 if small else None),
                         timeout=args.timeout, seed=args.seed, repeats=args.repeats, epochs=args.epochs,
                         settings=parse_sets(args.set),
                         prune=not args.no_prune, data_dir=args.data_dir, target=args.target,
                         val_fraction=args.val_fraction, command=["selfexpand", *argv])


def search(args, argv) -> int:
    """``selfexpand search``: run this process's trials, print a line per trial and the best at the end."""
    try:
        import optuna

        from .search import run_search
    except ImportError as exc:
        raise UsageError(f"selfexpand search needs Optuna: pip install 'selfexpand[optuna]' ({exc})") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a line per trial is printed here instead
    options = _options(args, argv)
    if options.jobs == 1:
        set_threads(args, small=_small_dataset(options.dataset))
    metric = {}

    def started(info: dict) -> None:
        metric["name"] = info["metric"]
        if not args.quiet:
            how = "new study" if info["created"] else f"continuing, {info['trials_before']} trials finished before"
            print(f"study {info['study']} ({how}) in {info['storage']}; this process runs {options.trials} "
                  f"trial{'s' if options.trials != 1 else ''}", flush=True)

    def finished(info: dict) -> None:
        if not args.quiet:
            print(trial_line(info, metric.get("name", "metric")), flush=True)

    try:
        result = run_search(options, on_start=started, on_trial=finished)
    except KeyboardInterrupt:
        print(f"selfexpand: interrupted; the finished trials are kept in the study: run the same command again to "
              f"continue it ({shlex.join(['selfexpand', *argv])})", file=sys.stderr)
        return 130
    print(f"\n{result.finished} trials finished here ({result.failed} failed); the study has {result.total}")
    best = result.best
    if best is None:
        print("no trial is complete yet")
    else:
        top = best.get("top") or best
        if top["number"] != best["number"]:
            print(f"best on validation: trial {top['number']}, {top['method']}, {_value(top['value'])}: not better "
                  f"than the defaults by more than one standard error ({best['margin']:.4f}), so the defaults are kept")
        print(f"the pick: trial {best['number']}, {best['method']}{' (defaults)' if best.get('default') else ''}, "
              f"validation {result.metric} {_value(best['value'])}")
        where = best.get("copy") or best["run_dir"]
        elsewhere = "" if best.get("copy") else f" (on {best.get('host') or 'another machine'})"
        print(f"train it again and test it: selfexpand train --config {shlex.quote(f'{where}/config.yaml')}{elsewhere}")
    print(f"search directory: {result.out} (search.md, trials.csv, plots)")
    return 0

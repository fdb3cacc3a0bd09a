"""``selfexpand sweep`` and ``selfexpand bench``: many runs into one new folder, a progress bar over
them, the results table printed at the end."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .cli_commands import check_out, set_threads
from .cli_parser import UsageError, parse_sets

__all__ = ["sweep", "bench", "data_options", "resume_command"]

DATA_OPTIONS = ("target", "test_file", "task", "val_fraction")


def data_options(args) -> dict:
    """``--target``, ``--test-file``, ``--task``, ``--val-fraction``: only those given."""
    return {key: getattr(args, key) for key in DATA_OPTIONS if getattr(args, key, None) is not None}


def _new_folder(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out must be a new or empty folder (nothing is overwritten), got {str(out)!r}")


class _Bar:
    """A tqdm bar on stderr made at the first report (none when quiet)."""

    def __init__(self, quiet: bool, **kwargs):
        self.quiet, self.kwargs, self.bar = quiet, kwargs, None

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, dynamic_ncols=True, file=sys.stderr, **self.kwargs)
        if self.bar.total != total:  # the bench's front jobs are known once the methods have run
            self.bar.total = total
            self.bar.refresh()
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def sweep(args, argv) -> int:
    """``selfexpand sweep``: ``selfexpand.sweep.run_sweep`` into a new folder; prints ``results.md``."""
    import torch

    from .sweep import parse_grid, run_sweep, write_sweep
    from .sweep.report import summary_markdown

    check_out(args.out)
    settings = parse_sets(args.set)
    grid = parse_grid(args.grid, args.method)
    out = Path(args.out) if args.out else Path("runs") / (
        f"sweep-{args.dataset}-{args.method}-{time.strftime('%Y%m%d-%H%M%S')}")
    _new_folder(out)
    set_threads(args, small=True)
    bar = _Bar(args.quiet, unit="step")
    try:
        result = run_sweep(args.method, args.dataset, grid, args.seeds, settings=settings, epochs=args.epochs,
                           dtype=torch.float64 if args.float64 else torch.float32,
                           control_input=args.control_input, progress=None if args.quiet else bar,
                           data_options=data_options(args) or None)
    finally:
        bar.close()
    write_sweep(result, out)
    print(summary_markdown(result), end="")
    print(f"\nsweep directory: {out}")
    return 0


def resume_command(argv: list[str], out) -> str:
    """The ``selfexpand bench`` command line ``argv`` with ``--resume --out OUT`` (any ``--out`` or
    ``--resume`` it had replaced), quoted for a POSIX shell."""
    import shlex

    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item == "--out":
            skip = True
            continue
        if item.startswith("--out=") or item == "--resume":
            continue
        kept.append(item)
    if not kept or kept[0] != "bench":
        kept.insert(0, "bench")
    return shlex.join(["selfexpand", *kept, "--resume", "--out", str(out)])


def bench(args, argv) -> int:
    """``selfexpand bench``: :func:`selfexpand.bench.run_bench` into a new folder (``--resume``: the
    folder of an interrupted bench); exit 1 if a run failed."""
    from .bench import run_bench, write_bench

    check_out(args.out)
    if args.resume and args.out is None:
        raise UsageError("--resume needs --out, the folder of the bench to continue")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    out = Path(args.out) if args.out else Path("runs") / f"bench-{Path(args.dataset).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not args.resume:
        _new_folder(out)
    elif not out.is_dir():
        raise UsageError(f"--resume continues the bench in --out, but {str(out)!r} is not a folder")
    bar = _Bar(args.quiet, unit="job", desc="bench")
    bar(0, len(methods) * args.seeds)
    try:
        rows = run_bench(args.dataset, methods, args.seeds, out, epochs=args.epochs, jobs=args.jobs,
                         data_dir=args.data_dir, progress=bar, settings=parse_sets(args.set),
                         front=not args.no_front, data_options=data_options(args) or None, resume=args.resume)
    except KeyboardInterrupt as exc:  # main prints how to continue
        exc.bench_resume = resume_command(argv, out)
        raise
    finally:
        bar.close()
    write_bench(rows, out, command="selfexpand " + " ".join(argv), jobs=args.jobs)
    print((out / "results.md").read_text(), end="")
    print(f"\nbench directory: {out}")
    failed = [r for r in rows if r.get("error")]
    if failed:
        print(f"selfexpand: error: {len(failed)} of {len(rows)} runs failed (see results.md)", file=sys.stderr)
    return 1 if failed else 0

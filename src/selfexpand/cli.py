"""The ``selfexpand`` command line: parses, validates, calls the library, prints.

The only modules that talk to the terminal are this one and its ``cli_*`` helpers (the parser in
:mod:`selfexpand.cli_parser`, the commands in :mod:`selfexpand.cli_commands` and
:mod:`selfexpand.cli_batch`, what they print in :mod:`selfexpand.cli_output`). None of them imports
torch at import time: ``selfexpand --help`` and the method listing start without it.

Exit status: 0 done; 1 a bench with a failed run; 2 a bad argument or setting, a missing or damaged
file, out of memory, and every other ``SelfExpandError`` (its ``exit_code``); 3 training stopped
(``TrainingStopped``: a non-finite loss, the last good checkpoint kept); 130 interrupted (Ctrl-C);
141 the reader of stdout left. Each error is one ``selfexpand: error: ...`` line on standard error;
an error the library does not expect (a defect) still shows its traceback.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

from . import cli_batch, cli_commands, cli_search
from .cli_parser import UsageError, build_parser
from .cli_parser import fraction as _fraction  # noqa: F401  (kept importable under their old names)
from .cli_parser import positive_float as _positive_float  # noqa: F401
from .cli_parser import positive_int as _positive_int  # noqa: F401

__all__ = ["main"]

_parser = build_parser

COMMANDS = {"train": cli_commands.train, "resume": cli_commands.resume, "inspect": cli_commands.inspect_run,
            "predict": cli_commands.predict, "methods": cli_commands.methods, "sweep": cli_batch.sweep,
            "bench": cli_batch.bench, "search": cli_search.search}

OUT_OF_MEMORY_HINT = ("make the run smaller: a smaller `hidden` (--set hidden=[...]), a smaller --batch-size, "
                      "or a --max-params bound on growth")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    from .errors import SelfExpandError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            args = build_parser().parse_args(argv)
            if args.command is None:
                args = build_parser().parse_args(["train", *argv])
        except SystemExit as exc:  # --help, --version: argparse printed them; return, do not exit
            return exc.code if isinstance(exc.code, int) else 0
        _log_to_stderr()
        return COMMANDS[args.command](args, argv)
    except UsageError as exc:
        return _error(str(exc), 2)
    except BrokenPipeError:  # `selfexpand predict ... | head`: the reader left; not an error of ours
        _silence_stdout()
        return 141
    except SelfExpandError as exc:
        status = _error(_error_text(exc), exc.exit_code)
        _stopped_run_warnings(exc)
        return status
    except OSError as exc:
        return _error(str(exc), 2)
    except KeyboardInterrupt as exc:
        print(_interrupted_text(exc), file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as exc:
        if not out_of_memory(exc):
            raise  # a defect: its traceback
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        return _error(f"out of memory ({first[:200]}); {OUT_OF_MEMORY_HINT}", 2)


def _log_to_stderr() -> None:
    """``logging.basicConfig`` at WARNING, leaving out a run's warnings (``run_warning`` records),
    which are printed after its table. Nothing when the root logger has handlers already."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(lambda record: not getattr(record, "run_warning", False))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def _error(text: str, status: int) -> int:
    print(f"selfexpand: error: {' '.join(text.splitlines())}", file=sys.stderr)
    return status


def _error_text(exc) -> str:
    """The error's message; a stopped run's directory and how to continue it, if the message lacks them."""
    from .errors import TrainingStopped

    text = str(exc)
    run_dir = getattr(exc, "run_dir", None)
    if isinstance(exc, TrainingStopped) and run_dir is not None and "selfexpand resume" not in text:
        text += (f"; the last good checkpoint is kept: continue with "
                 f"`selfexpand resume {shlex.quote(str(run_dir))} --lr <smaller>`")
    return text


def _stopped_run_warnings(exc) -> None:
    """A stopped run's warnings (its ``summary.json``), which its log left to the table it never printed."""
    import json

    from .cli_output import summary_warnings
    from .errors import TrainingStopped

    if not isinstance(exc, TrainingStopped) or exc.run_dir is None:
        return
    try:
        summary = json.loads((Path(exc.run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return
    for line in summary_warnings(summary) if isinstance(summary, dict) else ():
        print(line, file=sys.stderr)


def _interrupted_text(exc: KeyboardInterrupt) -> str:
    """What Ctrl-C leaves and how to continue: the run's directory, or the bench's command."""
    bench = getattr(exc, "bench_resume", None)
    if bench:
        return f"selfexpand: interrupted; continue the bench with `{bench}`"
    run_dir = getattr(exc, "run_dir", None)
    if run_dir is not None:
        return f"selfexpand: interrupted; resume with `selfexpand resume {shlex.quote(str(run_dir))}`"
    return "selfexpand: interrupted; resume with `selfexpand resume RUN_DIR`"


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says memory ran out: ``MemoryError``, ``torch.OutOfMemoryError`` (CUDA), or a
    ``RuntimeError`` of an allocator that could not allocate (torch's CPU allocator raises those)."""
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom is not None and isinstance(exc, oom):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        words in text for words in ("out of memory", "can't allocate memory", "cannot allocate memory",
                                    "could not allocate", "failed to allocate"))


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (captured output)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

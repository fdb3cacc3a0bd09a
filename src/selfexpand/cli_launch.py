"""``--nproc N``: the command run as ``N`` data-parallel worker processes on this machine.

The command line starts ``torch.distributed.run`` (torchrun) in this process with ``--standalone
--nproc-per-node N -m selfexpand ARGV``; each worker runs the same ``selfexpand`` command (rank 0
writes the run directory and prints, the others are silent; ``selfexpand.rungroup``). If one worker
fails or is killed, torchrun stops the others and this process says which rank stopped and how.
"""

from __future__ import annotations

import os
import sys

from .train.distributed import environment_size

__all__ = ["launch", "worker_rank", "environment_size"]


def worker_rank() -> int:
    """``RANK`` of a torchrun worker (0 outside one)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``selfexpand ARGV`` as ``nproc`` local workers; the exit status (0 when every worker ended well)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "--module", "selfexpand"])
    args.training_script_args = list(argv)  # set here: torchrun's parser would read selfexpand's options
    try:
        run(args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        if failure.exitcode == 2:  # a usage or configuration error, refused before any work
            print(f"selfexpand: error: rank {rank} of {nproc} refused the command (its error is above); nothing "
                  "was trained", file=sys.stderr)
            return 2
        how = f"was killed by {failure.signal_name()}" if failure.exitcode < 0 else \
            f"exited with status {failure.exitcode}"
        print(f"selfexpand: error: rank {rank} of {nproc} {how}; torchrun stopped the other ranks. A run's last "
              f"checkpoint is kept: `selfexpand resume RUN_DIR` continues it on {nproc} processes", file=sys.stderr)
        return failure.exitcode if failure.exitcode > 0 else 1
    return 0

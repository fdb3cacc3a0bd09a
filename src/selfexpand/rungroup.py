"""A run on several data-parallel ranks (``selfexpand train --nproc N``, ``torchrun -m selfexpand train``).

Every rank runs the same run: the same configuration, data, start network and generator. Rank 0
writes the run directory (holding its lock) exactly as a single process does; the other ranks write
nothing: they train alongside (``train.distributed``) with ``runwriter.config_trainer``, no callbacks. ``nproc`` is part
of the run's identity: a resume needs as many ranks.
"""

from __future__ import annotations

import torch

from .errors import ConfigError
from .runconfig import RunConfig
from .train.distributed import DataParallel, environment_size, from_environment

__all__ = ["join_group", "check_parallel", "leave_group"]


def join_group(config: RunConfig, *, adopt: bool) -> DataParallel | None:
    """This process's data-parallel group for ``config`` (None for a single process).

    Args:
        adopt: a new run started by torchrun without ``nproc`` takes torchrun's ``WORLD_SIZE``;
            a resumed run must find its own ``nproc``.

    Raises:
        ConfigError: ``nproc`` and the number of processes differ (named both).
    """
    size = environment_size()
    if adopt and config.nproc == 1 and size > 1:
        config.nproc = size
    if config.nproc != size:
        where = "torchrun's WORLD_SIZE" if size > 1 else "a single process (no torchrun)"
        raise ConfigError(f"nproc={config.nproc} but this process is one of {size} ({where}); a run trains on "
                          f"the ranks it was made with: use `--nproc {config.nproc}`")
    return from_environment(torch.device(config.device))


def leave_group(parallel: DataParallel | None) -> None:
    """The end of a run on several ranks: wait until every rank is done (rank 0 writing its last
    files). The process group stays for the process's next run and is closed when it exits."""
    if parallel is not None:
        parallel.barrier()


def check_parallel(model, config: RunConfig) -> None:
    """Refuse, before any training, what cannot yet run on several ranks.

    Raises:
        ConfigError: ``nproc > 1`` with a batch-normalised network (its batch statistics would be each
            rank's own: no synchronised batch norm yet).
    """
    if config.nproc <= 1:
        return
    normed = [name for name, layer in model.layers.items() if getattr(layer, "norm", None) is not None]
    if normed:
        raise ConfigError(f"nproc={config.nproc}: layers {normed} use batch norm, whose statistics would be each "
                          "rank's own (synchronised batch norm is not implemented); train on one process")

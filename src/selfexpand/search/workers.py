"""``--jobs J``: J worker processes, each running its share of a search's trials.

The workers are started with ``spawn`` (a fresh interpreter: no torch state or threads inherited
from the parent), load the data and join the study the parent created, and send a small dict per
finished trial back through a queue; the parent reports them (``on_trial``) and waits for all. A
worker's torch threads: ``--threads``, else the machine's cores shared out. Ctrl-C reaches the workers
too (one process group): each marks its running trial FAIL (Optuna does) and ends; the parent waits
for them, then stops any that did not.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue as queue_module

from ..errors import SelfExpandError
from .options import SearchOptions

__all__ = ["run_workers", "worker_shares"]

log = logging.getLogger("selfexpand.search")


def worker_shares(trials: int, jobs: int) -> list[int]:
    """How many trials each worker runs: ``trials`` shared as evenly as can be, no worker without one."""
    jobs = min(jobs, trials)
    return [trials // jobs + (1 if i < trials % jobs else 0) for i in range(jobs)]


def _worker(options: SearchOptions, index: int, share: int, seed: int, threads: int, verbosity: int,
            deadline: float | None, messages) -> None:
    try:
        import optuna
        import torch

        from .loop import join_study, run_trials

        torch.set_num_threads(threads)
        optuna.logging.set_verbosity(verbosity)
        study, objective = join_study(options, seed)
        finished, failed = run_trials(study, objective, share, deadline, lambda info: messages.put(("trial", info)))
        messages.put(("done", index, finished, failed))
    except KeyboardInterrupt:
        messages.put(("stopped", index, 0, 0))
    except BaseException as exc:  # reported to the parent, which raises it
        messages.put(("error", index, f"worker {index}: {' '.join(str(exc).split()) or type(exc).__name__}"))


def run_workers(options: SearchOptions, deadline: float | None, on_trial=None) -> tuple[int, int]:
    """Run ``options.trials`` in ``options.jobs`` worker processes. Returns ``(finished, failed)``.

    Raises:
        SelfExpandError: a worker failed (its message), or died without a word (its exit code).
        KeyboardInterrupt: a worker was interrupted.
    """
    import optuna

    shares = worker_shares(options.trials, options.jobs)
    threads = options.threads or max(1, (os.cpu_count() or 1) // len(shares))
    base = options.seed + 1  # a worker joins the study: its process id is added (loop.open_study)
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    processes = {i: context.Process(target=_worker, args=(options, i, share, base + i, threads,
                                                          optuna.logging.get_verbosity(), deadline, messages),
                                    daemon=True)
                 for i, share in enumerate(shares)}
    for process in processes.values():
        process.start()
    finished = failed = 0
    errors, interrupted, running = [], False, set(processes)
    try:
        while running:
            try:
                message = messages.get(timeout=1.0)
            except queue_module.Empty:
                for i in [i for i in running if processes[i].exitcode is not None]:
                    running.discard(i)
                    errors.append(f"worker {i} ended without a word (exit code {processes[i].exitcode})")
                continue
            kind, *rest = message
            if kind == "trial":
                if on_trial is not None:
                    on_trial(rest[0])
                continue
            running.discard(rest[0])
            if kind == "error":
                errors.append(rest[1])
            else:
                finished, failed = finished + rest[1], failed + rest[2]
                interrupted = interrupted or kind == "stopped"
    finally:
        for process in processes.values():
            process.join(timeout=30)
            if process.is_alive():
                log.warning("worker %s did not end; stopping it", process.pid)
                process.terminate()
                process.join(timeout=5)
    if interrupted:
        raise KeyboardInterrupt
    if errors:
        raise SelfExpandError("; ".join(errors))
    return finished, failed

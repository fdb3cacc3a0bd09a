"""Running a search: set up (or join) the study, run this process's trials, write the report.

``run_search(options)`` loads the data once (without its test split), works out each method's
space and defaults, creates or joins the study (:mod:`selfexpand.search.storage`), then runs
``options.trials`` trials (:mod:`selfexpand.search.loop`). ``--jobs J`` starts J worker processes
(:mod:`selfexpand.search.workers`), each with its share of the trials, its own torch threads and its
own sampler seed; they share the study through its storage exactly as separate ``selfexpand search``
processes do. Processes, not Optuna's ``n_jobs`` threads: torch's intra-op threads of several trials
in one process contend for the same cores and the GIL, while a process per trial with one thread each
uses every core.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .loop import DONE, open_study, prepare, run_trials
from .options import SearchOptions
from .report import write_report
from .trial import Objective
from .workers import run_workers

__all__ = ["run_search", "SearchResult"]


@dataclass
class SearchResult:
    """What a search process did: the study, how many trials it finished and failed, the trial it picks
    from the whole study (``report.write_report``'s; None when none is complete) and the report's folder."""

    study: str
    storage: str
    out: Path
    metric: str
    created: bool
    finished: int
    failed: int
    total: int
    best: dict | None


def run_search(options: SearchOptions, *, on_start=None, on_trial=None) -> SearchResult:
    """Run this process's share of the study ``options`` describes, then write the report.

    Args:
        on_start: called once with ``{"study", "storage", "out", "metric", "created", "trials_before"}``.
        on_trial: called after each trial with its :func:`~selfexpand.search.report.trial_info`.

    Raises:
        ConfigError / DataError: bad options, a dataset that cannot be read, a storage that cannot be
            opened, a study made with other options; SelfExpandError: trials failing in a row.
    """
    options.check()
    deadline = None if options.timeout is None else time.time() + options.timeout
    data, metric, direction, spaces, defaults = prepare(options)
    spec, study, created = open_study(options, direction, defaults, options.seed)
    if on_start is not None:
        on_start({"study": options.study_name, "storage": spec.text, "out": str(options.out_dir), "metric": metric,
                  "created": created, "trials_before": len(study.get_trials(deepcopy=False, states=DONE))})
    if options.jobs == 1:
        finished, failed = run_trials(study, Objective(options, data, spaces), options.trials, deadline, on_trial)
    else:
        del data  # each worker loads its own
        finished, failed = run_workers(options, deadline, on_trial)
    best = write_report(study, options, spec.text, metric)
    total = len(study.get_trials(deepcopy=False, states=DONE))
    return SearchResult(options.study_name, spec.text, options.out_dir, metric, created, finished, failed, total, best)

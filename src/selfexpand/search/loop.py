"""The steps of a search process, shared by ``run_search`` and its worker processes: load the data and
work out the spaces (:func:`prepare`), claim the output folder and create or join the study
(:func:`open_study`), run trials until enough are finished (:func:`run_trials`).

The output folder is claimed with ``search.json`` (the study and storage it belongs to): a folder
that holds something else, or another study's search, is refused. A trial counts once it is
complete or pruned; a failed one is reported and the search goes on, unless ``MAX_FAILED_IN_ROW``
fail in a row (something is wrong with every trial).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import optuna

from ..errors import ConfigError, SelfExpandError
from ..train.metrics import HIGHER_IS_BETTER, task_metric
from .options import SMALL_REPEATS, SMALL_VALIDATION, SearchOptions
from .pruner import make_pruner
from .report import trial_info
from .space import default_params, method_space
from .storage import OUT_LOCK, STORAGE_LOCK_SUFFIX, create_or_join, file_lock, storage_spec
from .trial import Objective, search_data

__all__ = ["prepare", "open_study", "run_trials", "join_study", "make_sampler", "MAX_FAILED_IN_ROW", "MARKER",
           "DONE"]

MAX_FAILED_IN_ROW = 5
MARKER = "search.json"
DONE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def prepare(options: SearchOptions):
    """``(data, metric, direction, spaces, defaults)``: seed -> the data split with it, without its test
    split; the metric and whether to maximize or minimize it; each method's space and its defaults as
    trial parameters. ``options.repeats`` None is settled here, by the validation split's size."""
    first = search_data(options, options.seed)
    if options.repeats is None:
        options.repeats = SMALL_REPEATS if first.x_val.shape[0] < SMALL_VALIDATION else 1
    data = {options.seed: first}
    data.update({s: search_data(options, s) for s in range(options.seed + 1, options.seed + options.repeats)})
    metric = task_metric(first.task)
    direction = "maximize" if HIGHER_IS_BETTER[metric] else "minimize"
    dataset, fixed = str(options.dataset), options.method_settings
    spaces = {m: method_space(m, dataset, fixed, options.epochs) for m in options.methods}
    defaults = [default_params(m, dataset, spaces[m], fixed, options.epochs) for m in options.methods]
    return data, metric, direction, spaces, defaults


def make_sampler(options: SearchOptions, seed: int):
    """Optuna's TPE, multivariate over each method's group of settings; ``constant_liar`` keeps processes
    working at once from sampling alike; the first ``len(methods) + 5`` trials (the enqueued defaults
    among them) are sampled at random."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # multivariate / group are flagged experimental
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=len(options.methods) + 5, warn_independent_sampling=False)


def _claim_out(out: Path, name: str, storage: str) -> None:
    """``out`` made or checked: new, empty, or the folder of this study (``search.json`` says so).

    Raises:
        ConfigError: ``out`` holds something else, or another study's search.
    """
    out.mkdir(parents=True, exist_ok=True)
    marker = out / MARKER
    with file_lock(out / OUT_LOCK):
        if marker.is_file():
            stored = json.loads(marker.read_text())
            if stored != {"study": name, "storage": storage}:
                raise ConfigError(f"out {str(out)!r} holds the search of study {stored.get('study')!r} in "
                                  f"{stored.get('storage')}; give another --out for study {name!r} in {storage}")
            return
        if any(p.name not in (OUT_LOCK, "study.db", "study.db" + STORAGE_LOCK_SUFFIX) for p in out.iterdir()):
            raise ConfigError(f"out must be a new or empty folder, or the folder of this search (nothing is "
                              f"overwritten), got out={str(out)!r}")
        tmp = marker.with_name(f"{MARKER}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"study": name, "storage": storage}, indent=1) + "\n")
        tmp.replace(marker)


def open_study(options: SearchOptions, direction: str, defaults: list, seed: int):
    """``(storage spec, study, created)``. The sampler is seeded with ``seed`` in the process that creates
    the study; one that joins it adds its process id, so that processes sharing a study (each given the
    same ``--seed``) do not draw the same settings."""
    spec = storage_spec(options.storage, options.out_dir)
    _claim_out(options.out_dir, options.study_name, spec.text)
    study, created = create_or_join(spec, options.study_name, options.identity(), direction, defaults,
                                    make_sampler(options, seed), make_pruner(options.prune))
    if not created:
        study.sampler = make_sampler(options, seed + 1 + os.getpid())
    return spec, study, created


def run_trials(study, objective, count: int, deadline: float | None, on_trial=None) -> tuple[int, int]:
    """Run trials until ``count`` are complete or pruned, or the wall-clock ``deadline`` (``time.time()``)
    passes; ``on_trial(info)`` after each. Returns ``(finished, failed)``.

    Raises:
        SelfExpandError: ``MAX_FAILED_IN_ROW`` trials failed in a row.
    """
    finished = failed = in_row = 0
    while finished < count and (deadline is None or time.time() < deadline):
        ended: list = []
        study.optimize(objective, n_trials=1, callbacks=[lambda _study, trial, ended=ended: ended.append(trial)])
        trial = ended[-1]
        if trial.state in DONE:
            finished, in_row = finished + 1, 0
        else:
            failed, in_row = failed + 1, in_row + 1
        if on_trial is not None:
            on_trial(trial_info(study, trial))
        if in_row >= MAX_FAILED_IN_ROW:
            error = trial.user_attrs.get("error", "no value")
            raise SelfExpandError(f"{in_row} trials in a row failed; the last: {error} "
                                  f"(run {trial.user_attrs.get('run_dir')})")
    return finished, failed


def join_study(options: SearchOptions, seed: int):
    """``(study, objective)`` of a worker process: the data, the spaces and the study, loaded anew."""
    data, _metric, direction, spaces, defaults = prepare(options)
    _spec, study, _created = open_study(options, direction, defaults, seed)
    return study, Objective(options, data, spaces)

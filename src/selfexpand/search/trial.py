"""One trial of a search: a run per seed, trained on the training split, judged on the validation split.

The search's data is loaded once per process and seed (:func:`search_data`) and its test split
dropped at once, before anything reads it: every trial's run gets the data without it
(``train_run(data=...)``), so no trial can evaluate it, and the run's ``test_metric`` is None. The
trial's value is the validation metric of the run's final model (the model a run keeps, and that
``train --config`` would test), averaged over ``repeats`` seeds (``--seed``, ``--seed`` + 1, ...:
each its own split of training and validation data and its own start, so that a setting is not
chosen for one lucky validation split). The runs of trial ``N`` are ``OUT/trials/NNNN-METHOD/seedS/``.

:class:`TrialReporter` reports the validation metric of every epoch to Optuna; when the pruner says
so it stops the run (``ctx.request_stop``) and the trial ends PRUNED. A run stopped by a non-finite
loss ends PRUNED too (its curve is as bad as can be); any other error fails the trial, which is
logged and recorded (user attribute ``error``), and the search goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import socket
import time
from pathlib import Path

import optuna

from ..data import load_dataset
from ..errors import TrainingStopped
from ..presets import resolve_config
from ..runs import RunConfig, train_run
from ..train.callbacks import Callback
from .options import SearchOptions
from .space import METHOD_PARAM

__all__ = ["search_data", "without_test", "TrialReporter", "Objective", "trial_dir"]

log = logging.getLogger("selfexpand.search")


def without_test(data):
    """``data`` with an empty test split, made from the training split's first zero rows: the test
    tensors are not read, not even their shape."""
    return dataclasses.replace(data, x_test=data.x_train[:0], y_test=data.y_train[:0])


def search_data(options: SearchOptions, seed: int):
    """The search's dataset split with ``seed`` (as ``train --seed`` loads it), without its test split."""
    extra = {} if options.task is None else {"task": options.task}
    data = load_dataset(options.dataset, data_dir=options.data_dir, target=options.target, seed=seed,
                        val_fraction=options.val_fraction, options=options.data_settings, **extra)
    return without_test(data)


def trial_dir(out: Path, number: int, method: str) -> Path:
    """``OUT/trials/NNNN-method``, the folder of a trial's runs (``seedS/``, one per seed): one per trial
    number, which the storage gives out once."""
    return Path(out) / "trials" / f"{number:04d}-{method}"


class TrialReporter(Callback):
    """Reports each epoch's validation metric to the Optuna ``trial`` as step ``offset + epoch`` (a
    trial's later seeds come after its first one's epochs); stops the run when it is to be pruned
    (``pruned_at``: that epoch)."""

    def __init__(self, trial, prune: bool = True, offset: int = 0):
        self.trial, self.prune, self.offset, self.pruned_at = trial, prune, offset, None

    def on_epoch_end(self, ctx, record: dict, **kwargs) -> None:
        value = record.get("val_metric")
        if not isinstance(value, float) or not math.isfinite(value):
            return  # a non-finite loss: the trainer stops the run itself
        self.trial.report(value, self.offset + int(record["epoch"]))
        if self.prune and self.pruned_at is None and self.trial.should_prune():
            self.pruned_at = int(record["epoch"])
            ctx.request_stop(f"pruned by the search after epoch {self.pruned_at}")


class Objective:
    """The objective of a study: ``objective(trial)`` trains a run per seed and returns the mean of their
    final validation metrics (or raises ``optuna.TrialPruned``; an error returns NaN, which fails the
    trial). ``data``: seed -> the dataset split with it."""

    def __init__(self, options: SearchOptions, data: dict, spaces: dict[str, dict]):
        self.options, self.data, self.spaces = options, data, spaces
        self.out = options.out_dir

    def __call__(self, trial) -> float:
        start, method, folder = time.perf_counter(), None, None
        try:
            method = trial.suggest_categorical(METHOD_PARAM, list(self.options.methods))
            folder = trial_dir(self.out, trial.number, method)
            trial.set_user_attr("run_dir", str((folder / f"seed{self.options.seed}").resolve()))
            trial.set_user_attr("host", socket.gethostname())
            values = {key: space.suggest(trial, f"{method}.{key}") for key, space in self.spaces[method].items()}
            return self._runs(trial, method, values, folder)
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # a failed trial is recorded, and the search goes on
            text = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
            log.warning("trial %d (%s) failed: %s", trial.number, method, text)
            log.debug("trial %d failed", trial.number, exc_info=True)
            trial.set_user_attr("error", text)
            return float("nan")
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
            for run_dir in folder.glob("seed*") if folder is not None else ():
                shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)  # a trial is never resumed

    def _runs(self, trial, method: str, values: dict, folder: Path) -> float:
        options = self.options
        epochs = resolve_config(method, str(options.dataset), {**options.method_settings, **values,
                                **({} if options.epochs is None else {"epochs": options.epochs})})["epochs"]
        trial.set_user_attr("epochs", epochs)
        trial.set_user_attr("n_val", int(self.data[options.seed].x_val.shape[0]))
        found = []
        for r, seed in enumerate(range(options.seed, options.seed + options.repeats)):
            found.append(self._run(trial, method, values, folder / f"seed{seed}", seed, r * epochs))
            trial.set_user_attr("values", [round(v, 6) for v in found])
        return float(sum(found) / len(found))

    def _run(self, trial, method: str, values: dict, run_dir: Path, seed: int, offset: int) -> float:
        options = self.options
        config = RunConfig(method=method, dataset=str(options.dataset), target=options.target, task=options.task,
                           data_dir=options.data_dir, seed=seed, val_fraction=options.val_fraction,
                           epochs=options.epochs, out=str(run_dir), settings={**options.settings, **values})
        reporter = TrialReporter(trial, options.prune, offset)
        command = list(options.command or ["selfexpand", "search"]) + [f"(trial {trial.number}, seed {seed})"]
        try:
            _, summary = train_run(config, callbacks=[reporter], command=command, data=self.data[seed])
        except TrainingStopped as exc:
            trial.set_user_attr("stopped", " ".join(str(exc).split())[:300])
            raise optuna.TrialPruned(f"training stopped: {exc}") from None
        if seed == options.seed:
            trial.set_user_attr("params", summary.get("params_final"))
            trial.set_user_attr("epochs_run", summary.get("epochs"))
        if reporter.pruned_at is not None:
            trial.set_user_attr("pruned_at", reporter.pruned_at)
            trial.set_user_attr("pruned_seed", seed)
            raise optuna.TrialPruned(f"pruned after epoch {reporter.pruned_at} (seed {seed})")
        value = summary.get("val_metric")
        if value is None or not math.isfinite(value):
            raise optuna.TrialPruned("no finite validation metric")
        return float(value)

"""The search's pruner: a trial is judged against earlier trials of its own method, after a warm-up.

Methods differ in their curves (edge expansion grows on a plateau, SWE trains in rounds, the
baselines grow every epoch) and in their lengths, so comparing epoch 5 of one with epoch 5 of
another says little. :class:`MethodPruner` hands its inner pruner (Optuna's ``MedianPruner``:
stop a trial whose best validation metric so far is worse than the median of the finished trials
at the same epoch) a view of the study holding only the trials of the same method, and prunes
nothing before ``warmup`` of the trial's epochs (its user attribute ``epochs``) are done.
"""

from __future__ import annotations

import optuna

from .space import METHOD_PARAM

__all__ = ["MethodPruner", "make_pruner", "STARTUP_TRIALS", "WARMUP"]

#: finished trials of a method before its trials may be pruned
STARTUP_TRIALS = 2
#: the fraction of a trial's epochs before it may be pruned
WARMUP = 0.25


class _SameMethod:
    """The study seen through one method's trials (what the inner pruner reads)."""

    def __init__(self, study, method):
        self._study, self._method = study, method

    def get_trials(self, deepcopy: bool = True, states=None):
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states)
                if t.params.get(METHOD_PARAM) == self._method]

    @property
    def trials(self):
        return self.get_trials()

    def __getattr__(self, name):  # direction, directions, ...
        return getattr(self._study, name)


class MethodPruner(optuna.pruners.BasePruner):
    """``inner`` applied within the trial's method, after ``warmup`` of its epochs."""

    def __init__(self, inner: optuna.pruners.BasePruner | None = None, warmup: float = WARMUP):
        self.inner = inner if inner is not None else optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS)
        self.warmup = float(warmup)

    def prune(self, study, trial) -> bool:
        step = trial.last_step
        epochs = trial.user_attrs.get("epochs")
        if step is None or (isinstance(epochs, int) and step < self.warmup * epochs):
            return False
        return self.inner.prune(_SameMethod(study, trial.params.get(METHOD_PARAM)), trial)


def make_pruner(prune: bool) -> optuna.pruners.BasePruner:
    """The search's pruner (``prune`` False: Optuna's ``NopPruner``)."""
    return MethodPruner() if prune else optuna.pruners.NopPruner()

"""Which trial a search hands back: the best on validation, unless it is not clearly better than the
methods' defaults.

The trial with the best validation value is the winner of many noisy comparisons, so its value is
biased upward (the more trials, the more so), and the defaults were often chosen on validation data
already. The search therefore keeps the best default trial unless a trial beats it by more than one
standard error of the validation accuracy, ``sqrt(p (1 - p) / n)`` with ``p`` the default's accuracy
and ``n`` its validation examples over all its seeds (the spirit of the one-standard-error rule of
model selection). On digits (288 validation images a seed, 3 seeds) that is about 0.006: seed 0's
search found edge settings at 0.9734 against the edge defaults' 0.9722 on validation, which tested at
0.9722 / 0.9694 / 0.9639 on seeds 0-2 against the defaults' 0.9806 / 0.9750 / 0.9750. For a metric
that is not an accuracy (a regression's MSE) the best trial is the pick.
"""

from __future__ import annotations

import math

import optuna

__all__ = ["pick_trial", "standard_error"]


def standard_error(trial) -> float | None:
    """The standard error of ``trial``'s validation accuracy (None: not known, or not an accuracy)."""
    n_val, values = trial.user_attrs.get("n_val"), trial.user_attrs.get("values") or [trial.value]
    p = trial.value
    if not isinstance(n_val, int) or n_val < 1 or p is None or not 0 <= p <= 1:
        return None
    return math.sqrt(p * (1 - p) / (n_val * len(values)))


def pick_trial(study, metric: str) -> tuple[optuna.trial.FrozenTrial | None, optuna.trial.FrozenTrial | None,
                                            float | None]:
    """``(pick, best, margin)``: the trial the search hands back, the best on validation and the margin a
    trial had to beat the best default by (None: no rule applied)."""
    try:
        best = study.best_trial
    except ValueError:  # no complete trial
        return None, None, None
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    defaults = [t for t in done if t.user_attrs.get("default") and t.value is not None]
    if metric != "accuracy" or not defaults or best.user_attrs.get("default"):
        return best, best, None
    incumbent = max(defaults, key=lambda t: (t.value, -t.number))
    margin = standard_error(incumbent)
    if margin is None or best.value > incumbent.value + margin:
        return best, best, margin
    return incumbent, best, margin

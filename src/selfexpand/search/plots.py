"""Optuna's plots of a study as PNG: ``history.png`` (each trial's value and the best so far),
``curves.png`` (every trial's validation curve: where the pruned ones stopped) and, for each method
with enough complete trials, ``importance-METHOD.png`` (how much each of its settings mattered,
Optuna's fANOVA over that method's trials). A plot Optuna cannot make yet (too few trials) is left
out and logged, never an error."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import optuna

from .space import METHOD_PARAM

__all__ = ["write_plots", "MIN_TRIALS_FOR_IMPORTANCE"]

log = logging.getLogger("selfexpand.search")

MIN_TRIALS_FOR_IMPORTANCE = 3


def _save(make, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's matplotlib plots are flagged experimental
            axes = make()
        figure = getattr(axes, "figure", None) or axes.flat[0].figure
        figure.set_size_inches(8, 5)
        tmp = path.with_name(f"{path.stem}.tmp.png")
        figure.savefig(tmp, dpi=100, bbox_inches="tight")
        tmp.replace(path)
        return True
    except Exception as exc:  # too few trials, a single value: Optuna refuses in various ways
        log.info("%s not drawn: %s", path.name, " ".join(str(exc).split())[:200])
        return False
    finally:
        plt.close("all")


def _importance_params(study, method: str) -> list[str]:
    """The parameters of ``method``'s complete trials that took more than one value."""
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.params.get(METHOD_PARAM) == method]
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        return []
    names = set.intersection(*(set(t.params) for t in done)) - {METHOD_PARAM}
    return sorted(n for n in names if len({repr(t.params[n]) for t in done}) > 1)


def write_plots(study, out: Path, methods: list[str]) -> list[str]:
    """Draw the plots into ``out``; the paths of those drawn."""
    from optuna.visualization import matplotlib as plots

    drawn = []
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return drawn
    for name, make in (("history.png", lambda: plots.plot_optimization_history(study)),
                       ("curves.png", lambda: plots.plot_intermediate_values(study))):
        if _save(make, out / name):
            drawn.append(str(out / name))
    for method in methods:
        params = _importance_params(study, method)
        if not params:
            continue
        path = out / f"importance-{method}.png"
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        if _save(lambda e=evaluator, p=params: plots.plot_param_importances(study, evaluator=e, params=p), path):
            drawn.append(str(path))
    return drawn

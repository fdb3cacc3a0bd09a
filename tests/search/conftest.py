"""The search tests' kit: ``search_lib`` (the ``selfexpand.search`` package; skips without the optuna
extra, fails under ``CI=true`` where every extra is required), ``make_options`` (small searches on
digits: a few epochs; the tests run on one thread, ``tests/conftest.py``) and ``study_of`` (a study read
back from its SQLite file). Nothing here imports Optuna at collection time."""

from __future__ import annotations

import os

import pytest
from extras import missing_extra


@pytest.fixture(scope="session")
def search_lib():
    """``selfexpand.search``; skips without Optuna (fails under CI=true)."""
    try:
        import optuna

        import selfexpand.search as lib
    except ImportError as exc:
        missing_extra(f"selfexpand search needs the optuna extra (pip install -e '.[optuna]'): {exc}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return lib


@pytest.fixture
def make_options(search_lib):
    """``make_options(out, **options)``: a digits search of random and zero, 3 epochs a trial, 2 trials, one
    run per trial."""

    def make(out, **kwargs):
        values = {"dataset": "digits", "methods": ["random", "zero"], "epochs": 3, "trials": 2, "repeats": 1,
                  "out": str(out)}
        values.update(kwargs)
        return search_lib.SearchOptions(**values)

    return make


@pytest.fixture
def study_of(search_lib):
    """``study_of(out, name)``: the study ``name`` in ``out/study.db``, loaded with Optuna."""
    import optuna

    def load(out, name: str):
        return optuna.load_study(study_name=name, storage=f"sqlite:///{os.path.abspath(out)}/study.db")

    return load

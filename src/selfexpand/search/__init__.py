"""``selfexpand search``: Optuna picks a method and its settings, trial after trial.

Each trial trains one run on the training split and is judged on the validation split; the test
split is dropped when the data is loaded, before anything reads it. The spaces come from the
settings' declarations (:mod:`selfexpand.spaces`) and the presets; the first trials of a new study are
the methods' own defaults. The study lives in Optuna storage (SQLite in the output folder by
default), so several processes, on one machine or several, can work on it together.

Needs the ``optuna`` extra (``pip install 'selfexpand[optuna]'``): importing this package without
Optuna raises ``ImportError`` with that advice.
"""

from __future__ import annotations

try:
    import optuna  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"selfexpand search needs Optuna: pip install 'selfexpand[optuna]' ({exc})") from exc

from .options import DEFAULT_METHODS, SearchOptions
from .space import default_params, method_space
from .storage import storage_spec
from .study import SearchResult, run_search
from .trial import search_data, without_test

__all__ = ["run_search", "SearchOptions", "SearchResult", "DEFAULT_METHODS", "method_space", "default_params",
           "storage_spec", "search_data", "without_test"]

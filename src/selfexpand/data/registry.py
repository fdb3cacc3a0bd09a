"""The dataset registry, data-folder lookup, splitting, and ``load_dataset``.

A registered loader is called as ``loader_fn(data_dir)`` and returns
``(x_train_full, y_train_full, x_test | None, y_test | None, meta)``:

* ``x_*``: numpy arrays of *raw* features (as in the source files, e.g. uint8 pixels), first axis
  the examples. ``load_dataset`` applies ``preprocess_features`` to them, so a stored run
  reproduces the model input from raw data exactly.
* ``y_*``: class indices ``0..K-1`` (classification) or float targets ``(N,)`` / ``(N, k)``.
* ``meta``: ``task`` (required), ``preprocessing`` (JSON-able base dict, must hold
  ``input_shape``), optional ``class_labels``, ``class_names``, ``n_outputs``,
  ``standardize`` (per-feature mean/std from the training split) and ``standardize_target``
  (regression: every target column standardised with the training split's mean/std, stored as
  ``target_mean`` / ``target_std``; :func:`~selfexpand.data.base.decode_targets` maps outputs back).
  The user's tables set it; the generated tasks (synthetic, SENN's) keep their scales, as their papers.

When no test set is returned, a test fifth is split off once with ``random_state=0`` (stratified
for classification), whatever ``seed`` is; the validation split of the rest uses ``seed``. A loader
that makes its own validation set returns it as ``meta["validation"] = (x_val, y_val)``; then
``x_train_full`` is the training set as it is and ``seed`` / ``val_fraction`` do not split it.

**Dataset options.** A loader may declare options with defaults,
``register_dataset("spirals", fn, options={"arms": 3})``; ``load_dataset(name, options={"arms": 5})``
checks the names and types against the declared defaults and passes them as keyword arguments
(``selfexpand train --set arms=5``: a ``--set`` key that the dataset declares goes to the dataset).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..validators import Boolean, Integer, Number, integer_like, number, one_of, parse_text
from .base import TASKS, Dataset, preprocess_features

__all__ = [
    "register_dataset",
    "assemble_dataset",
    "dataset_names",
    "dataset_options",
    "load_dataset",
    "find_data_folder",
    "DATA_ENV",
    "TEST_FRACTION",
    "LOAD_OPTIONS",
    "check_load_options",
    "LIMIT_OPTION",
    "first_images",
]

logger = logging.getLogger(__name__)

DATA_ENV = "SELFEXPAND_DATA"
TEST_FRACTION = 0.2
TABLE_SUFFIXES = (".csv", ".npz")

LoaderFn = Callable[..., tuple]
_REGISTRY: dict[str, LoaderFn] = {}
_OPTIONS: dict[str, dict] = {}


def register_dataset(name: str, loader_fn: LoaderFn | None = None, *, options: dict | None = None):
    """Register ``loader_fn`` under ``name``; without ``loader_fn``, return a decorator.

    Args:
        name: The dataset name (case-insensitive) that ``load_dataset`` accepts.
        loader_fn: ``loader_fn(data_dir, **kw) -> (x_train_full, y_train_full, x_test, y_test, meta)``.
        options: the loader's keyword options and their defaults (ints, floats, strings, bools).

    Returns:
        ``loader_fn`` (so it can be used as ``@register_dataset("name")``).
    """
    key = str(name).strip().lower()
    if not key or key.endswith(TABLE_SUFFIXES):
        raise ConfigError(f"dataset name must be non-empty and not end in .csv/.npz, got {name!r}")

    def _register(fn: LoaderFn) -> LoaderFn:
        if not callable(fn):
            raise ConfigError(f"register_dataset({name!r}) needs a callable loader, got {fn!r}")
        _REGISTRY[key] = fn
        _OPTIONS[key] = dict(options or {})
        return fn

    return _register if loader_fn is None else _register(loader_fn)


#: the image datasets' option ``limit``: keep the first ``limit`` training and test images (0: all);
#: for quick runs and tests (``--set limit=256``)
LIMIT_OPTION = {"limit": 0}


def first_images(limit: int, x, y, xt, yt, meta: dict) -> tuple:
    """A loader's result with only the first ``limit`` training and test examples (``limit`` 0: all).

    Raises:
        ConfigError: a negative ``limit``.
    """
    if limit < 0:
        raise ConfigError(f"limit must be >= 0 (0: every image), got limit={limit}")
    if limit:
        x, y, xt, yt = x[:limit], y[:limit], xt[:limit], yt[:limit]
    return x, y, xt, yt, meta


def dataset_names() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(_REGISTRY)


def dataset_options(name: str) -> dict:
    """The options a registered dataset declares, with their defaults (empty for unknown names)."""
    return dict(_OPTIONS.get(str(name).strip().lower(), {}))


#: the rule an option's value must meet, by the type of its default (text is read as ``--set`` reads it)
_OPTION_RULES = {bool: Boolean(), int: Integer(), float: Number()}


def _check_options(key: str, options: dict | None) -> dict:
    """The dataset's declared options with ``options`` applied (checked and coerced to their types).

    Raises:
        ConfigError: an undeclared name, or a value not of the default's type.
    """
    declared = _OPTIONS.get(key, {})
    checked = {}
    for name, value in (options or {}).items():
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ConfigError(f"dataset {key!r} takes the options {known}, got {name}={value!r}")
        default = declared[name]
        rule = _OPTION_RULES.get(type(default))
        if rule is None:  # a string or another type: the value must be of that type
            if isinstance(value, str) and not isinstance(default, str):
                value = parse_text(value)
            if type(value) is not type(default):
                kind = "a string" if isinstance(default, str) else type(default).__name__
                raise ConfigError(f"dataset option {name} must be {kind} (like {default!r}), got {name}={value!r}")
            checked[name] = value
            continue
        try:
            checked[name] = rule.parse(name, value)
        except ConfigError:
            raise ConfigError(f"dataset option {name} must be {rule.describe()} (like {default!r}), "
                              f"got {name}={value!r}") from None
    return {**declared, **checked}


def find_data_folder(
    dataset: str, candidates: Sequence[tuple[str, Callable[[Path], bool]]], data_dir: str | os.PathLike | None
) -> tuple[str, Path]:
    """Find the folder holding a dataset's files.

    Args:
        dataset: Dataset name, for messages.
        candidates: ``(folder_name, holds_files)`` pairs in order of preference; ``holds_files(path)``
            tells whether a directory holds that folder's files.
        data_dir: Where to look first: ``data_dir/<folder>`` or ``data_dir`` itself. When ``None``,
            ``$SELFEXPAND_DATA/<folder>`` is used.

    Returns:
        The chosen ``(folder_name, path)``.

    Raises:
        DataError: No candidate folder exists; the message says what was looked for and where.
    """
    folders = " or ".join(repr(f) for f, _ in candidates)
    if data_dir is not None:
        roots, origin = [Path(data_dir).expanduser()], f"data_dir={str(data_dir)!r}"
    elif os.environ.get(DATA_ENV):
        roots, origin = [Path(os.environ[DATA_ENV]).expanduser()], f"{DATA_ENV}={os.environ[DATA_ENV]!r}"
    else:
        raise DataError(
            f"dataset {dataset!r} needs the folder {folders}; no data directory is set: "
            f"pass --data-dir (data_dir=...) or set {DATA_ENV} to the folder that contains it"
        )
    looked = []
    for folder, holds in candidates:
        for root in roots:
            for path in (root / folder, root):
                looked.append(str(path))
                if path.is_dir() and (path.name == folder or holds(path)):
                    logger.debug("dataset %s: using %s", dataset, path)
                    return folder, path
    raise DataError(
        f"dataset {dataset!r}: folder {folders} not found ({origin}; looked in {', '.join(looked)}); "
        f"set --data-dir or {DATA_ENV} to the folder that contains it"
    )


def _check_args(val_fraction: float, seed: int, task: str | None = None) -> None:
    number("val_fraction", val_fraction, 0, 1, low_open=True, high_open=True)
    integer_like("seed", seed, 0)
    if task is not None:
        one_of("task", task, TASKS)


def _split(idx: np.ndarray, labels: np.ndarray | None, frac: float, seed: int, what: str, name: str):
    """Split ``idx`` into (rest, part) with ``part`` about ``frac`` of it; stratified when possible."""
    from sklearn.model_selection import train_test_split  # slow to import; only needed here

    seed = integer_like("seed", seed, 0)  # scikit-learn's own words would name random_state

    strat = labels[idx] if labels is not None else None
    if strat is not None:
        try:
            a, b = train_test_split(idx, test_size=frac, random_state=seed, stratify=strat)
            return np.sort(a), np.sort(b)
        except ValueError as exc:
            logger.warning("dataset %s: %s split cannot be stratified (%s); splitting at random", name, what, exc)
    try:
        a, b = train_test_split(idx, test_size=frac, random_state=seed)
    except ValueError as exc:
        raise DataError(f"dataset {name!r}: too few examples ({len(idx)}) for a {what} split: {exc}") from None
    return np.sort(a), np.sort(b)


def _to_y(task: str, y: np.ndarray) -> torch.Tensor:
    if task == "classification":
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    y = np.asarray(y, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(y.reshape(len(y), -1)))


def assemble_dataset(name: str, parts: tuple, seed: int, val_fraction: float) -> Dataset:
    """Split, standardise and convert a loader's raw output into a ``Dataset``."""
    if not isinstance(parts, tuple) or len(parts) != 5 or not isinstance(parts[4], dict):
        raise ConfigError(f"loader for {name!r} must return (x, y, x_test, y_test, meta), got {type(parts)}")
    x_full, y_full, x_test, y_test, meta = parts
    task = meta.get("task")
    if task not in TASKS:
        raise ConfigError(f"loader for {name!r}: meta['task'] must be one of {list(TASKS)}, got {task!r}")
    x_full, y_full = np.asarray(x_full), np.asarray(y_full)
    if len(x_full) != len(y_full):
        raise DataError(f"dataset {name!r}: {len(x_full)} examples but {len(y_full)} targets")
    if (x_test is None) != (y_test is None):
        raise ConfigError(f"loader for {name!r} returned only one of x_test / y_test")
    if task == "classification":
        y_full = y_full.astype(np.int64)
    labels = y_full if task == "classification" else None
    idx = np.arange(len(x_full))
    if x_test is None:
        idx, test_idx = _split(idx, labels, TEST_FRACTION, 0, "test", name)
        x_test, y_test = x_full[test_idx], y_full[test_idx]
    elif len(x_test) != len(y_test):
        raise DataError(f"dataset {name!r}: test set has {len(x_test)} examples but {len(y_test)} targets")
    if meta.get("validation") is not None:  # the loader's own validation set
        x_val, y_val = (np.asarray(a) for a in meta["validation"])
        if task == "classification":
            y_val = y_val.astype(np.int64)
        x_train, y_train = x_full[idx], y_full[idx]
    else:
        train_idx, val_idx = _split(idx, labels, float(val_fraction), int(seed), "validation", name)
        x_train, y_train = x_full[train_idx], y_full[train_idx]
        x_val, y_val = x_full[val_idx], y_full[val_idx]

    prep = dict(meta.get("preprocessing") or {})
    prep["task"] = task
    prep.setdefault("input_shape", list(x_full.shape[1:]))
    prep["input_shape"] = [int(s) for s in prep["input_shape"]]
    for key in ("class_labels", "class_names"):
        if meta.get(key) is not None:
            prep[key] = list(meta[key])
    if meta.get("standardize"):
        flat = np.asarray(x_train, dtype=np.float64).reshape(len(x_train), -1)
        if prep.get("divide_by") is not None:
            flat = flat / float(prep["divide_by"])
        mean, std = flat.mean(axis=0), flat.std(axis=0)
        std[~(std > 0) | ~np.isfinite(std)] = 1.0
        prep["mean"], prep["std"] = mean.tolist(), std.tolist()
    if task == "classification":
        n_outputs = meta.get("n_outputs")
        if n_outputs is None:
            n_outputs = len(prep["class_labels"]) if "class_labels" in prep else int(y_full.max()) + 1
        for part, ys in (("train", y_full), ("test", np.asarray(y_test))):
            if len(ys) and (ys.min() < 0 or ys.max() >= n_outputs):
                raise DataError(f"dataset {name!r}: {part} class index out of range 0..{n_outputs - 1}")
    else:
        n_outputs = meta.get("n_outputs") or (1 if y_full.ndim == 1 else int(y_full.shape[1]))
    prep["n_outputs"] = int(n_outputs)
    if task == "regression" and meta.get("standardize_target"):
        y_train, y_val, y_test = _standardize_targets(prep, y_train, y_val, np.asarray(y_test))

    return Dataset(
        name=name,
        task=task,
        x_train=preprocess_features(prep, x_train),
        y_train=_to_y(task, y_train),
        x_val=preprocess_features(prep, x_val),
        y_val=_to_y(task, y_val),
        x_test=preprocess_features(prep, x_test),
        y_test=_to_y(task, np.asarray(y_test)),
        input_shape=tuple(prep["input_shape"]),
        n_outputs=int(n_outputs),
        preprocessing=prep,
    )


def _standardize_targets(prep: dict, *parts: np.ndarray) -> tuple:
    """Regression targets standardised per column with the first part's (the training split's) mean
    and standard deviation, which go into ``prep`` (``target_mean`` / ``target_std``); a constant
    column keeps std 1 (only centred)."""
    train = np.asarray(parts[0], dtype=np.float64)
    flat = train.reshape(len(train), -1)
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    std[~(std > 0) | ~np.isfinite(std)] = 1.0
    prep["target_mean"], prep["target_std"] = mean.tolist(), std.tolist()
    out = []
    for part in parts:
        part = np.asarray(part, dtype=np.float64)
        scaled = (part.reshape(len(part), -1) - mean) / std
        out.append(scaled.reshape(part.shape))
    return tuple(out)


#: the ``load_dataset`` arguments a bench or a sweep passes to every run (``data_options``)
LOAD_OPTIONS = ("target", "test_file", "task", "val_fraction")


def check_load_options(options: dict | None) -> dict:
    """``options`` (``data_options`` of a bench or sweep) checked: names from ``LOAD_OPTIONS``, a
    ``task`` of the two, a ``val_fraction`` in (0, 1); ``None`` values dropped.

    Raises:
        ConfigError: an unknown name or a bad value.
    """
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ConfigError(f"data_options must be a dict of {list(LOAD_OPTIONS)}, got {options!r}")
    unknown = sorted(k for k in options if k not in LOAD_OPTIONS)
    if unknown:
        raise ConfigError(f"data_options takes {list(LOAD_OPTIONS)}, got {unknown}")
    out = {k: v for k, v in options.items() if v is not None}
    if "task" in out:
        one_of("task", out["task"], TASKS)
    if "val_fraction" in out:
        out["val_fraction"] = number("val_fraction", out["val_fraction"], 0, 1, low_open=True, high_open=True)
    for key in ("target", "test_file"):
        if key in out:
            out[key] = str(out[key])
    return out


def _is_table_path(name_or_path: str | os.PathLike) -> bool:
    return str(name_or_path).lower().endswith(TABLE_SUFFIXES)


def _resolve_table_path(name_or_path: str | os.PathLike, data_dir: str | None) -> Path:
    path = Path(name_or_path).expanduser()
    if not path.exists() and data_dir is not None and not path.is_absolute():
        alt = Path(data_dir).expanduser() / path
        if alt.exists():
            return alt
    if not path.is_file():
        raise DataError(f"{path}: data file not found" if not path.exists() else f"{path}: not a file")
    return path


def load_dataset(
    name_or_path: str | os.PathLike,
    *,
    data_dir: str | None = None,
    target: str | None = None,
    test_file: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    options: dict | None = None,
    task: str | None = None,
) -> Dataset:
    """Load a registered dataset by name, or the user's own ``.csv`` / ``.npz`` file.

    Args:
        name_or_path: A name from ``dataset_names()`` or a path ending in ``.csv`` / ``.npz``.
        data_dir: Folder holding the dataset's folder (or the folder itself); default
            ``$SELFEXPAND_DATA``. Also tried as a base for a relative file path.
        target: The target column of a CSV file (required for CSV).
        test_file: A CSV/NPZ with the same columns to use as the test set (own files only).
        seed: Seed of the train/validation split (the test split never depends on it).
        val_fraction: Fraction of the non-test data held out for validation, in (0, 1).
        options: The dataset's own options (``dataset_options(name)``), e.g. ``{"arms": 5}``.
        task: ``"classification"`` or ``"regression"`` instead of what a ``.csv`` / ``.npz`` file's
            target suggests (``tabular``'s rule); a named dataset's task is fixed, and a ``task``
            contradicting it is refused.

    Returns:
        The ``Dataset``. A file's regression targets are standardised with the training split's
        statistics (``preprocessing["target_mean"]`` / ``["target_std"]``; ``decode_targets``).

    Raises:
        ConfigError: Unknown dataset name or a bad argument (a ``seed`` below 0, a ``task`` that is
            not one of the two, or one a named dataset contradicts; ``target`` for an ``.npz``).
        DataError: Missing, unreadable or malformed data; a target that ``task`` cannot take.
    """
    _check_args(val_fraction, seed, task)
    if _is_table_path(name_or_path):
        from .tabular import load_table

        path = _resolve_table_path(name_or_path, data_dir)
        if test_file is not None:
            test_file = _resolve_table_path(test_file, data_dir)
        if options:
            raise ConfigError(f"dataset options apply to named datasets only, not to a file, got {options!r}")
        parts = load_table(path, target=target, test_file=test_file, task=task)
        return assemble_dataset(path.stem, parts, seed, val_fraction)
    key = str(name_or_path).strip().lower()
    if key not in _REGISTRY:
        raise ConfigError(
            f"unknown dataset {str(name_or_path)!r}; known datasets: {', '.join(dataset_names())} "
            "(or a path to a .csv / .npz file)"
        )
    if target is not None or test_file is not None:
        raise ConfigError(
            f"target / test_file apply to .csv / .npz files only, not to dataset {key!r} "
            f"(got target={target!r}, test_file={test_file!r})"
        )
    parts = _REGISTRY[key](data_dir, **_check_options(key, options))
    own = parts[4].get("task") if isinstance(parts, tuple) and len(parts) == 5 and isinstance(parts[4], dict) else None
    if task is not None and own in TASKS and task != own:
        raise ConfigError(f"dataset {key!r} is a {own} task; task={task!r} (--task) contradicts it "
                          "(task chooses for .csv / .npz files only)")
    return assemble_dataset(key, parts, seed, val_fraction)


@register_dataset("digits")
def _load_digits(data_dir: str | None = None, **_kw) -> tuple:
    """scikit-learn's bundled 8x8 digits (1797 images, values 0..16); no files needed."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    meta = {
        "task": "classification",
        "class_labels": list(range(10)),
        "class_names": [str(i) for i in range(10)],
        "preprocessing": {"source": "digits", "input_shape": [64], "raw_shape": [8, 8], "divide_by": 16.0},
    }
    return x, y, None, None, meta

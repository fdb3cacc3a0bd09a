"""The user's own tables: CSV (with a header row and a target column) and NPZ (arrays ``X``, ``y``).

Feature columns must be numeric and complete; they are standardised with training-split statistics.

Target rule (CSV): a target with any non-numeric value is classification over its sorted distinct
strings. A target whose every value is an integer literal (``-3``, ``7``; not ``7.0``) is
classification over its sorted distinct integers when it has at most ``MAX_INT_CLASSES`` distinct
values and at most half as many distinct values as rows; otherwise it is regression. Any other
numeric target (decimals, exponents) is regression. NPZ: integer, bool or string ``y`` is
classification, float ``y`` regression (``y`` may be ``(N, k)`` float for k regression targets).

``task=`` (``--task``) overrides the rule: ``"classification"`` makes any target classes (integer
values, ``7.0`` included, or strings; a number with a fraction is refused with a ``DataError``
naming the column), ``"regression"`` makes a numeric target regression (text is refused).
Regression targets are standardised on the training split by ``registry.assemble_dataset``
(``meta["standardize_target"]``).
"""

from __future__ import annotations

import csv
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["load_table", "read_csv", "read_features_file", "MISSING_VALUES", "MAX_INT_CLASSES"]

MISSING_VALUES = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
MAX_INT_CLASSES = 50
_INT_RE = re.compile(r"^[+-]?\d+$")


def read_csv(path: Path) -> tuple[list[str], np.ndarray, list[int]]:
    """Read a CSV with a header row.

    Args:
        path: The file.

    Returns:
        ``(column names, cells (N, C) of stripped strings, line number of each row)``.

    Raises:
        DataError: Unreadable or empty file, no data rows, duplicate names, ragged rows.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows, lines = [], []
            for row in reader:
                if not row or all(not c.strip() for c in row) and len(row) <= 1:
                    continue  # blank line
                rows.append(row)
                lines.append(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV file: {exc}") from None
    if header is None:
        raise DataError(f"{path}: empty CSV file (no header row)")
    names = [h.strip() for h in header]
    if any(not n for n in names):
        raise DataError(f"{path}: empty column name in header {names}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{path}: duplicate column names {dup}")
    if not rows:
        raise DataError(f"{path}: CSV file has a header but no data rows")
    for row, line in zip(rows, lines):
        if len(row) != len(names):
            raise DataError(f"{path}: line {line} has {len(row)} fields, the header has {len(names)}")
    cells = np.char.strip(np.array(rows, dtype=str).reshape(len(rows), len(names)))
    return names, cells, lines


def _missing_mask(cells: np.ndarray) -> np.ndarray:
    return np.isin(np.char.lower(cells), list(MISSING_VALUES))


def _numeric(path: Path, name: str, cells: np.ndarray, lines: list[int], what: str = "feature") -> np.ndarray:
    """Convert one column of cells to float64, or raise DataError naming file, column and line."""
    missing = _missing_mask(cells)
    if missing.any():
        i = int(np.argmax(missing))
        raise DataError(f"{path}: missing value {str(cells[i])!r} in {what} column {name!r} (line {lines[i]})")
    try:
        values = cells.astype(np.float64)
    except ValueError:
        for i, c in enumerate(cells):
            try:
                float(c)
            except ValueError:
                raise DataError(
                    f"{path}: non-numeric value {str(c)!r} in {what} column {name!r} (line {lines[i]})"
                ) from None
        raise  # pragma: no cover - numpy and float() disagree
    if not np.isfinite(values).all():
        i = int(np.argmax(~np.isfinite(values)))
        raise DataError(f"{path}: non-finite value {str(cells[i])!r} in {what} column {name!r} (line {lines[i]})")
    return values


def _target_spec(path: Path, name: str, cells: np.ndarray, lines: list[int], task: str | None = None) -> dict:
    """Decide classification/regression for a CSV target column (see the module docstring);
    ``task`` given: that task, the labels as the column allows."""
    missing = _missing_mask(cells)
    if missing.any():
        i = int(np.argmax(missing))
        raise DataError(f"{path}: missing value {str(cells[i])!r} in target column {name!r} (line {lines[i]})")
    if task == "regression":
        return {"task": "regression"}
    if task == "classification":
        return _class_spec(path, name, cells, lines)
    if all(_INT_RE.match(c) for c in cells):
        distinct = sorted({int(c) for c in cells})
        if len(distinct) <= MAX_INT_CLASSES and 2 * len(distinct) <= len(cells):
            return {"task": "classification", "class_labels": distinct, "label_type": "int"}
        return {"task": "regression"}
    try:
        cells.astype(np.float64)
        return {"task": "regression"}
    except ValueError:
        return {"task": "classification", "class_labels": sorted(set(cells.tolist())), "label_type": "str"}


def _class_spec(path: Path, name: str, cells: np.ndarray, lines: list[int]) -> dict:
    """Classes of a target that ``task="classification"`` names: integer labels when every value is
    a whole number (``7`` or ``7.0``), text labels when some value is not a number.

    Raises:
        DataError: a numeric target with a fraction (``2.5``): that is not a class label.
    """
    try:
        values = cells.astype(np.float64)
    except ValueError:
        return {"task": "classification", "class_labels": sorted(set(cells.tolist())), "label_type": "str"}
    whole = np.isfinite(values) & (values == np.round(values))
    if not whole.all():
        i = int(np.argmax(~whole))
        raise DataError(f"{path}: target column {name!r} has the value {str(cells[i])!r} (line {lines[i]}), not a "
                        f"whole number or a label, so it cannot be classification (task='classification'); "
                        f"use task='regression' (--task regression)")
    return {"task": "classification", "class_labels": sorted({int(v) for v in values}), "label_type": "int"}


def _int_label(cell: str):
    """A cell as an integer label (``7`` or ``7.0``), or the cell itself when it is not one."""
    if _INT_RE.match(cell):
        return int(cell)
    try:
        value = float(cell)
    except ValueError:
        return cell
    return int(value) if np.isfinite(value) and value == round(value) else cell


def _encode_target(path: Path, name: str, cells: np.ndarray, lines: list[int], spec: dict) -> np.ndarray:
    """Turn target cells into class indices or float targets, following ``spec``."""
    if spec["task"] == "regression":
        return _numeric(path, name, cells, lines, what="target")
    missing = _missing_mask(cells)
    if missing.any():
        i = int(np.argmax(missing))
        raise DataError(f"{path}: missing value {str(cells[i])!r} in target column {name!r} (line {lines[i]})")
    index = {lab: i for i, lab in enumerate(spec["class_labels"])}
    out = np.empty(len(cells), dtype=np.int64)
    for i, c in enumerate(cells):
        key = _int_label(c) if spec["label_type"] == "int" else c
        if key not in index:
            raise DataError(
                f"{path}: unknown label {str(c)!r} in target column {name!r} (line {lines[i]}); "
                f"known labels: {spec['class_labels']}"
            )
        out[i] = index[key]
    return out


def _load_csv(path: Path, target: str | None, spec: dict | None = None, task: str | None = None) -> tuple:
    """Return ``(x, y, spec)``; with ``spec`` given (a test file), follow the training file's layout."""
    names, cells, lines = read_csv(path)
    if target is None:
        raise DataError(f"{path}: a CSV dataset needs a target column: pass target=COLUMN (--target); columns: {names}")
    if target not in names:
        raise DataError(f"{path}: unknown target column {target!r}; known columns: {names}")
    if spec is None:
        features = [n for n in names if n != target]
        if not features:
            raise DataError(f"{path}: no feature columns besides the target {target!r}")
        spec = _target_spec(path, target, cells[:, names.index(target)], lines, task)
        spec["feature_names"] = features
    else:
        missing = [n for n in spec["feature_names"] if n not in names]
        if missing:
            raise DataError(f"{path}: missing feature columns {missing}; the file has {names}")
    x = np.stack([_numeric(path, n, cells[:, names.index(n)], lines) for n in spec["feature_names"]], axis=1)
    y = _encode_target(path, target, cells[:, names.index(target)], lines, spec)
    return x, y, spec


_NOT_NPZ = "not a valid .npz file (a zip archive of .npy arrays, as numpy.savez writes)"


def _npz_arrays(path: Path, keys: tuple[str, ...]) -> dict:
    """The arrays ``keys`` of an ``.npz``, read without unpickling anything.

    Raises:
        DataError: not a zip of ``.npy`` arrays, an array of Python objects, a missing array. The
            message never suggests loading the file unsafely: a pickle can run code.
    """
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read NPZ file: {exc}") from None
    if not is_zip:
        raise DataError(f"{path}: {_NOT_NPZ}")
    found, arrays = [], {}
    try:
        with np.load(path, allow_pickle=False) as z:
            found = list(z.files)
            for k in keys:
                if k in z.files:
                    arrays[k] = z[k]
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            bad = next((k for k in keys if k in found and k not in arrays), None)
            where = f"array {bad!r}" if bad else "an array"
            raise DataError(f"{path}: {where} holds Python objects (dtype object), which are never read; "
                            "save numeric, bool or string arrays") from None
        raise DataError(f"{path}: {_NOT_NPZ}: {exc}") from None
    except Exception as exc:  # a damaged zip member, a bad .npy header ...
        raise DataError(f"{path}: {_NOT_NPZ}: {type(exc).__name__}: {exc}") from None
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing arrays {missing}; the file has {found}")
    return arrays


def _check_x(path: Path, x: np.ndarray, n_features: int | None = None) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: X must be numeric, got dtype {x.dtype}")
    if x.ndim != 2 or len(x) == 0:
        raise DataError(f"{path}: X must be 2-D (examples, features) with at least one row, got shape {x.shape}")
    if n_features is not None and x.shape[1] != n_features:
        raise DataError(f"{path}: X has {x.shape[1]} features, expected {n_features}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        r, c = np.argwhere(~np.isfinite(x))[0]
        raise DataError(f"{path}: X has a missing/non-finite value {float(x[r, c])!r} at row {r}, feature {c}")
    return x


def _npz_as_task(path: Path, y: np.ndarray, task: str) -> np.ndarray:
    """``y`` for the task that ``task=`` names (see the module docstring)."""
    kind = y.dtype.kind
    if task == "regression":
        if kind not in "biuf":
            raise DataError(f"{path}: y must be numeric for regression (task='regression'), got dtype {y.dtype}")
        return y.astype(np.float64)
    if y.ndim != 1:
        raise DataError(f"{path}: y must be 1-D for classification (task='classification'), got shape {y.shape}")
    if kind != "f":
        return y
    whole = np.isfinite(y) & (y == np.round(y))
    if not whole.all():
        i = int(np.argmax(~whole))
        raise DataError(f"{path}: y has the value {float(y[i])!r} (row {i}), not a whole number, so it cannot be "
                        "classification (task='classification'); use task='regression' (--task regression)")
    return y.astype(np.int64)


def _load_npz(path: Path, spec: dict | None = None, task: str | None = None) -> tuple:
    """Return ``(x, y, spec)`` from an NPZ with ``X`` and ``y``; ``spec`` and ``task`` as in ``_load_csv``."""
    arrays = _npz_arrays(path, ("X", "y"))
    x = _check_x(path, arrays["X"], None if spec is None else spec["n_features"])
    y = arrays["y"]
    if len(y) != len(x):
        raise DataError(f"{path}: X has {len(x)} rows but y has {len(y)}")
    task = task if spec is None else spec["task"]
    if task is not None:
        y = _npz_as_task(path, y, task)
    kind = y.dtype.kind
    if spec is None:
        if task is not None:
            spec = {"task": task, "n_features": x.shape[1]}
        elif kind == "f" or (kind in "biuUS" and y.ndim == 1):
            spec = {"task": "regression" if kind == "f" else "classification", "n_features": x.shape[1]}
        if spec is None or y.ndim not in (1, 2) or (kind != "f" and y.ndim != 1):
            raise DataError(f"{path}: y must be 1-D (labels or float targets) or 2-D float, got {y.dtype} {y.shape}")
        if spec["task"] == "classification":
            labels = np.unique(y)
            spec["class_labels"] = [v.decode() if isinstance(v, bytes) else v for v in labels.tolist()]
    if spec["task"] == "regression":
        if kind not in "biuf":
            raise DataError(f"{path}: y must be numeric for regression, got dtype {y.dtype}")
        y = y.astype(np.float64)
        if not np.isfinite(y).all():
            rows = np.argwhere(~np.isfinite(y.reshape(len(y), -1)))[:5, 0].tolist()
            raise DataError(f"{path}: y has missing/non-finite values at rows {rows}")
        return x, y, spec
    values = [v.decode() if isinstance(v, bytes) else v for v in y.reshape(-1).tolist()]
    index = {lab: i for i, lab in enumerate(spec["class_labels"])}
    unknown = [v for v in values if v not in index]
    if unknown:
        raise DataError(f"{path}: unknown label {unknown[0]!r} in y; known labels: {spec['class_labels']}")
    return x, np.array([index[v] for v in values], dtype=np.int64), spec


def load_table(path: Path, *, target: str | None = None, test_file: str | os.PathLike | None = None,
               task: str | None = None) -> tuple:
    """Registry-style loader for a user's ``.csv`` / ``.npz`` file (see ``registry`` for the tuple).

    Args:
        path: The training file.
        target: Target column (CSV only; required there).
        test_file: Optional file of the same format and columns used as the test set.
        task: ``"classification"`` / ``"regression"`` instead of the rule of the module docstring.

    Returns:
        ``(x, y, x_test | None, y_test | None, meta)`` with raw float64 features; a regression
        ``meta`` asks for standardised targets.

    Raises:
        ConfigError: ``target`` given for an ``.npz``, a test file of another format.
        DataError: see ``_load_csv`` / ``_load_npz``.
    """
    path = Path(path)
    is_csv = path.suffix.lower() == ".csv"
    if not is_csv and target is not None:
        raise ConfigError(f"target={target!r} (--target) is for CSV files; an .npz holds the arrays X and y "
                          f"(got {str(path)!r})")
    x, y, spec = _load_csv(path, target, task=task) if is_csv else _load_npz(path, task=task)
    x_test = y_test = None
    if test_file is not None:
        test_path = Path(test_file)
        if test_path.suffix.lower() != path.suffix.lower():
            raise ConfigError(f"test_file must be a {path.suffix} file like the training data, got {str(test_file)!r}")
        x_test, y_test, _ = _load_csv(test_path, target, spec) if is_csv else _load_npz(test_path, spec)
    task = spec["task"]
    prep = {
        "source": path.suffix.lower()[1:],
        "input_shape": [x.shape[1]],
        "feature_names": spec.get("feature_names"),
        "target": target if is_csv else None,
    }
    meta = {"task": task, "preprocessing": prep, "standardize": True, "standardize_target": task == "regression"}
    if task == "classification":
        meta["class_labels"] = spec["class_labels"]
        meta["class_names"] = [str(v) for v in spec["class_labels"]]
    return x, y, x_test, y_test, meta


def _csv_without_names(path: Path, preprocessing: dict, n_features: int) -> np.ndarray:
    """Read a CSV for a dataset without feature names: header optional, target column dropped."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV file: {exc}") from None
    if not rows:
        raise DataError(f"{path}: empty CSV file")
    first = [c.strip() for c in rows[0]]
    has_header = any(_not_float(c) for c in first)
    names = first if has_header else [f"column {i}" for i in range(len(first))]
    body = rows[1:] if has_header else rows
    if not body:
        raise DataError(f"{path}: CSV file has a header but no data rows")
    target = preprocessing.get("target")
    keep = [i for i, n in enumerate(names) if not (has_header and n == target)]
    if len(keep) != n_features:
        raise DataError(f"{path}: {len(keep)} feature columns, expected {n_features}")
    start = 2 if has_header else 1
    for i, r in enumerate(body):
        if len(r) != len(names):
            raise DataError(f"{path}: line {i + start} has {len(r)} fields, expected {len(names)}")
    cells = np.char.strip(np.array(body, dtype=str).reshape(len(body), len(names)))
    lines = list(range(start, start + len(body)))
    return np.stack([_numeric(path, names[i], cells[:, i], lines) for i in keep], axis=1)


def _not_float(c: str) -> bool:
    try:
        float(c)
        return False
    except ValueError:
        return True


def read_features_file(path: str | os.PathLike, preprocessing: dict) -> np.ndarray:
    """Read raw features for prediction from a CSV or an NPZ (array ``X``).

    CSV columns are picked by the stored feature names (extra columns, the target included, are
    ignored); without stored names every column but the target is a feature, header optional.

    Args:
        path: A ``.csv`` or ``.npz`` file.
        preprocessing: The dataset's stored ``preprocessing`` dict.

    Returns:
        Raw features as a numpy array (pass them to ``preprocess_features``).

    Raises:
        DataError: Unreadable file, missing columns or arrays, non-numeric or missing values.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    names = preprocessing.get("feature_names")
    shape = preprocessing.get("input_shape") or []
    n_features = int(np.prod(shape)) if shape else None
    if suffix == ".npz":
        x = _npz_arrays(path, ("X",))["X"]
        if x.dtype.kind not in "biuf":
            raise DataError(f"{path}: X must be numeric, got dtype {x.dtype}")
        return x
    if suffix != ".csv":
        raise DataError(f"{path}: unsupported features file type {suffix!r}; use .csv or .npz")
    if not names:
        if n_features is None:
            raise ConfigError("preprocessing has no 'input_shape'; it was not made by selfexpand.data")
        return _csv_without_names(path, preprocessing, n_features)
    file_names, cells, lines = read_csv(path)
    missing = [n for n in names if n not in file_names]
    if missing:
        raise DataError(f"{path}: missing feature columns {missing}; the file has {file_names}")
    return np.stack([_numeric(path, n, cells[:, file_names.index(n)], lines) for n in names], axis=1)

"""What the command line shows: the final table of a run, its warnings, and predictions (as text
lines or as a CSV file). Functions return text; :mod:`selfexpand.cli` prints it.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

__all__ = ["summary_lines", "summary_warnings", "not_available", "prediction_lines", "write_predictions"]


def not_available(key: str, summary: dict) -> str:
    """``n/a (reason)`` for a summary value that is None: why that figure has no value."""
    if key == "inactive_new_units_fraction":
        if summary.get("inactivity") is None:
            reason = "not measured"
        elif not summary.get("growth_events"):
            reason = "no growth"
        else:
            reason = "no new units left"
    elif key == "inactive_units_fraction":
        reason = "not measured" if summary.get("inactivity") is None else "no hidden units"
    elif key.endswith("_flops"):
        reason = "not recorded by this run"
    else:
        reason = "not recorded"
    return f"n/a ({reason})"


def _label(key: str, summary: dict) -> str:
    metric = summary.get("metric_name")
    if metric and key == "test_metric":
        return f"test {metric}"
    if metric and key == "best_val_metric":
        return f"best val {metric}"
    return key


def _value(key: str, summary: dict) -> str:
    value = summary.get(key)
    if value is None:
        return not_available(key, summary)
    text = f"{value:.4f}" if isinstance(value, float) else str(value)
    unit = _unit(key, summary.get("metric_unit"))
    return f"{text} ({unit})" if unit else text


def _unit(key: str, units) -> str | None:
    """The unit of a metric figure: ``metric_unit`` is one word for all, or a mapping per figure
    (``{"test_metric": "original", "best_val_metric": "standardised", ...}``)."""
    if key not in ("test_metric", "best_val_metric", "val_metric") or not units:
        return None
    unit = units.get(key) if isinstance(units, dict) else units
    if not unit:
        return None
    return f"{unit} unit" if str(unit) in ("original", "standardised", "standardized") else str(unit)


def summary_lines(summary: dict, run_dir, keys) -> list[str]:
    """The final table: one ``label  value`` line per key of ``keys`` (the metric named, e.g.
    ``test accuracy``; a missing value as ``n/a (reason)``), then the run directory."""
    keys = list(keys)
    if summary.get("front_params"):  # a run behind a conv front: its params are counted apart
        after = keys.index("stored_params_final") + 1 if "stored_params_final" in keys else len(keys)
        keys.insert(after, "front_params")
    rows = [(_label(k, summary), _value(k, summary)) for k in keys] + [("run directory", str(run_dir))]
    width = max(len(label) for label, _ in rows)
    return [f"{label:<{width}}  {value}" for label, value in rows]


def summary_warnings(summary: dict) -> list[str]:
    """The run's warnings (``summary["warnings"]``), one ``selfexpand: warning: ...`` line each."""
    return [f"selfexpand: warning: {' '.join(str(w).split())}" for w in summary.get("warnings") or ()]


def _full(value) -> str:
    return repr(float(value))


def _columns(labels: list, probabilities, classes, number=_full) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a prediction table (every value as text; probabilities by ``number``)."""
    if probabilities is not None:
        header = ["prediction", *(f"p_{c}" for c in classes)]
        rows = [[str(label), *(number(p) for p in probs)] for label, probs in zip(labels, probabilities)]
        return header, rows
    if labels and isinstance(labels[0], (list, tuple)):  # regression: one column per output
        n = len(labels[0])
        header = ["prediction"] if n == 1 else [f"prediction_{i}" for i in range(n)]
        return header, [[_full(v) for v in row] for row in labels]
    return ["prediction"], [[str(label)] for label in labels]


def prediction_lines(labels: list, probabilities=None, classes=None) -> list[str]:
    """Predictions as ``predict`` prints them: one line per row (a label, or a regression row as a
    JSON list); with ``probabilities`` a header line naming the classes, then the label and the class
    probabilities of every row, in aligned columns."""
    if probabilities is None:
        import json

        return [json.dumps(v) if isinstance(v, (list, tuple)) else str(v) for v in labels]
    header, rows = _columns(labels, probabilities, classes, number=lambda p: f"{p:.4f}")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return ["  ".join(f"{cell:<{w}}" if i == 0 else f"{cell:>{w}}" for i, (cell, w) in enumerate(zip(row, widths)))
            .rstrip() for row in [header, *rows]]


def write_predictions(path: Path, labels: list, probabilities=None, classes=None) -> int:
    """Write the prediction CSV to ``path`` (whole or not at all: a temporary file renamed into
    place): a header (``prediction``, or ``prediction_<i>`` per output of a multi-output regression;
    ``p_<class>`` per class with ``probabilities``), values at full precision. Returns the row count."""
    header, rows = _columns(labels, probabilities, classes)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(rows)

"""Helpers of the CLI suite (``tests/cli/conftest.py`` puts this folder on ``sys.path``): an
in-process ``selfexpand`` runner, small CSV files, readers of a run directory.

Runs stay tiny (digits or a 300-row CSV, a few epochs, ``--quiet``) so the suite takes seconds.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from selfexpand.cli import main

# Growth made to happen early on digits: the plateau trigger fires whenever it may (every 2nd epoch);
# training settings pinned so that the suite does not follow changes of the method's defaults.
GROW_FAST = ["--set", "min_gap=1", "--set", "window=1", "--set", "plateau_threshold=100",
             "--set", "prune_after=1", "--set", "max_new=20", "--batch-size", "32", "--lr", "0.005"]
CLASSES = ("blue", "green", "red")
CSV_TRAINING = ["--lr", "0.05", "--batch-size", "16"]  # the generic defaults (batch 256) are for MNIST


def run_main(*argv) -> tuple[int, str, str]:
    """``selfexpand ARGV`` in this process: ``(exit status, stdout, stderr)``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def run_ok(*argv) -> str:
    """``selfexpand ARGV`` that must succeed; returns its stdout."""
    status, out, err = run_main(*argv)
    assert status == 0, f"selfexpand {' '.join(map(str, argv))} exited {status}: {err}"
    return out


def read_summary(run_dir) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


def read_history(run_dir) -> list[dict]:
    text = (Path(run_dir) / "history.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_classification_csv(path: Path, n: int = 300, seed: int = 0) -> list[str]:
    """Three well separated blobs in 4 features (offset and scaled, so standardisation matters),
    the target a string column ``colour`` placed between the features. Returns the labels."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 0], [4, -4, 0, 2], [-4, 0, 4, -2]], dtype=float)
    y = rng.integers(0, 3, n)
    x = 50 + 10 * (centres[y] + rng.normal(size=(n, 4)))
    labels = [CLASSES[i] for i in y]
    lines = ["f0,f1,colour,f2,f3"]
    lines += [f"{a:.3f},{b:.3f},{lab},{c:.3f},{d:.3f}" for (a, b, c, d), lab in zip(x, labels)]
    path.write_text("\n".join(lines) + "\n")
    return labels


def write_regression_csv(path: Path, n: int = 300, seed: int = 1, sign: float = 1.0) -> np.ndarray:
    """``y = sign * (1.5 x0 - 2 x1 + 0.5 x2) + 3 + noise``, written with decimals (so: regression).
    Returns the table as written, columns ``x0..x3, y``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = sign * (1.5 * x[:, 0] - 2 * x[:, 1] + 0.5 * x[:, 2]) + 0.1 * rng.normal(size=n) + 3.0
    lines = ["x0,x1,x2,x3,y"] + [",".join(f"{v:.4f}" for v in (*row, t)) for row, t in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")
    return np.round(np.column_stack([x, y]), 4)

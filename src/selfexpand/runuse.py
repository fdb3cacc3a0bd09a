"""Using a finished run: its final model with its preprocessing (:func:`load_run`), and its predictions
for the rows of a file (:func:`predict_file`, what ``selfexpand predict`` prints)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from .checkpoint import load_run_file, read_run_identity
from .data import decode_labels, decode_targets, preprocess_features, read_features_file
from .errors import ConfigError, DataError, RunIdentityError
from .rundir import read_json
from .train.history import to_json

__all__ = ["load_run", "predict_file"]


def load_run(run_dir: str | Path):
    """The final model of a finished run and its preprocessing: ``(model, preprocessing)``.

    ``preprocessing`` is the dict that :func:`selfexpand.data.preprocess_features` takes (the
    ``"preprocessing"`` entry of ``preprocessing.json``): task, input shape, standardisation,
    class labels. ``model(preprocess_features(preprocessing, raw))`` is what ``predict`` uses (for a
    regression on standardised targets, mapped back by ``selfexpand.data.decode_targets``).

    Raises:
        CheckpointError / DataError: a missing or damaged file; RunIdentityError: ``model.safetensors``
            or ``preprocessing.json`` is not the run's own.
    """
    run_dir = Path(run_dir)
    identity = read_run_identity(run_dir)
    model = load_run_file(run_dir, "model.safetensors", identity=identity).model
    model.eval()
    path = run_dir / "preprocessing.json"
    stored = read_json(path)
    prep = stored.get("preprocessing") if isinstance(stored, dict) else None
    if not isinstance(prep, dict) or prep.get("task") not in ("classification", "regression") or \
            not isinstance(prep.get("input_shape"), list):
        raise DataError(f"{path}: not a run's preprocessing (an object with a preprocessing entry: task, "
                        f"input_shape, ...)")
    expected = ((identity or {}).get("data") or {}).get("preprocessing")
    if expected is not None and hashlib.sha256(to_json(prep, sort_keys=True).encode()).hexdigest() != expected:
        raise RunIdentityError(f"{path}: not the preprocessing the run was trained with (changed since, or "
                               f"copied from another run)")
    return model, prep


@torch.no_grad()
def predict_file(run_dir: str | Path, path: str | Path, *, proba: bool = False):
    """Predictions of a finished run for the rows of a CSV / NPZ file.

    Args:
        proba: also return each row's class probabilities (softmax of the outputs; classification).

    Returns:
        Without ``proba``: the decoded labels (classification) or the outputs in the target's unit, a
        list of lists (regression). With ``proba``: ``(labels, probabilities, class_names)``,
        ``probabilities[i][k]`` the probability of class ``class_names[k]`` for row ``i``.

    Raises:
        ConfigError: ``proba`` for a regression run.
    """
    model, prep = load_run(run_dir)
    if proba and prep["task"] != "classification":
        raise ConfigError(f"probabilities are for classification runs; {run_dir} is a {prep['task']} run")
    raw = read_features_file(path, prep)
    out = model(preprocess_features(prep, raw))
    if prep["task"] == "classification":
        labels = decode_labels(prep, out.argmax(1).numpy())
        if not proba:
            return labels
        names = decode_labels(prep, list(range(out.shape[1])))
        return labels, torch.softmax(out.double(), 1).tolist(), names
    return decode_targets(prep, out).numpy().tolist()

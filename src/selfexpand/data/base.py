"""The in-memory ``Dataset`` and the preprocessing that turns raw features into model input.

A dataset's ``preprocessing`` dict is plain JSON and is all that ``preprocess_features`` needs, so a
stored run can preprocess new inputs without the training data. Keys it understands:

* ``task``: ``"classification"`` or ``"regression"``.
* ``input_shape``: per-example shape of the model input (e.g. ``[784]``, ``[3, 32, 32]``).
* ``divide_by``: raw values are divided by this (255 for pixels, 16 for ``digits``).
* ``raw_shape``: per-example shape in the source files (``[28, 28]`` for MNIST), also accepted.
* ``channels_last_shape``: an alternative raw per-example shape (``[32, 32, 3]`` for CIFAR) that is
  moved to channels-first before reshaping.
* ``mean`` / ``std``: per-feature standardisation, computed on the training split.
* ``feature_names``, ``target``: column names for CSV data (``None`` when unnamed).
* ``class_labels``: original label of each class index (classification); ``class_names`` for display.
* ``target_mean`` / ``target_std``: per-output standardisation of regression targets (the user's
  tables only), computed on the training split; ``decode_targets`` maps outputs back to the
  original unit.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ConfigError, DataError

__all__ = ["Dataset", "preprocess_features", "decode_labels", "decode_targets", "TASKS", "image_shape", "as_images"]

TASKS = ("classification", "regression")


@dataclass(repr=False)
class Dataset:
    """Train/validation/test tensors of one dataset plus the preprocessing that produced them.

    ``x_*`` are float32 of shape ``(N, *input_shape)``; ``y_*`` are int64 class indices ``(N,)`` for
    classification and float32 ``(N, n_outputs)`` for regression.
    """

    name: str
    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]
    n_outputs: int
    preprocessing: dict

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"Dataset.task must be one of {list(TASKS)}, got {self.task!r}")
        self.input_shape = tuple(int(s) for s in self.input_shape)

    @property
    def n_features(self) -> int:
        """Number of input values per example: the product of ``input_shape``."""
        return int(math.prod(self.input_shape))

    def preprocess(self, raw: Any) -> torch.Tensor:
        """Turn raw features into model input with this dataset's stored preprocessing.

        Args:
            raw: An array-like of raw features (as in the source files), or a path to a CSV/NPZ
                file, which is read with ``read_features_file``.

        Returns:
            A float32 tensor of shape ``(N, *input_shape)``.
        """
        if isinstance(raw, str) or hasattr(raw, "__fspath__"):
            from .tabular import read_features_file

            raw = read_features_file(raw, self.preprocessing)
        return preprocess_features(self.preprocessing, raw)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, task={self.task!r}, input_shape={self.input_shape}, "
            f"n_outputs={self.n_outputs}, train={len(self.x_train)}, val={len(self.x_val)}, "
            f"test={len(self.x_test)})"
        )


def image_shape(data: "Dataset") -> tuple[int, int, int]:
    """``(C, H, W)`` of a dataset's images: its ``input_shape`` when that has three dimensions (CIFAR-10),
    else ``(1, H, W)`` from a two-dimensional ``raw_shape`` of as many values (MNIST's ``[28, 28]``, the
    digits' ``[8, 8]``).

    Raises:
        ConfigError: neither (a table, or flat data without an image shape).
    """
    if len(data.input_shape) == 3:
        return tuple(data.input_shape)
    raw = data.preprocessing.get("raw_shape")
    if raw is not None and len(raw) == 2 and int(math.prod(raw)) == data.n_features:
        return (1, int(raw[0]), int(raw[1]))
    raise ConfigError(f"dataset {data.name!r} has no image shape (input_shape={list(data.input_shape)}"
                      + (f", raw_shape={list(raw)}" if raw is not None else "")
                      + "): a conv start (conv=[...]) needs images such as mnist or cifar10")


def as_images(data: "Dataset") -> "Dataset":
    """``data`` with every split as ``(N, C, H, W)`` images (:func:`image_shape`), ``input_shape`` and
    ``preprocessing["input_shape"]`` to match (``raw_shape`` kept, so flat or ``H x W`` raw examples are
    still accepted); ``data`` itself when it already is. The values are the same, only viewed anew.

    Raises:
        ConfigError: a dataset without an image shape.
    """
    shape = image_shape(data)
    if tuple(data.input_shape) == shape:
        return data
    view = {f"x_{s}": getattr(data, f"x_{s}").reshape(-1, *shape) for s in ("train", "val", "test")}
    prep = {**data.preprocessing, "input_shape": list(shape)}
    return dataclasses.replace(data, input_shape=shape, preprocessing=prep, **view)


def _as_numeric(raw: Any) -> np.ndarray:
    """Return ``raw`` as a numeric numpy array (no copy when it already is one)."""
    if isinstance(raw, torch.Tensor):
        raw = raw.detach().cpu().numpy()
    arr = np.asarray(raw)
    if arr.dtype.kind in "biuf":
        return arr
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"raw features must be numeric, got dtype {arr.dtype}: {exc}") from None


def _shape_to_model(preprocessing: dict, arr: np.ndarray) -> np.ndarray:
    """Reshape raw features to ``(N, *input_shape)``, accepting flat or channels-last examples."""
    if "input_shape" not in preprocessing:
        raise ConfigError("preprocessing has no 'input_shape'; it was not made by selfexpand.data")
    shape = tuple(int(s) for s in preprocessing["input_shape"])
    size = int(math.prod(shape))
    last = preprocessing.get("channels_last_shape")
    last = tuple(int(s) for s in last) if last else None
    raw_shape = preprocessing.get("raw_shape")
    accepted = [shape, (size,)] + ([tuple(int(s) for s in raw_shape)] if raw_shape else [])
    if arr.shape in accepted or (last is not None and arr.shape == last):
        arr = arr[None]  # one example
    if last is not None and arr.ndim == len(last) + 1 and arr.shape[1:] == last and last != shape:
        arr = np.moveaxis(arr, -1, 1)
    if arr.ndim < 1 or arr.shape[1:] not in accepted:
        raise DataError(
            f"raw features have shape {tuple(arr.shape)}; expected (N, {size}) or "
            f"(N, {', '.join(map(str, shape))}) for input_shape {shape}"
        )
    return arr.reshape((arr.shape[0],) + shape)


def preprocess_features(preprocessing: dict, raw: Any) -> torch.Tensor:
    """Turn raw features into model input with a stored ``preprocessing`` dict.

    Args:
        preprocessing: The ``Dataset.preprocessing`` dict (e.g. read back from a stored run).
        raw: Raw features, shape ``(N, *input_shape)``, ``(N, n_features)``, a single example, or
            channels-last images when ``channels_last_shape`` is recorded.

    Returns:
        A float32 tensor of shape ``(N, *input_shape)``.

    Raises:
        DataError: The features are not numeric, have the wrong shape, or are not finite.
    """
    arr = _shape_to_model(preprocessing, _as_numeric(raw))
    mean, std = preprocessing.get("mean"), preprocessing.get("std")
    divide_by = preprocessing.get("divide_by")
    if mean is not None:
        flat = arr.reshape(arr.shape[0], -1).astype(np.float64)
        mean_a = np.asarray(mean, dtype=np.float64)
        std_a = np.asarray(std, dtype=np.float64)
        if mean_a.shape != (flat.shape[1],) or std_a.shape != mean_a.shape:
            raise ConfigError(
                f"preprocessing mean/std have {mean_a.size}/{std_a.size} entries, features have {flat.shape[1]}"
            )
        if divide_by is not None:
            flat /= float(divide_by)
        out = ((flat - mean_a) / std_a).astype(np.float32).reshape(arr.shape)
    else:
        out = arr.astype(np.float32)  # always a fresh, writable copy
        if divide_by is not None:
            out /= np.float32(divide_by)
    if arr.dtype.kind == "f" and not np.isfinite(out).all():
        bad = np.argwhere(~np.isfinite(out.reshape(out.shape[0], -1)))[0]
        raise DataError(f"raw features are not finite: example {bad[0]}, feature {bad[1]}")
    return torch.from_numpy(out)


def decode_labels(preprocessing: dict, y_int: Any) -> list:
    """Map class indices back to the original labels (e.g. the strings of a CSV target column).

    Args:
        preprocessing: A classification dataset's ``preprocessing`` dict.
        y_int: Class indices: an int, a sequence, a numpy array or a tensor.

    Returns:
        The original label of each index, as a list (the indices themselves when no labels are stored).

    Raises:
        ConfigError: The preprocessing is for regression, or an index is out of range.
    """
    if preprocessing.get("task") == "regression":
        raise ConfigError("decode_labels needs a classification dataset; this preprocessing has task='regression'")
    if isinstance(y_int, torch.Tensor):
        y_int = y_int.detach().cpu().numpy()
    idx = np.asarray(y_int).reshape(-1)
    if idx.size and idx.dtype.kind not in "iu":
        if idx.dtype.kind != "f" or not np.all(idx == np.round(idx)):
            raise ConfigError(f"class indices must be integers, got {idx[:5].tolist()} (dtype {idx.dtype})")
    idx = idx.astype(np.int64)
    labels: Sequence | None = preprocessing.get("class_labels")
    n = len(labels) if labels is not None else preprocessing.get("n_outputs")
    if n is not None and idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = int(idx[(idx < 0) | (idx >= n)][0])
        raise ConfigError(f"class index {bad} is out of range for {n} classes")
    if labels is None:
        return [int(i) for i in idx]
    return [labels[int(i)] for i in idx]


def decode_targets(preprocessing: dict, y: torch.Tensor) -> torch.Tensor:
    """Map regression outputs (or targets) of a dataset back to the original unit of its target.

    The user's tables train on standardised targets (``target_mean`` / ``target_std`` of the
    training split, per output column); this is ``y * target_std + target_mean``. Without
    ``target_mean`` (classification, the generated tasks, runs stored before) it returns ``y``.

    Args:
        preprocessing: The dataset's ``preprocessing`` dict.
        y: Outputs ``(N, n_outputs)``, or ``(N,)`` for one output.

    Returns:
        A tensor of ``y``'s shape, dtype and device.

    Raises:
        ConfigError: ``y``'s last dimension does not match the stored statistics.
    """
    mean = preprocessing.get("target_mean")
    if mean is None:
        return y
    std = preprocessing.get("target_std")
    y = torch.as_tensor(y)
    dtype = y.dtype if y.is_floating_point() else torch.float32
    mean_t = torch.tensor(mean, dtype=dtype, device=y.device)
    std_t = torch.tensor(std, dtype=dtype, device=y.device)
    width = y.shape[-1] if y.dim() > 1 else 1
    if mean_t.numel() != width or std_t.numel() != width:
        raise ConfigError(f"decode_targets: outputs have {width} columns, the stored target statistics "
                          f"{mean_t.numel()} / {std_t.numel()}")
    if y.dim() <= 1:
        mean_t, std_t = mean_t[0], std_t[0]
    return y.to(dtype) * std_t + mean_t

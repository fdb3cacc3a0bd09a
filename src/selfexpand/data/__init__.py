"""Datasets as in-memory tensors, and a registry that later code extends.

``load_dataset(name_or_path)`` returns a ``Dataset`` (train/val/test tensors plus a JSON-able
``preprocessing`` dict). Built-in names: ``digits`` (bundled with scikit-learn), ``mnist``,
``fashion-mnist``, ``emnist-letters`` and ``cifar10`` (files under ``data_dir`` or
``$SELFEXPAND_DATA``); the synthetic tasks ``bessel``, ``bessel-sum``, ``cubic``, ``quadratic``,
``gaussian-mixture``, ``step-sine`` and ``spirals`` (``data/synthetic.py``, generated, with options);
SENN's ``moons`` and ``teacher-student`` (``data/senn_tasks.py``, generated); any ``.csv`` (with
``target=``) or ``.npz`` (``X``, ``y``) path; ``task=`` chooses classification / regression for a
file. A file's regression targets are standardised (``decode_targets`` maps outputs back).
``dataset_names()`` lists the registered names.
"""

from __future__ import annotations

from .base import Dataset, decode_labels, decode_targets, preprocess_features
from .registry import (DATA_ENV, LOAD_OPTIONS, check_load_options, dataset_names, dataset_options,
                       find_data_folder, load_dataset, register_dataset)
from .tabular import read_features_file
from . import cifar as _cifar  # noqa: F401  (registers cifar10)
from . import idx as _idx  # noqa: F401  (registers mnist, fashion-mnist, emnist-letters)
from . import synthetic as _synthetic  # noqa: F401  (registers bessel, spirals, ... : ALGORITHMS.md §4)
from . import senn_tasks as _senn_tasks  # noqa: F401  (registers moons, teacher-student: ALGORITHMS.md §3)

__all__ = [
    "Dataset",
    "DATA_ENV",
    "LOAD_OPTIONS",
    "check_load_options",
    "dataset_names",
    "dataset_options",
    "decode_labels",
    "decode_targets",
    "find_data_folder",
    "load_dataset",
    "preprocess_features",
    "read_features_file",
    "register_dataset",
]

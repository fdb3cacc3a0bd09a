"""CIFAR-10: the official ``cifar-10-batches-py`` pickles (read safely) or the ``cifar10-subset`` npz.

The official batches are Python pickles. They are read with ``RestrictedUnpickler``, which admits
only the few numpy/builtin globals needed to rebuild a uint8 array and refuses everything else, so
a tampered batch cannot run code.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
from pathlib import Path

import numpy as np

from ..errors import DataError
from .registry import LIMIT_OPTION, find_data_folder, first_images, register_dataset

__all__ = ["RestrictedUnpickler", "read_cifar_batch", "CIFAR10_CLASSES", "ALLOWED_GLOBALS"]

logger = logging.getLogger(__name__)

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
OFFICIAL_FOLDER = "cifar-10-batches-py"
SUBSET_FOLDER = "cifar10-subset"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"

# (module, name) pairs a CIFAR batch pickle may reference: what numpy needs to rebuild an array
# (protocol 2 from Python 2 or 3, and protocol 5's out-of-band-free buffers).
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ``ALLOWED_GLOBALS`` and raises ``DataError`` for any other."""

    def __init__(self, file, path: str | os.PathLike):
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise DataError(
                f"{self._path}: refused to unpickle global '{module}.{name}'; a CIFAR batch may only "
                "contain numpy arrays, lists, bytes and dicts"
            )
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core.") :]
        return super().find_class(module, name)


def _get(d: dict, key: str):
    return d.get(key.encode(), d.get(key))


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one official CIFAR-10 batch with the restricted unpickler.

    Args:
        path: A ``data_batch_N`` or ``test_batch`` file.

    Returns:
        ``(images (N, 3, 32, 32) uint8, labels (N,) int64)``.

    Raises:
        DataError: Unreadable or malformed batch, or a refused pickle global; names the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read CIFAR batch: {exc}") from None
    try:
        obj = RestrictedUnpickler(io.BytesIO(raw), path).load()
    except DataError:
        raise
    except Exception as exc:  # any malformed pickle: UnpicklingError, EOFError, ValueError, ...
        raise DataError(f"{path}: cannot unpickle CIFAR batch: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: CIFAR batch must be a dict, got {type(obj).__name__}")
    data, labels = _get(obj, "data"), _get(obj, "labels")
    if data is None or labels is None:
        keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in obj)
        raise DataError(f"{path}: CIFAR batch needs keys 'data' and 'labels', has {keys}")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: CIFAR 'data' must be a uint8 array of shape (N, 3072), got {desc}")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: CIFAR 'labels' must be integers: {exc}") from None
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels; counts must agree")
    _check_range(path, labels)
    return data.reshape(len(data), 3, 32, 32), labels


def _check_range(path: Path, labels: np.ndarray) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        bad = int(labels[(labels < 0) | (labels > 9)][0])
        raise DataError(f"{path}: label {bad} outside the valid range 0..9")


def _load_official(folder: Path) -> tuple:
    parts = []
    for name in TRAIN_BATCHES + [TEST_BATCH]:
        if not (folder / name).is_file():
            raise DataError(f"{folder / name}: missing CIFAR-10 batch file")
        parts.append(read_cifar_batch(folder / name))
    x = np.concatenate([p[0] for p in parts[:-1]])
    y = np.concatenate([p[1] for p in parts[:-1]])
    return x, y, parts[-1][0], parts[-1][1]


def _npz_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.npz"))
    return sorted(files, key=lambda p: not p.name.lower().startswith("cifar"))


def _load_subset(folder: Path) -> tuple:
    files = _npz_files(folder)
    if not files:
        raise DataError(f"{folder}: no .npz file in the CIFAR-10 subset folder")
    path = files[0]
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test") if k in z.files}
            found = list(z.files)
    except Exception as exc:  # bad zip, pickled objects, ...
        raise DataError(f"{path}: cannot read CIFAR-10 npz: {type(exc).__name__}: {exc}") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing arrays {missing}; the file has {found}")
    out = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"].reshape(-1)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
            raise DataError(f"{path}: x_{split} must be uint8 (N, 32, 32, 3), got {x.dtype} {x.shape}")
        if len(x) != len(y) or y.dtype.kind not in "iu":
            raise DataError(f"{path}: y_{split} must hold {len(x)} integer labels, got {y.dtype} {y.shape}")
        _check_range(path, y)
        out += [np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y.astype(np.int64)]
    return tuple(out)


@register_dataset("cifar10", options=LIMIT_OPTION)
def load_cifar10(data_dir: str | None = None, limit: int = 0, **_kw) -> tuple:
    """CIFAR-10 from ``cifar-10-batches-py`` (official pickles, preferred) or ``cifar10-subset`` (npz).

    Images come back as raw uint8 ``(N, 3, 32, 32)``; the preprocessing divides by 255. ``limit``: the
    first ``limit`` training and test images (0: all).
    """
    folder, path = find_data_folder(
        "cifar10",
        [
            (OFFICIAL_FOLDER, lambda p: (p / TRAIN_BATCHES[0]).is_file()),
            (SUBSET_FOLDER, lambda p: bool(_npz_files(p))),
        ],
        data_dir,
    )
    x, y, xt, yt = _load_official(path) if folder == OFFICIAL_FOLDER else _load_subset(path)
    logger.debug("dataset cifar10: %d train, %d test images from %s", len(x), len(xt), path)
    meta = {
        "task": "classification",
        "class_labels": list(range(10)),
        "class_names": list(CIFAR10_CLASSES),
        "preprocessing": {
            "source": f"cifar10:{folder}",
            "input_shape": [3, 32, 32],
            "channels_last_shape": [32, 32, 3],
            "divide_by": 255.0,
        },
    }
    return first_images(limit, x, y, xt, yt, meta)

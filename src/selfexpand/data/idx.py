"""IDX files (MNIST, Fashion-MNIST, EMNIST letters): a validating reader and the dataset loaders.

IDX is big-endian: bytes 0-1 zero, byte 2 the data type (only 0x08, unsigned byte, is used here),
byte 3 the number of dimensions, then one 4-byte size per dimension, then the data. Files may be
gzip-compressed (``.gz``) or plain.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .registry import LIMIT_OPTION, find_data_folder, first_images, register_dataset

__all__ = ["read_idx", "load_idx_pair", "MNIST_FILES", "EMNIST_LETTERS_FILES", "FASHION_CLASSES"]

logger = logging.getLogger(__name__)

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
EMNIST_LETTERS_FILES = {k: f"emnist-letters-{v.replace('t10k', 'test')}" for k, v in MNIST_FILES.items()}
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
IMAGE_SHAPE = (28, 28)


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.name.endswith(".gz") else raw
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read IDX file: {exc}") from None


def read_idx(path: str | os.PathLike, expected_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes, validating its header against its contents.

    Args:
        path: The file (``.gz`` is decompressed).
        expected_ndim: Required number of dimensions (3 for images, 1 for labels), or ``None``.

    Returns:
        A read-only uint8 array of the declared shape.

    Raises:
        DataError: Unreadable file, bad magic, unsupported type, wrong number of dimensions, or a
            data length that does not match the declared sizes; the message names the file.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{path}: bad IDX magic number: first two bytes must be 0x00 0x00, got 0x{data[0]:02x} 0x{data[1]:02x}"
        )
    if data[2] != 0x08:
        raise DataError(f"{path}: unsupported IDX data type 0x{data[2]:02x} (expected 0x08, unsigned byte)")
    ndim = data[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataError(f"{path}: IDX header declares {ndim} dimensions, expected {expected_ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header: {ndim} dimensions need {header} bytes, file has {len(data)}")
    sizes = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(sizes)
    actual = len(data) - header
    if actual != expected:
        what = "truncated data" if actual < expected else "trailing bytes after the data"
        raise DataError(
            f"{path}: IDX header declares sizes {sizes} = {expected} bytes of data, "
            f"but the file holds {actual} ({what})"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(sizes)


def _find_file(folder: Path, base: str) -> Path:
    for name in (base + ".gz", base):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder / (base + '.gz')}: missing IDX file (also looked for {folder / base})")


def load_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an images/labels IDX pair and check they agree.

    Args:
        images_path: 3-D IDX file of 28x28 images.
        labels_path: 1-D IDX file of labels.

    Returns:
        ``(images (N, 28, 28) uint8, labels (N,) uint8)``.

    Raises:
        DataError: Either file is malformed, images are not 28x28, or the counts differ.
    """
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    if images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; counts must agree"
        )
    return images, labels


def _check_labels(path: Path, labels: np.ndarray, low: int, high: int) -> None:
    if len(labels) and (labels.min() < low or labels.max() > high):
        bad = int(labels[(labels < low) | (labels > high)][0])
        raise DataError(f"{path}: label {bad} outside the valid range {low}..{high}")


def _has(files: dict):
    def holds(path: Path) -> bool:
        base = files["train_images"]
        return (path / (base + ".gz")).is_file() or (path / base).is_file()

    return holds


def _load_family(name: str, folder: str, files: dict, data_dir: str | None, low: int, high: int):
    """Load train and test splits of an MNIST-style dataset as raw uint8 ``(N, 784)`` arrays."""
    _, path = find_data_folder(name, [(folder, _has(files))], data_dir)
    out = {}
    for split in ("train", "test"):
        img_path = _find_file(path, files[f"{split}_images"])
        lab_path = _find_file(path, files[f"{split}_labels"])
        images, labels = load_idx_pair(img_path, lab_path)
        _check_labels(lab_path, labels, low, high)
        out[split] = (images, labels.astype(np.int64) - low)
    logger.debug("dataset %s: %d train, %d test images from %s", name, len(out["train"][0]), len(out["test"][0]), path)
    return out


def _image_meta(name: str, labels: list, names: list) -> dict:
    return {
        "task": "classification",
        "class_labels": labels,
        "class_names": names,
        "preprocessing": {"source": name, "input_shape": [784], "raw_shape": [28, 28], "divide_by": 255.0},
    }


@register_dataset("mnist", options=LIMIT_OPTION)
def load_mnist(data_dir: str | None = None, limit: int = 0, **_kw) -> tuple:
    """MNIST from ``<data_dir>/mnist``: 60000 train and 10000 test handwritten digits (``limit``: the
    first ``limit`` of each, 0 all)."""
    out = _load_family("mnist", "mnist", MNIST_FILES, data_dir, 0, 9)
    (x, y), (xt, yt) = out["train"], out["test"]
    meta = _image_meta("mnist", list(range(10)), [str(i) for i in range(10)])
    return first_images(limit, x.reshape(len(x), -1), y, xt.reshape(len(xt), -1), yt, meta)


@register_dataset("fashion-mnist", options=LIMIT_OPTION)
def load_fashion_mnist(data_dir: str | None = None, limit: int = 0, **_kw) -> tuple:
    """Fashion-MNIST from ``<data_dir>/fashion-mnist``: 60000 train and 10000 test clothing images
    (``limit``: the first ``limit`` of each, 0 all)."""
    out = _load_family("fashion-mnist", "fashion-mnist", MNIST_FILES, data_dir, 0, 9)
    (x, y), (xt, yt) = out["train"], out["test"]
    meta = _image_meta("fashion-mnist", list(range(10)), list(FASHION_CLASSES))
    return first_images(limit, x.reshape(len(x), -1), y, xt.reshape(len(xt), -1), yt, meta)


def _upright(images: np.ndarray) -> np.ndarray:
    """Undo EMNIST's transposed storage; returns contiguous ``(N, 784)``."""
    return np.ascontiguousarray(images.transpose(0, 2, 1)).reshape(len(images), -1)


@register_dataset("emnist-letters", options=LIMIT_OPTION)
def load_emnist_letters(data_dir: str | None = None, limit: int = 0, **_kw) -> tuple:
    """EMNIST letters from ``<data_dir>/emnist-letters``: 124800 train, 20800 test, 26 classes.

    Labels 1..26 become class indices 0..25 (``class_labels`` keeps 1..26, ``class_names`` A..Z);
    the images, stored transposed in the files, are transposed back upright.
    """
    out = _load_family("emnist-letters", "emnist-letters", EMNIST_LETTERS_FILES, data_dir, 1, 26)
    (x, y), (xt, yt) = out["train"], out["test"]
    meta = _image_meta("emnist-letters", list(range(1, 27)), [chr(ord("A") + i) for i in range(26)])
    return first_images(limit, _upright(x), y, _upright(xt), yt, meta)

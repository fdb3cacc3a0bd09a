"""IDX reading and the MNIST-family loaders: broken files in tmp_path, and the real files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from selfexpand.data import load_dataset
from selfexpand.data.idx import EMNIST_LETTERS_FILES, MNIST_FILES, read_idx
from selfexpand.errors import DataError


def idx_bytes(arr: np.ndarray, *, magic=(0, 0, 8), ndim=None, shape=None) -> bytes:
    shape = arr.shape if shape is None else shape
    ndim = len(shape) if ndim is None else ndim
    header = bytes([*magic, ndim]) + struct.pack(f">{len(shape)}I", *shape)
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def write_idx(path, arr, compress=True, **kw):
    data = idx_bytes(arr, **kw)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_family(folder, files, n_train=30, n_test=10, label_offset=0, seed=0):
    """Write a small MNIST-style dataset; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10 + label_offset).astype(np.uint8)
        write_idx(folder / (files[f"{split}_images"] + ".gz"), images)
        write_idx(folder / (files[f"{split}_labels"] + ".gz"), labels)
        out[split] = (images, labels)
    return out


# --- read_idx on written files -------------------------------------------------------------------


def test_read_idx_roundtrip_gz_and_plain(tmp_path):
    arr = (np.arange(2 * 28 * 28) % 251).astype(np.uint8).reshape(2, 28, 28)
    for path in (write_idx(tmp_path / "a.idx.gz", arr), write_idx(tmp_path / "a.idx", arr, compress=False)):
        got = read_idx(path, 3)
        assert got.dtype == np.uint8 and got.shape == (2, 28, 28)
        np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize(
    "kw, fragment",
    [
        (dict(magic=(1, 0, 8)), "magic"),
        (dict(magic=(0, 7, 8)), "magic"),
        (dict(magic=(0, 0, 0x0D)), "0x0d"),
    ],
)
def test_bad_magic_or_type(tmp_path, kw, fragment):
    path = write_idx(tmp_path / "bad-images-idx3-ubyte.gz", np.zeros((3, 28, 28)), **kw)
    with pytest.raises(DataError) as err:
        read_idx(path, 3)
    assert str(path) in str(err.value) and fragment in str(err.value)


def test_wrong_number_of_dims(tmp_path):
    path = write_idx(tmp_path / "labels-idx1-ubyte.gz", np.zeros((3, 28, 28)))
    with pytest.raises(DataError, match="3 dimensions, expected 1") as err:
        read_idx(path, 1)
    assert str(path) in str(err.value)


def test_truncated_data(tmp_path):
    data = idx_bytes(np.zeros((5, 28, 28)))[:-100]
    path = tmp_path / "trunc-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(data))
    with pytest.raises(DataError, match="truncated") as err:
        read_idx(path, 3)
    assert str(path) in str(err.value) and "(5, 28, 28)" in str(err.value)


def test_trailing_bytes_and_short_header(tmp_path):
    path = tmp_path / "extra.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(4)) + b"\x00\x01"))
    with pytest.raises(DataError, match="trailing"):
        read_idx(path, 1)
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(bytes([0, 0, 8, 3, 0, 0])))
    with pytest.raises(DataError, match="truncated IDX header") as err:
        read_idx(short, 3)
    assert str(short) in str(err.value)
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"\x00")
    with pytest.raises(DataError, match="too short"):
        read_idx(tiny)


def test_declared_sizes_larger_than_data(tmp_path):
    # header says 10 images, data holds 9
    path = write_idx(tmp_path / "lie.gz", np.zeros((9, 28, 28)), shape=(10, 28, 28))
    with pytest.raises(DataError, match="truncated"):
        read_idx(path, 3)


def test_not_gzip_and_missing(tmp_path):
    path = tmp_path / "notgzip-idx1-ubyte.gz"
    path.write_bytes(b"this is not gzip at all")
    with pytest.raises(DataError, match="cannot read") as err:
        read_idx(path, 1)
    assert str(path) in str(err.value)
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nope.gz", 1)


# --- loaders on small written datasets -----------------------------------------------------------


def test_small_mnist_loads_raw_pixels_scaled(tmp_path):
    written = write_family(tmp_path / "mnist", MNIST_FILES, n_train=50, n_test=10)
    ds = load_dataset("mnist", data_dir=str(tmp_path))
    assert ds.input_shape == (784,) and ds.n_outputs == 10 and ds.task == "classification"
    assert ds.x_test.dtype == torch.float32 and ds.y_test.dtype == torch.int64
    images, labels = written["test"]
    expect = torch.from_numpy(images.reshape(10, 784).astype(np.float32) / 255)
    assert torch.equal(ds.x_test, expect)  # official test set, in file order
    assert ds.y_test.tolist() == labels.tolist()
    assert len(ds.x_train) + len(ds.x_val) == 50


def test_data_dir_may_be_the_folder_itself_or_env(tmp_path, monkeypatch):
    write_family(tmp_path / "fashion-mnist", MNIST_FILES, n_train=20, n_test=10)
    a = load_dataset("fashion-mnist", data_dir=str(tmp_path / "fashion-mnist"))
    monkeypatch.setenv("SELFEXPAND_DATA", str(tmp_path))
    b = load_dataset("fashion-mnist")
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.x_train, b.x_train)


def test_image_and_label_count_mismatch(tmp_path):
    folder = tmp_path / "mnist"
    write_family(folder, MNIST_FILES, n_train=20, n_test=10)
    bad = write_idx(folder / (MNIST_FILES["test_labels"] + ".gz"), np.zeros(9, dtype=np.uint8))
    with pytest.raises(DataError, match="10 images but .* 9 labels") as err:
        load_dataset("mnist", data_dir=str(tmp_path))
    assert str(bad) in str(err.value)


def test_wrong_image_size_and_label_range(tmp_path):
    folder = tmp_path / "mnist"
    write_family(folder, MNIST_FILES, n_train=20, n_test=10)
    write_idx(folder / (MNIST_FILES["test_images"] + ".gz"), np.zeros((10, 28, 27)))
    with pytest.raises(DataError, match="28x27"):
        load_dataset("mnist", data_dir=str(tmp_path))
    write_family(folder, MNIST_FILES, n_train=20, n_test=10)
    write_idx(folder / (MNIST_FILES["train_labels"] + ".gz"), np.full(20, 10, dtype=np.uint8))
    with pytest.raises(DataError, match="label 10 outside") as err:
        load_dataset("mnist", data_dir=str(tmp_path))
    assert MNIST_FILES["train_labels"] in str(err.value)


def test_missing_file_named(tmp_path):
    folder = tmp_path / "mnist"
    write_family(folder, MNIST_FILES)
    (folder / (MNIST_FILES["test_images"] + ".gz")).unlink()
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        load_dataset("mnist", data_dir=str(tmp_path))


def test_small_emnist_shifts_labels_and_transposes(tmp_path):
    written = write_family(tmp_path / "emnist-letters", EMNIST_LETTERS_FILES, 52, 26, label_offset=1)
    ds = load_dataset("emnist-letters", data_dir=str(tmp_path))
    images, labels = written["test"]
    assert ds.n_outputs == 26
    assert ds.y_test.tolist() == (labels.astype(int) - 1).tolist()
    for i in range(len(images)):
        expect = images[i].T.reshape(-1).astype(np.float32) / 255
        np.testing.assert_array_equal(ds.x_test[i].numpy(), expect)
    # label 0 is invalid in EMNIST letters
    write_idx(tmp_path / "emnist-letters" / (EMNIST_LETTERS_FILES["test_labels"] + ".gz"), np.zeros(26))
    with pytest.raises(DataError, match="label 0 outside the valid range 1..26"):
        load_dataset("emnist-letters", data_dir=str(tmp_path))


# --- the real files ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist(shared_dataset):
    shared_dataset("mnist")
    return load_dataset("mnist", data_dir=str(shared_dataset("mnist").parent))


def test_real_mnist(mnist, shared_dataset):
    ds = mnist
    assert len(ds.x_train) + len(ds.x_val) == 60000 and len(ds.x_test) == 10000
    assert len(ds.x_val) == 12000
    assert ds.x_train.shape[1:] == (784,) and ds.x_train.dtype == torch.float32
    assert float(ds.x_train.min()) == 0.0 and float(ds.x_train.max()) == 1.0
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert y.dtype == torch.int64 and set(y.unique().tolist()) == set(range(10))
    raw = read_idx(shared_dataset("mnist") / "t10k-images-idx3-ubyte.gz", 3)
    np.testing.assert_array_equal(ds.x_test[:50].numpy(), raw[:50].reshape(50, -1).astype(np.float32) / 255)
    assert ds.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the well-known first test labels


def test_real_fashion_mnist(shared_dataset):
    folder = shared_dataset("fashion-mnist")
    ds = load_dataset("fashion-mnist", data_dir=str(folder.parent), val_fraction=0.1)
    assert len(ds.x_train) == 54000 and len(ds.x_val) == 6000 and len(ds.x_test) == 10000
    assert ds.n_outputs == 10 and ds.preprocessing["class_names"][9] == "Ankle boot"
    counts = torch.bincount(ds.y_test, minlength=10)
    assert counts.tolist() == [1000] * 10  # the official test set is balanced


def test_real_emnist_letters_upright(shared_dataset):
    folder = shared_dataset("emnist-letters")
    ds = load_dataset("emnist-letters", data_dir=str(folder.parent))
    assert len(ds.x_train) + len(ds.x_val) == 124800 and len(ds.x_test) == 20800
    assert ds.n_outputs == 26 and int(ds.y_train.min()) == 0 and int(ds.y_train.max()) == 25
    raw_x = read_idx(folder / (EMNIST_LETTERS_FILES["test_images"] + ".gz"), 3)
    raw_y = read_idx(folder / (EMNIST_LETTERS_FILES["test_labels"] + ".gz"), 1)
    assert ds.y_test.tolist() == (raw_y.astype(int) - 1).tolist()
    for i in (0, 1, 777, 20799):
        np.testing.assert_array_equal(ds.x_test[i].numpy(), raw_x[i].T.reshape(-1).astype(np.float32) / 255)
    # Independent of the transpose code: letter shapes of the class means must look upright.
    mean = lambda letter: ds.x_test[ds.y_test == ord(letter) - ord("A")].mean(0).reshape(28, 28).numpy()

    def spread(m):  # (vertical, horizontal) standard deviation of the ink
        r = np.arange(28)
        py, px = m.sum(1) / m.sum(), m.sum(0) / m.sum()
        return np.sqrt((py * (r - py @ r) ** 2).sum()), np.sqrt((px * (r - px @ r) ** 2).sum())

    v, h = spread(mean("I"))
    assert v > 1.5 * h  # 'I' is tall
    v, h = spread(mean("W"))
    assert h > 1.2 * v  # 'W' is wide
    t = mean("T")
    assert t[:14].sum() > 1.3 * t[14:].sum()  # 'T' has its bar at the top

"""CIFAR-10: official pickled batches written here, the restricted unpickler, and the real npz subset."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from selfexpand.data import load_dataset, preprocess_features
from selfexpand.data.cifar import read_cifar_batch
from selfexpand.errors import DataError

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_official(folder, n=20, seed=0, protocol=2):
    """Write the six official batches (``n`` images each) like the Python-2 originals."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for b, name in enumerate(BATCHES):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in (np.arange(n) + b) % 10]
        batch = {
            b"batch_label": f"batch {b}".encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img_{b}_{i}.png".encode() for i in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
        written[name] = (data, labels)
    return written


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_read_batch_any_protocol(tmp_path, protocol):
    written = write_official(tmp_path, n=7, protocol=protocol)
    x, y = read_cifar_batch(tmp_path / "data_batch_3")
    data, labels = written["data_batch_3"]
    assert x.shape == (7, 3, 32, 32) and x.dtype == np.uint8
    np.testing.assert_array_equal(x.reshape(7, -1), data)
    assert y.tolist() == labels


def test_official_folder_loads(tmp_path):
    written = write_official(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", data_dir=str(tmp_path), val_fraction=0.2)
    assert ds.input_shape == (3, 32, 32) and ds.n_outputs == 10
    assert ds.x_train.shape == (80, 3, 32, 32) and ds.x_val.shape == (20, 3, 32, 32)
    assert ds.x_test.dtype == torch.float32 and ds.y_test.dtype == torch.int64
    data, labels = written["test_batch"]
    # channel-major rows: first 1024 bytes are red, next 1024 green, last 1024 blue
    assert ds.x_test[0, 0, 0, 1].item() == pytest.approx(data[0, 1] / 255)
    assert ds.x_test[0, 1, 0, 0].item() == pytest.approx(data[0, 1024] / 255)
    assert ds.x_test[3, 2, 31, 31].item() == pytest.approx(data[3, 3071] / 255)
    np.testing.assert_array_equal(ds.x_test.numpy(), data.reshape(20, 3, 32, 32).astype(np.float32) / 255)
    assert ds.y_test.tolist() == labels
    # train + val is exactly the five training batches
    train_rows = {bytes(r) for name in BATCHES[:5] for r in written[name][0]}
    got = torch.cat([ds.x_train, ds.x_val]).mul(255).round().to(torch.uint8).reshape(100, -1).numpy()
    assert {bytes(r) for r in got} == train_rows and len(got) == 100


def test_official_preferred_over_subset(tmp_path):
    write_official(tmp_path / "cifar-10-batches-py", n=10)
    sub = tmp_path / "cifar10-subset"
    sub.mkdir()
    z = np.zeros((10, 32, 32, 3), np.uint8)
    np.savez(sub / "cifar.npz", x_train=z, y_train=np.arange(10), x_test=z, y_test=np.arange(10))
    ds = load_dataset("cifar10", data_dir=str(tmp_path))
    assert ds.preprocessing["source"] == "cifar10:cifar-10-batches-py"
    assert float(ds.x_test.max()) > 0  # the random official images, not the zero subset
    (tmp_path / "cifar-10-batches-py").rename(tmp_path / "elsewhere")
    ds = load_dataset("cifar10", data_dir=str(tmp_path))
    assert ds.preprocessing["source"] == "cifar10:cifar10-subset" and float(ds.x_test.max()) == 0


def test_malicious_pickle_refused_not_executed(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_official(folder, n=10)
    marker = tmp_path / "pwned"
    with open(folder / "data_batch_2", "wb") as f:
        pickle.dump({b"data": _Evil(marker), b"labels": [0] * 10}, f, protocol=2)
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", data_dir=str(tmp_path))
    msg = str(err.value)
    assert "data_batch_2" in msg and "system" in msg and "refused" in msg
    assert not marker.exists()


@pytest.mark.parametrize("payload", [_EvalEvil(), {b"data": np.load, b"labels": [0]}])
def test_other_globals_refused(tmp_path, payload):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(DataError, match="refused to unpickle global") as err:
        read_cifar_batch(path)
    assert str(path) in str(err.value)


def test_refuses_object_arrays_of_callables(tmp_path):
    # an object array would pickle its elements' globals too: still refused
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = print, "x"
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": arr, b"labels": [0, 1]}, protocol=2))
    with pytest.raises(DataError, match=r"refused to unpickle global '(__builtin__|builtins)\.print'"):
        read_cifar_batch(path)


@pytest.mark.parametrize(
    "batch, fragment",
    [
        ({b"labels": [0]}, "needs keys"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "3072"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "label 10 outside"),
        ([1, 2, 3], "must be a dict"),
    ],
)
def test_malformed_batches(tmp_path, batch, fragment):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=fragment) as err:
        read_cifar_batch(path)
    assert str(path) in str(err.value)


def test_truncated_pickle_and_missing_batch(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_official(folder, n=10)
    raw = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cannot unpickle") as err:
        load_dataset("cifar10", data_dir=str(tmp_path))
    assert "test_batch" in str(err.value)
    (folder / "data_batch_4").unlink()
    with pytest.raises(DataError, match="data_batch_4"):
        load_dataset("cifar10", data_dir=str(tmp_path))


def test_subset_npz_errors(tmp_path):
    sub = tmp_path / "cifar10-subset"
    sub.mkdir()
    z = np.zeros((4, 32, 32, 3), np.uint8)
    np.savez(sub / "cifar.npz", x_train=z, y_train=np.arange(4))
    with pytest.raises(DataError, match=r"missing arrays \['x_test', 'y_test'\]"):
        load_dataset("cifar10", data_dir=str(tmp_path))
    np.savez(sub / "cifar.npz", x_train=z.transpose(0, 3, 1, 2), y_train=np.arange(4), x_test=z, y_test=np.arange(4))
    with pytest.raises(DataError, match="x_train must be uint8"):
        load_dataset("cifar10", data_dir=str(tmp_path))


def test_no_cifar_folder(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py.*cifar10-subset"):
        load_dataset("cifar10", data_dir=str(tmp_path))


def test_real_subset(shared_dataset):
    folder = shared_dataset("cifar10-subset")
    ds = load_dataset("cifar10", data_dir=str(folder.parent))
    assert len(ds.x_train) + len(ds.x_val) == 4000 and len(ds.x_test) == 1000
    assert ds.x_train.shape[1:] == (3, 32, 32) and ds.input_shape == (3, 32, 32)
    assert 0.0 <= float(ds.x_train.min()) and float(ds.x_train.max()) <= 1.0
    with np.load(next(folder.glob("*.npz"))) as z:
        x_test, y_test = z["x_test"], z["y_test"]
    assert ds.y_test.tolist() == y_test.astype(int).tolist()
    expect = x_test.transpose(0, 3, 1, 2).astype(np.float32) / 255
    np.testing.assert_array_equal(ds.x_test.numpy(), expect)
    # raw channels-last images preprocess to the same tensors
    assert torch.equal(preprocess_features(ds.preprocessing, x_test[:5]), ds.x_test[:5])
    assert set(ds.y_train.unique().tolist()) == set(range(10))

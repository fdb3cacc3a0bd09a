"""The registry, folder lookup, argument checks, splits (on digits), preprocessing and label decoding."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from selfexpand.data import (
    Dataset,
    dataset_names,
    decode_labels,
    load_dataset,
    preprocess_features,
    register_dataset,
)
from selfexpand.data import registry
from selfexpand.errors import ConfigError, DataError

BUILTIN = {"digits", "mnist", "fashion-mnist", "emnist-letters", "cifar10"}


def rows_of(*xs):
    """Sorted list of rows (as bytes) of the given tensors, for multiset comparisons."""
    return sorted(bytes(r) for x in xs for r in x.numpy().astype(np.float32))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_names_and_unknown_name():
    assert BUILTIN <= set(dataset_names()) and dataset_names() == sorted(dataset_names())
    with pytest.raises(ConfigError) as err:
        load_dataset("imagenet")
    msg = str(err.value)
    assert "'imagenet'" in msg and all(n in msg for n in BUILTIN)
    assert isinstance(err.value, ValueError)
    assert load_dataset(" Digits ").name == "digits"  # names are case-insensitive


@pytest.mark.parametrize("bad", [0, 0.0, 1, 1.0, -0.1, 1.5, float("nan"), "0.2", None, True])
def test_val_fraction_must_be_in_open_interval(bad):
    with pytest.raises(ConfigError) as err:
        load_dataset("digits", val_fraction=bad)
    assert "val_fraction" in str(err.value) and repr(bad) in str(err.value)


def test_bad_seed_and_target_for_named_dataset():
    with pytest.raises(ConfigError, match="seed must be an integer >= 0, got seed=1.5"):
        load_dataset("digits", seed=1.5)
    with pytest.raises(ConfigError, match=r"seed must be an integer >= 0, got seed=-1$"):  # not scikit-learn's words
        load_dataset("digits", seed=-1)
    with pytest.raises(ConfigError, match="target"):
        load_dataset("digits", target="label")


def test_digits_shapes_and_scaling(digits):
    ds = digits
    assert isinstance(ds, Dataset) and ds.task == "classification"
    assert ds.input_shape == (64,) and ds.n_features == 64 and ds.n_outputs == 10
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (1149, 288, 360)
    for x in (ds.x_train, ds.x_val, ds.x_test):
        assert x.dtype == torch.float32 and x.shape[1] == 64
        assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert float(ds.x_train.max()) == 1.0
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert y.dtype == torch.int64 and y.ndim == 1 and 0 <= int(y.min()) and int(y.max()) <= 9
    assert "Dataset(name='digits'" in repr(ds) and "train=1149" in repr(ds)


def test_digits_splits_partition_the_data(digits):
    raw = load_digits()
    expect = rows_of(torch.from_numpy((raw.data / 16).astype(np.float32)))
    assert rows_of(digits.x_train, digits.x_val, digits.x_test) == expect
    # labels travel with their rows
    full = {bytes(r.astype(np.float32)): int(t) for r, t in zip(raw.data / 16, raw.target)}
    for x, y in ((digits.x_train, digits.y_train), (digits.x_test, digits.y_test)):
        for r, t in list(zip(x.numpy(), y.tolist()))[:200]:
            assert full[bytes(r)] == t


def test_digits_splits_are_stratified(digits):
    overall = np.bincount(load_digits().target, minlength=10) / 1797
    for y, n in ((digits.y_test, 360), (digits.y_val, 288), (digits.y_train, 1149)):
        counts = np.bincount(y.numpy(), minlength=10)
        assert np.all(np.abs(counts - overall * n) <= 1.0), counts


def test_test_split_fixed_across_seeds_val_changes(digits):
    other = load_dataset("digits", seed=7)
    assert torch.equal(other.x_test, digits.x_test) and torch.equal(other.y_test, digits.y_test)
    assert not torch.equal(other.x_val, digits.x_val)
    assert rows_of(other.x_train, other.x_val) == rows_of(digits.x_train, digits.x_val)
    again = load_dataset("digits", seed=0)
    for part in ("x_train", "y_train", "x_val", "y_val"):
        assert torch.equal(getattr(again, part), getattr(digits, part))
    # a different val_fraction changes the val size but not the test set
    small = load_dataset("digits", val_fraction=0.1)
    assert len(small.x_val) == math.ceil(0.1 * 1437) and torch.equal(small.x_test, digits.x_test)


def test_preprocess_matches_loaded_tensors(digits):
    raw = load_digits()
    prep = json.loads(json.dumps(digits.preprocessing))  # JSON-able, and still works after a round trip
    x = preprocess_features(prep, raw.data)
    assert x.shape == (1797, 64) and x.dtype == torch.float32
    assert rows_of(x) == rows_of(digits.x_train, digits.x_val, digits.x_test)
    single = preprocess_features(prep, raw.images[5])  # one 8x8 image
    assert torch.equal(single, x[5:6])
    assert torch.equal(digits.preprocess(raw.data[:3].tolist()), x[:3])
    with pytest.raises(DataError, match="shape"):
        preprocess_features(prep, np.zeros((2, 63)))
    with pytest.raises(DataError, match="not finite"):
        preprocess_features(prep, np.full((1, 64), np.nan))
    with pytest.raises(DataError, match="numeric"):
        preprocess_features(prep, np.array([["a"] * 64]))


def test_cifar_style_channels_last_accepted():
    prep = {"input_shape": [3, 4, 4], "channels_last_shape": [4, 4, 3], "divide_by": 255.0}
    hwc = np.random.default_rng(0).integers(0, 256, size=(2, 4, 4, 3), dtype=np.uint8)
    chw = hwc.transpose(0, 3, 1, 2)
    a, b = preprocess_features(prep, hwc), preprocess_features(prep, chw)
    assert a.shape == (2, 3, 4, 4) and torch.equal(a, b)
    assert torch.equal(preprocess_features(prep, chw.reshape(2, -1)), a)
    assert a[1, 2, 3, 0].item() == pytest.approx(hwc[1, 3, 0, 2] / 255)


def test_decode_labels():
    prep = {"task": "classification", "class_labels": ["cat", "dog"]}
    assert decode_labels(prep, torch.tensor([1, 0, 1])) == ["dog", "cat", "dog"]
    assert decode_labels(prep, np.array([0])) == ["cat"]
    assert decode_labels(prep, 1) == ["dog"]
    with pytest.raises(ConfigError, match="class index 2 is out of range for 2 classes"):
        decode_labels(prep, [0, 2])
    with pytest.raises(ConfigError, match="integers"):
        decode_labels(prep, [0.5])
    assert decode_labels({"task": "classification", "n_outputs": 3}, [2, 0]) == [2, 0]


def test_missing_folder_messages(tmp_path, monkeypatch):
    monkeypatch.delenv("SELFEXPAND_DATA", raising=False)
    with pytest.raises(DataError) as err:
        load_dataset("mnist")
    assert "'mnist'" in str(err.value) and "SELFEXPAND_DATA" in str(err.value) and "--data-dir" in str(err.value)
    with pytest.raises(DataError) as err:
        load_dataset("emnist-letters", data_dir=str(tmp_path))
    msg = str(err.value)
    assert "'emnist-letters'" in msg and str(tmp_path) in msg and "SELFEXPAND_DATA" in msg
    monkeypatch.setenv("SELFEXPAND_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="SELFEXPAND_DATA="):
        load_dataset("fashion-mnist")


def test_register_custom_regression_dataset():
    rng = np.random.default_rng(0)

    @register_dataset("toy-regression")
    def toy(data_dir=None, **kw):
        x = rng.normal(size=(40, 3)) * 10 + 4
        meta = {"task": "regression", "standardize": True, "preprocessing": {"input_shape": [3]}}
        return x, x.sum(1), None, None, meta

    try:
        assert "toy-regression" in dataset_names()
        ds = load_dataset("toy-regression")
        assert ds.task == "regression" and ds.n_outputs == 1 and ds.y_train.shape == (len(ds.x_train), 1)
        assert ds.y_train.dtype == torch.float32 and (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (25, 7, 8)
        assert ds.x_train.mean(0).abs().max() < 1e-5 and len(ds.preprocessing["mean"]) == 3
    finally:
        del registry._REGISTRY["toy-regression"]
    assert "toy-regression" not in dataset_names()


@pytest.mark.parametrize(
    "result, error, fragment",
    [
        ((np.zeros((4, 2)), np.zeros(4)), ConfigError, "must return"),
        ((np.zeros((4, 2)), np.zeros(4), None, None, {"task": "ranking"}), ConfigError, "meta['task']"),
        ((np.zeros((4, 2)), np.zeros(3), None, None, {"task": "regression"}), DataError, "4 examples but 3 targets"),
        ((np.zeros((10, 2)), np.arange(10) % 2, np.zeros((2, 2)), np.array([0, 5]), {"task": "classification"}),
         DataError, "test class index out of range"),
    ],
)
def test_bad_loader_results(result, error, fragment):
    register_dataset("broken-loader", lambda data_dir=None, **kw: result)
    try:
        with pytest.raises(error) as err:
            load_dataset("broken-loader")
        assert fragment in str(err.value)
    finally:
        del registry._REGISTRY["broken-loader"]


def test_register_rejects_bad_names():
    with pytest.raises(ConfigError):
        register_dataset("my.csv", lambda d: None)
    with pytest.raises(ConfigError):
        register_dataset("x", "not callable")


def test_tiny_dataset_falls_back_or_fails_clearly(tmp_path):
    # one example of class 2: stratification is impossible, the split still works
    x = np.arange(40, dtype=float).reshape(20, 2)
    y = np.array([0] * 10 + [1] * 9 + [2])
    np.savez(tmp_path / "rare.npz", X=x, y=y)
    ds = load_dataset(str(tmp_path / "rare.npz"))
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 20 and ds.n_outputs == 3
    np.savez(tmp_path / "one.npz", X=x[:1], y=y[:1])
    with pytest.raises(DataError, match="too few examples"):
        load_dataset(str(tmp_path / "one.npz"))

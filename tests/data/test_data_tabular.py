"""The user's own CSV / NPZ tables: target rules, standardisation, prediction input, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from selfexpand.data import decode_labels, decode_targets, load_dataset, preprocess_features, read_features_file
from selfexpand.errors import ConfigError, DataError

SPECIES = ["setosa", "versicolor", "virginica"]


def write_csv(path, header, rows):
    lines = [",".join(header)] + [",".join(str(c) for c in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def flowers(tmp_path):
    """60 rows: id (unique), width, a constant column, and a string target in the middle."""
    rows = [[i, round(0.5 * i + (i % 3), 2), 7, SPECIES[(i * 7) % 3]] for i in range(60)]
    return write_csv(tmp_path / "flowers.csv", ["id", "width", "const", "species"], rows), rows


def raw_ids(ds, x):
    """Undo the standardisation to recover the ``id`` feature of each row."""
    mean, std = ds.preprocessing["mean"][0], ds.preprocessing["std"][0]
    return np.rint(x[:, 0].double().numpy() * std + mean).astype(int)


def test_string_target_classification_round_trip(flowers, tmp_path):
    path, rows = flowers
    ds = load_dataset(str(path), target="species")
    assert ds.name == "flowers" and ds.task == "classification" and ds.n_outputs == 3
    assert ds.input_shape == (3,) and ds.preprocessing["feature_names"] == ["id", "width", "const"]
    assert ds.preprocessing["class_labels"] == SPECIES and ds.preprocessing["target"] == "species"
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (38, 10, 12)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        ids = raw_ids(ds, x)
        assert decode_labels(ds.preprocessing, y) == [rows[i][3] for i in ids]
    # prediction input: columns in another order plus extras; the target is ignored
    shuffled = [[r[3], 0, r[2], r[1], r[0]] for r in rows]
    pred = write_csv(tmp_path / "new.csv", ["species", "extra", "const", "width", "id"], shuffled)
    raw = read_features_file(pred, ds.preprocessing)
    assert raw.shape == (60, 3)
    x_all = ds.preprocess(raw)
    ids = raw_ids(ds, ds.x_test)
    assert torch.equal(x_all[ids], ds.x_test)
    assert torch.equal(ds.preprocess(str(pred))[ids], ds.x_test)  # a path works too
    # the stored preprocessing is JSON and reproduces the same input
    prep = json.loads(json.dumps(ds.preprocessing))
    assert torch.equal(preprocess_features(prep, raw), x_all)


def test_standardisation_uses_training_split_only(flowers):
    path, rows = flowers
    ds = load_dataset(str(path), target="species", seed=3)
    train_ids = raw_ids(ds, ds.x_train)
    train = np.array([rows[i][:3] for i in train_ids], dtype=float)
    np.testing.assert_allclose(ds.preprocessing["mean"], train.mean(0), rtol=1e-12)
    np.testing.assert_allclose(ds.preprocessing["std"][:2], train.std(0)[:2], rtol=1e-12)
    everything = np.array([r[:3] for r in rows], dtype=float)
    assert abs(ds.preprocessing["mean"][0] - everything[:, 0].mean()) > 1e-6
    assert ds.preprocessing["std"][2] == 1.0  # constant column: std 0 -> 1
    assert torch.all(ds.x_train[:, 2] == 0)
    assert ds.x_train[:, :2].mean(0).abs().max() < 1e-5
    assert torch.allclose(ds.x_train[:, :2].std(0, unbiased=False), torch.ones(2), atol=1e-5)


def test_test_file_is_the_test_set(flowers, tmp_path):
    path, rows = flowers
    test_rows = [[1000 + i, 1e3, 7, SPECIES[i % 3]] for i in range(6)]
    reordered = [[r[3], r[2], r[1], r[0]] for r in test_rows]
    test = write_csv(tmp_path / "flowers_test.csv", ["species", "const", "width", "id"], reordered)
    ds = load_dataset(str(path), target="species", test_file=str(test))
    assert len(ds.x_test) == 6 and len(ds.x_train) + len(ds.x_val) == 60
    assert decode_labels(ds.preprocessing, ds.y_test) == [r[3] for r in test_rows]
    assert ds.preprocessing["mean"][0] < 60  # huge test ids do not leak into the statistics
    assert raw_ids(ds, ds.x_test).tolist() == [r[0] for r in test_rows]
    bad = write_csv(tmp_path / "bad_test.csv", ["id", "width", "const", "species"], [[1, 1, 7, "rose"]])
    with pytest.raises(DataError, match="unknown label 'rose' in target column 'species'") as err:
        load_dataset(str(path), target="species", test_file=str(bad))
    assert "bad_test.csv" in str(err.value)
    np.savez(tmp_path / "t.npz", X=np.zeros((2, 3)), y=np.zeros(2, int))
    with pytest.raises(ConfigError, match="test_file must be a .csv"):
        load_dataset(str(path), target="species", test_file=str(tmp_path / "t.npz"))


def test_regression_and_integer_targets(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    rows = [[a, b, 3 * a - b + 0.25] for a, b in x]
    path = write_csv(tmp_path / "reg.csv", ["a", "b", "y"], rows)
    ds = load_dataset(str(path), target="y")
    assert ds.task == "regression" and ds.n_outputs == 1
    assert ds.y_train.dtype == torch.float32 and ds.y_train.shape == (len(ds.x_train), 1)
    all_y = torch.cat([ds.y_train, ds.y_val, ds.y_test])  # standardised on the training split
    all_y = sorted(decode_targets(ds.preprocessing, all_y).squeeze(1).tolist())
    np.testing.assert_allclose(all_y, sorted(r[2] for r in rows), rtol=1e-5)
    with pytest.raises(ConfigError, match="regression"):
        decode_labels(ds.preprocessing, [0])
    # few distinct integers: classification with integer labels, sorted
    ints = write_csv(tmp_path / "ints.csv", ["a", "grade"], [[i, [10, -2, 3][i % 3]] for i in range(30)])
    ds = load_dataset(str(ints), target="grade")
    assert ds.task == "classification" and ds.preprocessing["class_labels"] == [-2, 3, 10]
    assert set(decode_labels(ds.preprocessing, ds.y_train)) == {-2, 3, 10}
    # many distinct integers (a count): regression
    counts = write_csv(tmp_path / "counts.csv", ["a", "n"], [[i, i * 3] for i in range(30)])
    assert load_dataset(str(counts), target="n").task == "regression"
    # integers written as decimals are a float target
    floats = write_csv(tmp_path / "f.csv", ["a", "y"], [[i, f"{i % 2}.0"] for i in range(30)])
    assert load_dataset(str(floats), target="y").task == "regression"


def test_quoted_fields_bom_and_blank_lines(tmp_path):
    path = tmp_path / "q.csv"
    body = '\ufeff"x 1","label"\n1.5,"a, b"\n\n2.5,c\n3.5,"a, b"\n4.5,c\n'
    path.write_text(body, encoding="utf-8")
    ds = load_dataset(str(path), target="label", val_fraction=0.25)
    assert ds.preprocessing["feature_names"] == ["x 1"] and ds.preprocessing["class_labels"] == ["a, b", "c"]
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 4


@pytest.mark.parametrize("bad", ["", "NA", "nan", "N/A", "null"])
def test_missing_feature_value(tmp_path, bad):
    rows = [[i, i % 2] for i in range(10)]
    rows[4][0] = bad
    path = write_csv(tmp_path / "miss.csv", ["f", "t"], rows)
    with pytest.raises(DataError, match=rf"missing value '{bad}' in feature column 'f' \(line 6\)") as err:
        load_dataset(str(path), target="t")
    assert "miss.csv" in str(err.value)


@pytest.mark.parametrize(
    "header, rows, target, fragment",
    [
        (["f", "g", "t"], [[1, "abc", 0], [2, 3, 1]], "t", "non-numeric value 'abc' in feature column 'g' (line 2)"),
        (["f", "t"], [[1, 0], [2, ""]], "t", "missing value '' in target column 't' (line 3)"),
        (["f", "t"], [[1, 0], [2, 1]], "label", "unknown target column 'label'; known columns: ['f', 't']"),
        (["f", "t"], [[1, 0], [2, 1]], None, "needs a target column"),
        (["f", "t"], [], "t", "no data rows"),
        (["f", "t"], [[1, 0], [2, 1, 5]], "t", "line 3 has 3 fields"),
        (["f", "f"], [[1, 0]], "f", "duplicate column names ['f']"),
        (["t"], [[1], [2]], "t", "no feature columns"),
        (["f", "t"], [["inf", 0], [1, 1]], "t", "non-finite value 'inf' in feature column 'f'"),
    ],
)
def test_csv_errors(tmp_path, header, rows, target, fragment):
    path = write_csv(tmp_path / "broken.csv", header, rows)
    with pytest.raises(DataError) as err:
        load_dataset(str(path), target=target)
    assert fragment in str(err.value) and str(path) in str(err.value)


def test_empty_unreadable_and_missing_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty CSV") as err:
        load_dataset(str(empty), target="t")
    assert str(empty) in str(err.value)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"a,t\n\xff\xfe\x00\x81,1\n")
    with pytest.raises(DataError, match="cannot read CSV") as err:
        load_dataset(str(binary), target="t")
    assert str(binary) in str(err.value)
    with pytest.raises(DataError, match="not found") as err:
        load_dataset(str(tmp_path / "nope.csv"), target="t")
    assert "nope.csv" in str(err.value)
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match="not a file"):
        load_dataset(str(tmp_path / "dir.csv"), target="t")


def test_relative_path_under_data_dir(flowers):
    path, _ = flowers
    ds = load_dataset("flowers.csv", data_dir=str(path.parent), target="species")
    assert ds.n_outputs == 3


# --- NPZ ----------------------------------------------------------------------------------------


def test_npz_classification_and_regression(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(loc=5.0, scale=3.0, size=(100, 4))
    y = np.repeat(np.array([3, 5, 9]), [40, 30, 30])
    np.savez(tmp_path / "c.npz", X=x, y=y)
    ds = load_dataset(str(tmp_path / "c.npz"))
    assert ds.task == "classification" and ds.n_outputs == 3 and ds.input_shape == (4,)
    assert ds.preprocessing["class_labels"] == [3, 5, 9] and ds.preprocessing["feature_names"] is None
    # stratified test fifth: 8/6/6
    assert torch.bincount(ds.y_test, minlength=3).tolist() == [8, 6, 6]
    assert ds.x_train.dtype == torch.float32 and ds.x_train.mean(0).abs().max() < 1e-5
    # prediction from an NPZ ``X`` and from a header-less CSV with the same features
    np.savez(tmp_path / "p.npz", X=x[:5])
    got = ds.preprocess(read_features_file(tmp_path / "p.npz", ds.preprocessing))
    csv = write_csv(tmp_path / "p.csv", ["a", "b", "c", "d"], x[:5].tolist())
    assert torch.allclose(ds.preprocess(read_features_file(csv, ds.preprocessing)), got)
    mean, std = np.array(ds.preprocessing["mean"]), np.array(ds.preprocessing["std"])
    np.testing.assert_allclose(got.numpy(), (x[:5] - mean) / std, rtol=1e-5, atol=1e-6)

    np.savez(tmp_path / "r.npz", X=x, y=x @ np.arange(4.0))
    ds = load_dataset(str(tmp_path / "r.npz"))
    assert ds.task == "regression" and ds.y_train.shape == (len(ds.x_train), 1)
    np.savez(tmp_path / "r2.npz", X=x, y=x[:, :2].astype(np.float32))
    ds = load_dataset(str(tmp_path / "r2.npz"))
    assert ds.n_outputs == 2 and ds.y_test.shape == (20, 2)
    np.savez(tmp_path / "s.npz", X=x[:10], y=np.array(["b", "a"] * 5))
    ds = load_dataset(str(tmp_path / "s.npz"), val_fraction=0.5)
    assert ds.preprocessing["class_labels"] == ["a", "b"]


@pytest.mark.parametrize(
    "arrays, fragment",
    [
        (dict(X=np.zeros((4, 2))), "missing arrays ['y']"),
        (dict(y=np.zeros(4)), "missing arrays ['X']"),
        (dict(X=np.zeros(4), y=np.zeros(4)), "X must be 2-D"),
        (dict(X=np.zeros((4, 2)), y=np.zeros(3, int)), "X has 4 rows but y has 3"),
        (dict(X=np.array([[1.0, np.nan]] * 4), y=np.arange(4)), "non-finite"),
        (dict(X=np.array([["a", "b"]] * 4), y=np.arange(4)), "X must be numeric"),
        (dict(X=np.zeros((4, 2)), y=np.zeros((4, 2), int)), "y must be 1-D"),
        (dict(X=np.zeros((4, 2)), y=np.array([1.0, np.nan, 2.0, 3.0])), "y has missing/non-finite values at rows [1]"),
    ],
)
def test_npz_errors(tmp_path, arrays, fragment):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as err:
        load_dataset(str(path))
    assert fragment in str(err.value) and str(path) in str(err.value)


def test_npz_not_a_zip_and_pickled_objects(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a valid .npz file"):
        load_dataset(str(path))
    obj = np.array([{"a": 1}] * 4, dtype=object)
    np.savez(tmp_path / "obj.npz", X=np.zeros((4, 1)), y=obj)
    with pytest.raises(DataError, match="array 'y' holds Python objects") as err:  # allow_pickle=False
        load_dataset(str(tmp_path / "obj.npz"))
    assert "allow_pickle" not in str(err.value) and "pickle.load" not in str(err.value)


def test_read_features_file_errors(flowers, tmp_path):
    path, _ = flowers
    ds = load_dataset(str(path), target="species")
    partial = write_csv(tmp_path / "partial.csv", ["id", "const"], [[1, 7]])
    with pytest.raises(DataError, match=r"missing feature columns \['width'\]") as err:
        read_features_file(partial, ds.preprocessing)
    assert "partial.csv" in str(err.value)
    with pytest.raises(DataError, match="unsupported features file type '.txt'"):
        read_features_file(tmp_path / "x.txt", ds.preprocessing)
    np.savez(tmp_path / "noX.npz", x=np.zeros((2, 3)))
    with pytest.raises(DataError, match=r"missing arrays \['X'\]"):
        read_features_file(tmp_path / "noX.npz", ds.preprocessing)
    with pytest.raises(DataError, match="shape"):
        ds.preprocess(np.zeros((2, 4)))

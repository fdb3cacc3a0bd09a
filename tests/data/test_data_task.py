"""``task=`` (``--task``) over the CSV / NPZ target rule, standardised regression targets and
``decode_targets``, and the small refusals: an ``.npz`` that is not one, ``target`` for an ``.npz``,
a contradicting ``task`` for a named dataset."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from selfexpand.data import decode_targets, load_dataset
from selfexpand.errors import ConfigError, DataError


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(str(c) for c in r) for r in rows]) + "\n")
    return path


@pytest.fixture
def sixty_classes(tmp_path):
    """240 rows, an integer label 0..59 (more than 50 distinct: the rule says regression)."""
    rows = [[i % 7, (i * 3) % 11, i % 60] for i in range(240)]
    return write_csv(tmp_path / "sixty.csv", ["a", "b", "label"], rows)


def test_task_classification_overrides_the_integer_rule(sixty_classes, tmp_path):
    assert load_dataset(str(sixty_classes), target="label").task == "regression"  # the rule, unchanged
    ds = load_dataset(str(sixty_classes), target="label", task="classification")
    assert ds.task == "classification" and ds.n_outputs == 60 and ds.y_train.dtype == torch.int64
    assert ds.preprocessing["class_labels"] == list(range(60)) and "target_mean" not in ds.preprocessing
    # whole numbers written as decimals are labels too; the test file follows the training file's classes
    floats = write_csv(tmp_path / "f.csv", ["a", "y"], [[i, f"{i % 3}.0"] for i in range(30)])
    test = write_csv(tmp_path / "f_test.csv", ["a", "y"], [[i, i % 3] for i in range(6)])
    ds = load_dataset(str(floats), target="y", task="classification", test_file=str(test))
    assert ds.preprocessing["class_labels"] == [0, 1, 2] and ds.y_test.tolist() == [0, 1, 2, 0, 1, 2]


def test_task_regression_overrides_the_class_rule(tmp_path):
    path = write_csv(tmp_path / "stars.csv", ["a", "stars"], [[i, 1 + i % 5] for i in range(50)])
    assert load_dataset(str(path), target="stars").task == "classification"
    ds = load_dataset(str(path), target="stars", task="regression")
    assert ds.task == "regression" and ds.n_outputs == 1 and ds.y_train.dtype == torch.float32
    text = write_csv(tmp_path / "text.csv", ["a", "kind"], [[i, "ab"[i % 2]] for i in range(20)])
    with pytest.raises(DataError, match=r"non-numeric value 'a' in target column 'kind'"):
        load_dataset(str(text), target="kind", task="regression")


def test_task_classification_refuses_a_fractional_target(tmp_path):
    path = write_csv(tmp_path / "price.csv", ["a", "price"], [[i, 1.5 + i] for i in range(20)])
    with pytest.raises(DataError) as err:
        load_dataset(str(path), target="price", task="classification")
    assert "'price'" in str(err.value) and "'1.5'" in str(err.value) and "price.csv" in str(err.value)
    x = np.arange(40.0).reshape(20, 2)
    np.savez(tmp_path / "f.npz", X=x, y=np.linspace(0, 1, 20))
    with pytest.raises(DataError, match=r"y has the value .* not a whole number"):
        load_dataset(str(tmp_path / "f.npz"), task="classification")


def test_npz_task_override(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 3))
    np.savez(tmp_path / "w.npz", X=x, y=np.arange(40) % 4 * 1.0)  # whole numbers stored as float
    assert load_dataset(str(tmp_path / "w.npz")).task == "regression"
    ds = load_dataset(str(tmp_path / "w.npz"), task="classification")
    assert ds.task == "classification" and ds.preprocessing["class_labels"] == [0, 1, 2, 3]
    np.savez(tmp_path / "i.npz", X=x, y=np.arange(40) % 4)
    ds = load_dataset(str(tmp_path / "i.npz"), task="regression")
    assert ds.task == "regression" and ds.y_train.dtype == torch.float32 and "target_mean" in ds.preprocessing
    np.savez(tmp_path / "s.npz", X=x, y=np.array(["a", "b"] * 20))
    with pytest.raises(DataError, match="y must be numeric for regression"):
        load_dataset(str(tmp_path / "s.npz"), task="regression")


@pytest.mark.parametrize("bad", ["classify", "Regression", "", 1])
def test_task_must_be_one_of_the_two(sixty_classes, bad):
    with pytest.raises(ConfigError, match="task must be one of"):
        load_dataset(str(sixty_classes), target="label", task=bad)


def test_named_dataset_task_is_fixed():
    with pytest.raises(ConfigError, match="'digits' is a classification task; task='regression'"):
        load_dataset("digits", task="regression")
    with pytest.raises(ConfigError, match="'bessel' is a regression task"):
        load_dataset("bessel", task="classification")
    assert load_dataset("bessel", task="regression").task == "regression"  # agreeing is fine


def test_regression_targets_are_standardised_on_the_training_split(tmp_path):
    """An integer target 0..199 (regression by the rule): trained on standardised values, decoded back."""
    rows = [[i % 13, (i * 7) % 5, i] for i in range(200)]
    path = write_csv(tmp_path / "counts.csv", ["a", "b", "n"], rows)
    ds = load_dataset(str(path), target="n")
    prep = ds.preprocessing
    assert ds.task == "regression" and len(prep["target_mean"]) == 1 and len(prep["target_std"]) == 1
    assert abs(float(ds.y_train.mean())) < 1e-5 and abs(float(ds.y_train.std(unbiased=False)) - 1) < 1e-4
    train_raw = decode_targets(prep, ds.y_train).double()  # the statistics are the training split's own
    assert train_raw.mean().item() == pytest.approx(prep["target_mean"][0], abs=1e-3)
    assert train_raw.std(unbiased=False).item() == pytest.approx(prep["target_std"][0], rel=1e-4)
    assert 45 < prep["target_std"][0] < 75 and 80 < prep["target_mean"][0] < 120  # 0..199's spread and middle
    everything = torch.cat([ds.y_train, ds.y_val, ds.y_test])
    decoded = sorted(decode_targets(prep, everything).squeeze(1).tolist())
    np.testing.assert_allclose(decoded, list(range(200)), atol=1e-3)
    # the val and test splits use the training statistics, not their own
    test_raw = decode_targets(prep, ds.y_test)
    expected = (float(test_raw.mean()) - prep["target_mean"][0]) / prep["target_std"][0]
    assert abs(float(ds.y_test.mean()) - expected) < 1e-5 and abs(float(ds.y_test.mean())) > 1e-3


def test_constant_and_several_target_columns(tmp_path):
    x = np.random.default_rng(1).normal(size=(30, 2))
    y = np.stack([x[:, 0] * 100 + 5, np.full(30, 3.0)], axis=1)
    np.savez(tmp_path / "two.npz", X=x, y=y)
    ds = load_dataset(str(tmp_path / "two.npz"))
    assert ds.preprocessing["target_std"][1] == 1.0 and ds.preprocessing["target_mean"][1] == 3.0
    assert torch.all(ds.y_train[:, 1] == 0)  # only centred
    assert 50 < ds.preprocessing["target_std"][0] < 200
    back = decode_targets(ds.preprocessing, ds.y_test)
    assert back.shape == ds.y_test.shape and torch.allclose(back[:, 1], torch.full((len(back),), 3.0))
    with pytest.raises(ConfigError, match="3 columns"):
        decode_targets(ds.preprocessing, torch.zeros(4, 3))


def test_generated_tasks_and_classification_keep_their_scale():
    ds = load_dataset("bessel")
    assert "target_mean" not in ds.preprocessing and float(ds.y_test.max()) == pytest.approx(1.0, abs=1e-3)
    y = torch.randn(5, 1)
    assert decode_targets(ds.preprocessing, y) is y
    assert "target_mean" not in load_dataset("teacher-student").preprocessing
    digits = load_dataset("digits")
    assert decode_targets(digits.preprocessing, y) is y


def test_decode_targets_of_one_column_keeps_shape():
    prep = {"target_mean": [10.0], "target_std": [2.0]}
    assert decode_targets(prep, torch.tensor([0.0, 1.0])).tolist() == [10.0, 12.0]
    assert decode_targets(prep, torch.tensor([[0.5]], dtype=torch.float64)).dtype == torch.float64


def test_random_bytes_are_not_an_npz_and_no_unpickling_is_suggested(tmp_path):
    path = tmp_path / "random.npz"
    path.write_bytes(np.random.default_rng(0).bytes(512))
    with pytest.raises(DataError) as err:
        load_dataset(str(path))
    message = str(err.value)
    assert "not a valid .npz file" in message and str(path) in message
    assert "pickle" not in message.lower()
    np.save(tmp_path / "one.npy", np.zeros(3))
    os.replace(tmp_path / "one.npy", tmp_path / "one.npz")  # a lone .npy under an .npz name
    with pytest.raises(DataError, match="not a valid .npz file"):
        load_dataset(str(tmp_path / "one.npz"))


def test_target_for_an_npz_is_refused(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((10, 2)), y=np.arange(10) % 2)
    with pytest.raises(ConfigError, match="is for CSV files; an .npz holds the arrays X and y"):
        load_dataset(str(tmp_path / "d.npz"), target="label")


def test_negative_seed_is_refused_before_the_split(sixty_classes):
    with pytest.raises(ConfigError, match=r"seed must be an integer >= 0, got seed=-1"):
        load_dataset(str(sixty_classes), target="label", seed=-1)


def test_the_guides_example_tables_are_what_make_data_writes_and_load():
    """``examples/data/*.csv`` (the guide's CSV examples) are ``examples/make_data.py``'s output, and
    each loads as the guide says."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "examples"
    spec = importlib.util.spec_from_file_location("make_data", root / "make_data.py")
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    tables = make_data.tables()
    for name, text in tables.items():
        assert (root / "data" / name).read_text() == text, f"examples/data/{name}: run examples/make_data.py"
        assert len(text) < 10_000
    data = root / "data"
    flowers = load_dataset(str(data / "flowers.csv"), target="species", test_file=str(data / "flowers-test.csv"))
    assert flowers.task == "classification" and flowers.n_outputs == 3 and len(flowers.x_test) == 30
    houses = load_dataset(str(data / "houses.csv"), target="price")
    assert houses.task == "regression" and houses.preprocessing["target_std"][0] > 50
    assert load_dataset(str(data / "ratings.csv"), target="stars").task == "classification"
    assert load_dataset(str(data / "ratings.csv"), target="stars", task="regression").task == "regression"
    assert load_dataset(str(data / "zones.csv"), target="zone").task == "regression"
    assert load_dataset(str(data / "zones.csv"), target="zone", task="classification").n_outputs == 60
    assert flowers.preprocess(data / "new-flowers.csv").shape == (6, 4)

"""A sweep on the user's own table (``data_options``), its metric in the target's unit, and the size
estimate that refuses a sweep too large for memory before anything is allocated."""

from __future__ import annotations

import json

import numpy as np
import pytest

from selfexpand import estimate
from selfexpand.errors import ConfigError, DataError, ResourceError
from selfexpand.sweep import run_sweep, write_sweep
from selfexpand.sweep import runner


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(str(c) for c in r) for r in rows]) + "\n")
    return path


@pytest.fixture
def prices(tmp_path):
    """``price = 1000 x + 500`` (+ noise): a target far from unit scale."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(80, 2))
    y = 1000 * x[:, 0] + 500 + rng.normal(scale=10, size=80)
    return write_csv(tmp_path / "prices.csv", ["a", "b", "price"], [[f"{p:.4f}", f"{q:.4f}", f"{v:.3f}"]
                                                                     for (p, q), v in zip(x, y)])


def test_size_sweep_on_a_csv_reports_in_the_targets_unit(prices, tmp_path):
    result = run_sweep("size-weight", str(prices), {}, 2, epochs=5, starts=("growing",),
                       data_options={"target": "price"})
    assert result.metric_name == "mse" and len(result.rows) == 2
    # trained on standardised targets (an untrained net's mse there is about 1); reported in price units
    from selfexpand.data import load_dataset

    std = load_dataset(str(prices), target="price").preprocessing["target_std"][0]
    assert 300 < std < 1000
    for row in result.rows:
        assert 0.05 * std ** 2 < row["test_metric"] < 5 * std ** 2
        assert row["test_loss"] == row["test_metric"] and row["train_loss"] > 0.05 * std ** 2
    out = write_sweep(result, tmp_path / "sweep")
    assert json.loads((out / "sweep.json").read_text())["data_options"] == {"target": "price"}


def test_batched_and_one_by_one_decode_alike(prices):
    kw = dict(epochs=3, data_options={"target": "price"}, starts=("growing", "fixed"))
    batched = run_sweep("size-weight", str(prices), {"lambda": [0.1, 1.0]}, 1, **kw)
    single = run_sweep("size-weight", str(prices), {"lambda": [0.1, 1.0]}, 1, batched=False, **kw)
    for a, b in zip(batched.rows, single.rows):
        assert a["test_metric"] == pytest.approx(b["test_metric"], rel=1e-4)


def test_controller_sweep_on_a_csv_classification_with_task(tmp_path):
    rows = [[i % 5, (i * 3) % 7, 10 * (i % 3)] for i in range(60)]  # labels 0, 10, 20
    path = write_csv(tmp_path / "grades.csv", ["a", "b", "grade"], rows)
    result = run_sweep("controller-mask", str(path), {}, 1, epochs=3,
                       data_options={"target": "grade", "task": "classification", "val_fraction": 0.25})
    assert result.metric_name == "accuracy" and all(0 <= r["test_metric"] <= 1 for r in result.rows)
    regression = run_sweep("controller-mask", str(path), {}, 1, epochs=3,
                           data_options={"target": "grade", "task": "regression"})
    assert regression.metric_name == "mse"


def test_sweep_data_options_are_checked(prices):
    with pytest.raises(ConfigError, match=r"data_options takes .*got \['targte'\]"):
        run_sweep("size-weight", str(prices), {}, 1, epochs=1, data_options={"targte": "price"})
    with pytest.raises(DataError, match="needs a target column"):
        run_sweep("size-weight", str(prices), {}, 1, epochs=1)
    with pytest.raises(ConfigError, match="task must be one of"):
        run_sweep("size-weight", str(prices), {}, 1, epochs=1, data_options={"target": "price", "task": "x"})


def _no_build(*args, **kwargs):
    raise AssertionError("the sweep allocated its runs before its size was checked")


def test_a_sweep_of_a_hundred_million_seeds_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(estimate, "available_memory", lambda device="cpu": 64 * 10 ** 9)
    monkeypatch.setattr(runner, "_build", _no_build)
    monkeypatch.setattr(runner, "size_net_init", _no_build)
    with pytest.raises(ResourceError) as err:
        run_sweep("size-weight", "bessel", {}, 100_000_000)
    message = str(err.value)
    assert message.startswith("the sweep (200,000,000 runs: 100,000,000 seeds x 1 grid point x 2 starts) needs ")
    assert " TB (" in message and "64 GB available: use fewer seeds (--seeds)" in message
    assert err.value.exit_code == 2


def test_the_sweep_estimate_counts_its_runs(monkeypatch):
    small = runner.sweep_bytes(runs=10, seeds=5, n_in=1, n_max=9, n_out=1, n_train=32, n_test=256)
    double = runner.sweep_bytes(runs=20, seeds=10, n_in=1, n_max=9, n_out=1, n_train=32, n_test=256)
    assert double["bytes"] == 2 * small["bytes"]
    one_by_one = runner.sweep_bytes(runs=20, seeds=10, n_in=1, n_max=9, n_out=1, n_train=32, n_test=256,
                                    batched=False)
    assert one_by_one["bytes"] < double["bytes"]
    # a sweep that fits runs; the same with too little memory is refused before its runs are built
    monkeypatch.setattr(runner, "_build", _no_build)
    monkeypatch.setattr(estimate, "available_memory", lambda device="cpu": small["bytes"])
    with pytest.raises(ResourceError, match="grid values"):
        run_sweep("size-weight", "bessel", {"lambda": [0.1, 1, 10, 100]}, 2)

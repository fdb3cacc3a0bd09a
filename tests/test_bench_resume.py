"""``run_bench`` on the user's CSV (``data_options``), ``results.csv`` written as runs finish, ``resume``
keeping finished runs and continuing interrupted ones, and the refusals made before any run starts:
a bad data option, a missing target, start networks that cannot fit in memory."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

import selfexpand.runs as runs
from selfexpand import estimate
from selfexpand.bench import run_bench, runner
from selfexpand.errors import ConfigError, DataError, ResourceError

SPECIES = ["setosa", "versicolor", "virginica"]
DATA = {"target": "species", "task": "classification", "val_fraction": 0.25}


@pytest.fixture
def flowers(tmp_path):
    rows = [f"{(i % 7) / 3:.3f},{(i * 5 % 11) / 4:.3f},{i % 3 + (i % 5) / 10:.2f},{SPECIES[i % 3]}" for i in range(90)]
    path = tmp_path / "flowers.csv"
    path.write_text("a,b,c,species\n" + "\n".join(rows) + "\n")
    return str(path)


def _table(path):
    with open(path) as f:
        return list(csv.DictReader(f))


class _Stop(Exception):
    pass


def _spy(monkeypatch, name):
    """Count the calls of ``selfexpand.runs.<name>`` (by run directory), calling it through."""
    calls = []
    real = getattr(runs, name)

    def spy(config_or_dir, *args, **kwargs):
        calls.append(str(getattr(config_or_dir, "out", config_or_dir)))
        return real(config_or_dir, *args, **kwargs)

    monkeypatch.setattr(runs, name, spy)
    return calls


def test_bench_on_a_csv_interrupted_then_resumed(flowers, tmp_path, monkeypatch):
    out = tmp_path / "bench"
    real_job = runner.method_job

    def stop_at_second(*args):
        if args[2] == 1:  # seed 1: the bench is interrupted here
            raise _Stop()
        return real_job(*args)

    monkeypatch.setattr(runner, "method_job", stop_at_second)
    with pytest.raises(_Stop):
        run_bench(flowers, ["zero"], 2, out, epochs=1, front=False, data_options=DATA)
    # what finished is in results.csv already
    first = _table(out / "results.csv")
    assert [(r["seed"], r["kind"]) for r in first][:2] == [("0", "grown"), ("0", "twin")]
    assert all(r["error"] == "" for r in first)
    for name in ("zero-seed0", "zero-seed0-twin"):
        config = yaml.safe_load((out / "runs" / name / "config.yaml").read_text())
        assert config["target"] == "species" and config["val_fraction"] == 0.25
        assert config.get("task") == "classification"  # the twin copies the data options too
    (out / "runs" / "zero-seed1").mkdir()  # interrupted before anything was written
    monkeypatch.setattr(runner, "method_job", real_job)

    # a resumed bench with other settings is refused before it runs anything
    with pytest.raises(ConfigError, match=r"zero-seed0 was made with epochs=1, this bench asks for epochs=2"):
        run_bench(flowers, ["zero"], 2, out, epochs=2, front=False, data_options=DATA, resume=True)
    with pytest.raises(ConfigError, match="target"):
        run_bench(flowers, ["zero"], 2, out, epochs=1, front=False, resume=True,
                  data_options={**DATA, "target": "c", "task": "regression"})

    trained = _spy(monkeypatch, "train_run")
    rows = run_bench(flowers, ["zero"], 2, out, epochs=1, front=False, data_options=DATA, resume=True)
    assert all(str(out / "runs" / "zero-seed1") in c for c in trained) and len(trained) == len(first)
    assert [(r["seed"], r["kind"]) for r in rows] == [(s, r["kind"]) for s in (0, 1) for r in first]
    kept = [r for r in rows if r["seed"] == 0]
    assert [r["test_metric"] for r in kept] == [pytest.approx(float(r["test_metric"])) for r in first]
    assert len(_table(out / "results.csv")) == len(rows)

    # a run interrupted after its last checkpoint continues from it; nothing else runs again
    twin = out / "runs" / "zero-seed1-twin"
    before = json.loads((twin / "summary.json").read_text())
    (twin / "summary.json").unlink()
    (twin / "model.safetensors").unlink()
    trained.clear()
    resumed = _spy(monkeypatch, "resume_run")
    again = run_bench(flowers, ["zero"], 2, out, epochs=1, front=False, data_options=DATA, resume=True)
    assert trained == [] and resumed == [str(twin)]
    after = next(r for r in again if r["seed"] == 1 and r["kind"] == "twin")
    assert after["test_metric"] == pytest.approx(before["test_metric"]) and after["error"] == ""


def test_bench_refuses_bad_data_before_running(flowers, tmp_path):
    with pytest.raises(ConfigError, match=r"data_options takes .*\['tagret'\]"):
        run_bench(flowers, ["zero"], 1, tmp_path / "a", data_options={"tagret": "species"})
    with pytest.raises(DataError, match="needs a target column"):
        run_bench(flowers, ["zero"], 1, tmp_path / "b")
    with pytest.raises(ConfigError, match="'digits' is a classification task"):
        run_bench("digits", ["zero"], 1, tmp_path / "c", data_options={"task": "regression"})
    assert not any((tmp_path / d / "runs").exists() for d in "abc")


def test_bench_refuses_start_networks_that_cannot_fit(tmp_path, monkeypatch):
    monkeypatch.setattr(estimate, "available_memory", lambda device="cpu": 8 * 10 ** 9)
    with pytest.raises(ResourceError) as err:
        run_bench("digits", ["zero", "static"], 1, tmp_path / "b", settings={"hidden": "[60000, 60000]"})
    message = str(err.value)
    assert "needs 57.7 GB" in message and "hidden=[60000, 60000]" in message and "8 GB available" in message
    assert "use smaller `hidden`" in message and not (tmp_path / "b" / "runs").exists()
    # two runs at once need twice the memory
    need = estimate.start_bytes({"hidden": [2000, 2000], "optimizer": "adam", "batch_size": 32}, 64, 10,
                                n_train=1149)["bytes"]
    monkeypatch.setattr(estimate, "available_memory", lambda device="cpu": 1.5 * need / estimate.FIT_FRACTION)
    with pytest.raises(ResourceError, match="2 runs at once .*fewer --jobs"):
        run_bench("digits", ["zero"], 2, tmp_path / "c", settings={"hidden": "[2000, 2000]"}, jobs=2)

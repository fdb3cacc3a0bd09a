"""``--dtype`` (issue #27): a run trains in float32 (the default) or float64, end to end and through a resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from clikit import GROW_FAST, run_main, run_ok
from selfexpand.errors import ConfigError
from selfexpand.runs import RunConfig, train_run
from selfexpand.train.trainer import Trainer


def _final(run_dir) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model.safetensors"))


def test_a_float64_run_trains_grows_and_resumes_in_float64(tmp_path):
    resumed, fresh = tmp_path / "resumed", tmp_path / "fresh"
    run_ok("train", "--dtype", "float64", "--epochs", "3", "--quiet", "--out", resumed, *GROW_FAST)
    assert "dtype: float64" in (resumed / "config.yaml").read_text()
    assert json.loads((resumed / "run.json").read_text())["identity"]["dtype"] == "float64"
    run_ok("resume", resumed, "--epochs", "6", "--quiet")
    run_ok("train", "--dtype", "float64", "--epochs", "6", "--quiet", "--out", fresh, *GROW_FAST)
    a, b = _final(resumed), _final(fresh)
    floats = [k for k, v in a.items() if v.is_floating_point()]
    assert floats and all(a[k].dtype == torch.float64 for k in floats)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the resume is exact
    records = [json.loads(line) for line in (fresh / "history.jsonl").read_text().splitlines()]
    assert any(r["type"] == "growth" for r in records)


def test_float32_stays_the_default_and_out_of_the_identity(tmp_path):
    """Runs made before ``dtype`` existed (float32, no key in run.json) keep resuming."""
    out = tmp_path / "run"
    run_ok("train", "--epochs", "2", "--quiet", "--out", out, *GROW_FAST)
    assert "dtype" not in json.loads((out / "run.json").read_text())["identity"]
    assert all(v.dtype == torch.float32 for v in _final(out).values() if v.is_floating_point())
    float64 = tmp_path / "run64"
    run_ok("train", "--dtype", "float64", "--epochs", "2", "--quiet", "--out", float64, *GROW_FAST)
    a, b = _final(out), _final(float64)
    assert not all(torch.equal(a[k].double(), b[k]) for k in a)  # the type changed the training


def test_a_bad_dtype_is_refused_before_any_work(tmp_path):
    status, _, err = run_main("train", "--dtype", "float16", "--out", tmp_path / "x")
    assert status == 2 and "float16" in err and not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="dtype must be one of"):
        train_run(RunConfig(dtype="half", epochs=1, out=str(tmp_path / "y")))
    assert not (tmp_path / "y").exists()
    with pytest.raises(ConfigError, match="dtype must be float32 or float64"):
        Trainer(dtype=torch.float16)


def test_the_trainer_converts_the_model_and_the_floating_data():
    from selfexpand.data import load_dataset
    from selfexpand.graph import GrowableNet

    data = load_dataset("digits", seed=0)
    model = GrowableNet.mlp([64, 10], seed=0)
    result = Trainer(dtype="float64", epochs=1, batch_size=64).fit(model, data)
    assert all(p.dtype == torch.float64 for p in result.model.parameters())
    assert data.x_train.dtype == torch.float32  # the caller's data is not changed

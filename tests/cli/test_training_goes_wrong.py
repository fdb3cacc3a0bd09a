"""Training that has gone wrong says so (issue #23): a non-finite loss stops the run with its reason,
keeps the last good checkpoint, writes ``null`` (never ``NaN``) and exits 3; ``resume --lr`` then
finishes it. Warnings: a single class, a method that cannot grow, a budget below the start,
divergence."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from clikit import read_history, read_summary, run_main, run_ok, write_regression_csv
from selfexpand.checkpoint import load_checkpoint
from selfexpand.data import load_dataset
from selfexpand.errors import ConfigError, TrainingStopped
from selfexpand.runs import RunConfig, resume_run, train_run
from selfexpand.train import Trainer
from selfexpand.train.callbacks import Callback


class _Poison(Callback):
    """Turns a weight into NaN during the third epoch (a planted blow-up)."""

    def on_batch_end(self, ctx, **kwargs):
        if ctx.epoch == 2:
            with torch.no_grad():
                next(ctx.model.parameters()).fill_(float("nan"))


def _json_files(run_dir: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in run_dir.rglob("*") if p.suffix in (".json", ".jsonl")}


def test_a_nan_loss_stops_the_run_keeps_the_last_good_checkpoint_and_resume_lr_finishes(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingStopped) as caught:
        train_run(RunConfig(epochs=5, out=str(out), lr=0.01), callbacks=[_Poison()])
    err = caught.value
    assert err.exit_code == 3 and err.run_dir == str(out)
    assert str(err).startswith("training stopped at epoch 3: non-finite training loss (nan); the last good "
                               "checkpoint (epoch 1) is kept: resume with a smaller --lr")
    ckpt = load_checkpoint(out / "checkpoint" / "last.safetensors")
    assert ckpt.extra["trainer"]["epoch"] == 1
    assert all(bool(torch.isfinite(p).all()) for p in ckpt.model.parameters())
    for name, text in _json_files(out).items():
        assert "NaN" not in text and "Infinity" not in text, name
    summary = read_summary(out)
    assert summary["stopped"] == {"epoch": 3, "reason": "non-finite training loss (nan)", "kept_epoch": 1}
    assert summary["test_metric"] is None and summary["epochs"] == 3
    assert read_history(out)[-1]["train_loss"] is None
    assert not (out / "model.safetensors").exists()
    run_dir, summary = resume_run(out, lr=0.001)
    assert summary["stopped"] is None and summary["epochs"] == 5 and math.isfinite(summary["test_metric"])
    assert [r["epoch"] for r in read_history(out) if r["type"] == "epoch"] == [1, 2, 3, 4, 5]
    identity = json.loads((out / "run.json").read_text())
    assert identity["stopped"] is None
    assert [(c["setting"], c["from"], c["to"], c["at_epoch"]) for c in identity["changes"]] == [("lr", 0.01, 0.001, 1)]
    assert yaml.safe_load((out / "config.yaml").read_text())["lr"] == 0.001
    with pytest.raises(ConfigError, match="lr changes the run"):  # no longer stopped: lr is the run's again
        resume_run(out, epochs=6, lr=0.0001)


def test_the_cli_exits_3_on_a_nan_loss_and_resume_lr_finishes(tmp_path, monkeypatch):
    import selfexpand.train.progress as progress

    monkeypatch.setattr(progress, "ProgressBar", _Poison)  # the CLI's callback, poisoned
    out = tmp_path / "run"
    code, _, err = run_main("train", "--epochs", 4, "--out", out, "--lr", "0.01")
    lines = [ln for ln in err.splitlines() if ln.startswith("selfexpand: error:")]
    assert code == 3 and len(lines) == 1 and "Traceback" not in err
    assert "non-finite training loss" in lines[0] and "--lr" in lines[0]
    code, _, err = run_main("resume", out, "--quiet", "--lr", "0.002")
    assert code == 0, err
    assert read_summary(out)["epochs"] == 4


def test_resume_lr_is_refused_for_a_run_that_did_not_stop(tmp_path):
    out = tmp_path / "run"
    run_ok("train", "--method", "static", "--epochs", 1, "--out", out, "--quiet")
    code, _, err = run_main("resume", out, "--epochs", 2, "--lr", "0.5", "--quiet")
    assert code == 2 and "lr changes the run" in err
    assert read_summary(out)["epochs"] == 1


def test_a_non_finite_validation_loss_stops_the_trainer():
    data = load_dataset("digits", seed=0)
    x_val = data.x_val.clone()
    x_val[0, 0] = float("nan")
    data = dataclasses.replace(data, x_val=x_val)
    from selfexpand.graph import GrowableNet

    trainer = Trainer(epochs=4, lr=0.01)
    result = trainer.fit(GrowableNet.mlp([64, 10]), data)
    assert trainer.failure == {"epoch": 1, "reason": "non-finite validation loss (nan)"}
    assert trainer.ctx.stop_reasons == ["non-finite validation loss (nan)"]
    assert len(result.history.epochs()) == 1


def _warnings(run_dir: Path) -> list[str]:
    return read_summary(run_dir)["warnings"]


def test_warnings_for_a_method_that_cannot_grow_and_a_budget_below_the_start(tmp_path):
    run_ok("train", "--method", "zero", "--set", "hidden=[]", "--epochs", 1, "--out", tmp_path / "zero", "--quiet")
    assert any("cannot grow" in w and "'zero'" in w for w in _warnings(tmp_path / "zero"))
    run_ok("train", "--epochs", 1, "--out", tmp_path / "edge", "--quiet", "--max-params", 100)
    (budget,) = _warnings(tmp_path / "edge")  # edge grows from hidden=[]: only the budget is a problem
    assert "max_params 100" in budget and "650" in budget
    run_ok("train", "--epochs", 1, "--out", tmp_path / "fine", "--quiet")
    assert _warnings(tmp_path / "fine") == []


def test_a_single_class_target_warns(tmp_path):
    csv = tmp_path / "one.csv"
    csv.write_text("a,b,label\n" + "".join(f"{i % 7},{i % 5},yes\n" for i in range(40)))
    code, _, err = run_main("train", "--dataset", csv, "--target", "label", "--epochs", 1, "--out",
                            tmp_path / "run", "--quiet")
    assert code == 0, err
    (warning,) = _warnings(tmp_path / "run")
    assert "1 class" in warning


def test_a_diverging_regression_warns(tmp_path):
    csv = tmp_path / "reg.csv"
    write_regression_csv(csv)
    run_ok("train", "--dataset", csv, "--target", "y", "--set", "optimizer=sgd", "--lr", "1.0", "--epochs", 10,
           "--out", tmp_path / "run", "--quiet")
    (warning,) = _warnings(tmp_path / "run")
    assert warning.startswith("training diverged: the validation loss reached")
    run_ok("train", "--dataset", csv, "--target", "y", "--set", "optimizer=sgd", "--lr", "0.01", "--epochs", 3,
           "--out", tmp_path / "calm", "--quiet")
    assert _warnings(tmp_path / "calm") == []

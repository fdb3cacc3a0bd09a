"""A run's ``config.yaml`` is a valid ``--config``; ``resume`` records what it changes; the first
checkpoint comes after the first epoch; a Ctrl-C names the run; files share one set of permissions;
``predict_file(..., proba=True)``; the ``task`` field (issue #23)."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from clikit import (GROW_FAST, read_history, read_summary, run_main, run_ok, write_classification_csv,
                    write_regression_csv)
from selfexpand.checkpoint import load_checkpoint
from selfexpand.errors import ConfigError
from selfexpand.runs import RunConfig, predict_file, resume_run, train_run
from selfexpand.train.callbacks import Callback


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished digits edge run with ``--set`` values (2 epochs)."""
    out = tmp_path_factory.mktemp("config") / "run"
    run_ok("train", "--epochs", 2, "--out", out, "--quiet", "--set", "max_new=7", "--set", "tau=0.25",
           "--batch-size", 32, "--threads", 1)
    return out


def test_config_yaml_is_a_valid_config_and_keeps_the_types_of_set_values(run, tmp_path):
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["settings"]["max_new"] == 7 and config["settings"]["tau"] == 0.25  # numbers, not '7'
    assert config["epochs"] == 2 and config["batch_size"] == 32
    assert not {"resolved", "out", "twin_of", "run_id"} & set(config)
    again = tmp_path / "again"
    run_ok("train", "--config", run / "config.yaml", "--out", again, "--quiet")
    assert yaml.safe_load((again / "config.yaml").read_text()) == config
    first, second = read_summary(run), read_summary(again)  # the same run, trained again
    assert second["test_metric"] == first["test_metric"] and second["params_final"] == first["params_final"]
    ids = [json.loads((d / "run.json").read_text())["run_id"] for d in (run, again)]
    assert ids[0] != ids[1]  # the same configuration, another run


def test_an_empty_out_is_an_error_not_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main("train", "--epochs", 1, "--out", "", "--quiet")
    assert code == 2 and "selfexpand: error:" in err and "out" in err
    with pytest.raises(ConfigError, match="out must be a folder path"):
        train_run(RunConfig(epochs=1, out=""))
    assert not (tmp_path / "runs").exists()


def test_resume_below_the_epochs_done_is_an_error_naming_both(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    code, _, err = run_main("resume", copy, "--epochs", 1, "--quiet")
    assert code == 2 and "at least the 2 epochs" in err and "epochs=1" in err
    run_ok("resume", copy, "--epochs", 2, "--quiet")  # equal: a finished run, nothing to train
    assert read_summary(copy)["epochs"] == 2


def test_resume_records_its_epochs_and_its_command(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    resume_run(copy, epochs=3, command=["selfexpand", "resume", str(copy), "--epochs", "3"])
    assert yaml.safe_load((copy / "config.yaml").read_text())["epochs"] == 3
    env = json.loads((copy / "environment.json").read_text())
    assert env["command"][:2] == ["selfexpand", "train"]  # the run's own command stays
    assert [c["command"][1] for c in env["commands"]] == ["train", "resume"]
    assert env["commands"][1]["resumed_from_epoch"] == 2 and env["commands"][1]["epochs"] == 3
    assert read_summary(copy)["epochs"] == 3


class _CtrlC(Callback):
    def on_epoch_end(self, ctx, record, **kwargs):
        if ctx.epoch == 2:
            raise KeyboardInterrupt


def test_the_first_checkpoint_follows_the_first_epoch_and_ctrl_c_names_the_run(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt) as caught:
        train_run(RunConfig(epochs=6, out=str(out), seed=0), callbacks=[_CtrlC()])
    assert caught.value.run_dir == str(out)
    assert load_checkpoint(out / "checkpoint" / "last.safetensors").extra["trainer"]["epoch"] == 1
    assert (out / ".lock").read_text() == ""  # released
    resume_run(out)  # takes the lock again and finishes from epoch 1
    assert [r["epoch"] for r in read_history(out) if r["type"] == "epoch"] == list(range(1, 7))


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_every_file_of_a_run_gets_the_umasks_permissions(tmp_path, umask):
    old = os.umask(umask)
    try:
        out = tmp_path / "run"
        train_run(RunConfig(method="static", epochs=1, out=str(out)))
    finally:
        os.umask(old)
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_file()}
    assert {"model.safetensors", "checkpoint/last.safetensors", "config.yaml", "summary.json"} <= set(modes)
    assert set(modes.values()) == {0o666 & ~umask}, modes


def test_predict_file_gives_probabilities_of_a_classification_run(tmp_path):
    csv = tmp_path / "colours.csv"
    labels = write_classification_csv(csv, n=120)
    run_dir, _ = train_run(RunConfig(dataset=str(csv), target="colour", epochs=2, batch_size=16, lr=0.05,
                                     out=str(tmp_path / "run")))
    plain = predict_file(run_dir, csv)
    got, probabilities, names = predict_file(run_dir, csv, proba=True)
    assert got == plain and len(got) == len(labels)
    assert sorted(names) == ["blue", "green", "red"]
    p = np.array(probabilities)
    assert p.shape == (120, 3) and np.allclose(p.sum(1), 1.0) and (p >= 0).all()
    assert [names[k] for k in p.argmax(1)] == got


def test_predict_file_refuses_probabilities_of_a_regression_run_and_task_is_recorded(tmp_path):
    csv = tmp_path / "reg.csv"
    table = write_regression_csv(csv, n=120)
    run_dir, summary = train_run(RunConfig(dataset=str(csv), target="y", task="regression", epochs=2,
                                           batch_size=16, lr=0.05, out=str(tmp_path / "run")))
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["task"] == "regression"
    assert summary["metric_name"] == "mse" and summary["metric_unit"]["test_metric"] == "original"
    with pytest.raises(ConfigError, match="probabilities are for classification runs"):
        predict_file(run_dir, csv, proba=True)
    values = np.array(predict_file(run_dir, csv))
    assert values.shape == (120, 1)
    assert abs(values.mean() - table[:, -1].mean()) < 3 * table[:, -1].std()  # the target's own unit
    with pytest.raises(ConfigError, match="task must be one of"):
        train_run(RunConfig(dataset=str(csv), target="y", task="ranking", epochs=1, out=str(tmp_path / "bad")))


def test_resume_device_is_recorded_and_cuda_refused_where_there_is_none(tmp_path):
    run = tmp_path / "run"
    run_ok("train", "--epochs", "2", "--out", str(run), "--quiet", *GROW_FAST)
    run_ok("resume", str(run), "--epochs", "3", "--device", "cpu", "--quiet")
    assert yaml.safe_load((run / "config.yaml").read_text())["device"] == "cpu"
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal below is for machines without it")
    status, _, err = run_main("resume", str(run), "--epochs", "4", "--device", "cuda", "--quiet")
    assert status == 2 and "CUDA is not available" in err
    assert json.loads((run / "summary.json").read_text())["epochs"] == 3  # refused before any work

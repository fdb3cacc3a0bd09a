"""Run identity (issue #23): a run's checkpoint, model, ``config.yaml`` and data are tied to its run
id; ``resume``, ``predict``, ``inspect`` and ``train --twin-of`` refuse what is not the run's own, and
say which file and what differs. Runs made before the check stay readable, with a warning."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from clikit import read_history, run_main, run_ok, write_classification_csv
from selfexpand.checkpoint import load_checkpoint, save_checkpoint
from selfexpand.errors import RunIdentityError
from selfexpand.runs import resume_run

CKPT = Path("checkpoint") / "last.safetensors"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Finished digits runs: edge (seed 0), edge (seed 1), SWE (seed 0); and a raw-digits NPZ."""
    root = tmp_path_factory.mktemp("identity")
    from sklearn.datasets import load_digits

    np.savez(root / "raw.npz", X=load_digits().data[:4])
    run_ok("train", "--epochs", 2, "--out", root / "edge", "--quiet", "--threads", 1)
    run_ok("train", "--epochs", 2, "--seed", 1, "--out", root / "edge-seed1", "--quiet", "--threads", 1)
    run_ok("train", "--method", "swe", "--epochs", 1, "--set", "hidden=[8]", "--out", root / "swe", "--quiet",
           "--threads", 1)
    return root


def _copy(runs: Path, name: str, tmp_path: Path) -> Path:
    out = tmp_path / name
    shutil.copytree(runs / name, out)
    return out


def _one_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("selfexpand: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_another_methods_checkpoint_is_refused_on_resume(runs, tmp_path):
    edge = _copy(runs, "edge", tmp_path)
    shutil.copy(runs / "swe" / CKPT, edge / CKPT)
    before = (edge / "history.jsonl").read_bytes()
    code, _, err = run_main("resume", edge, "--epochs", 3, "--quiet")
    line = _one_error(err)
    assert code == 2
    assert "checkpoint/last.safetensors" in line and "belongs to run" in line
    assert "method swe, seed 0" in line and "not this run" in line and "method edge" in line
    assert (edge / "history.jsonl").read_bytes() == before  # nothing written
    with pytest.raises(RunIdentityError, match="belongs to run"):
        resume_run(edge, epochs=3)


def test_the_same_methods_checkpoint_of_another_seed_is_refused(runs, tmp_path):
    edge = _copy(runs, "edge", tmp_path)
    shutil.copy(runs / "edge-seed1" / CKPT, edge / CKPT)
    code, _, err = run_main("resume", edge, "--epochs", 3, "--quiet")
    line = _one_error(err)
    assert code == 2 and "method edge, seed 1" in line and "seed 0" in line


def test_the_runs_own_checkpoint_resumes(runs, tmp_path):  # the planted counterpart of the refusals
    edge = _copy(runs, "edge", tmp_path)
    run_ok("resume", edge, "--epochs", 3, "--quiet")
    assert [r["epoch"] for r in read_history(edge) if r["type"] == "epoch"] == [1, 2, 3]


@pytest.mark.parametrize("command", ["predict", "inspect", "twin"])
def test_another_runs_model_is_refused_by_predict_inspect_and_twin(runs, tmp_path, command):
    edge = _copy(runs, "edge", tmp_path)
    shutil.copy(runs / "swe" / "model.safetensors", edge / "model.safetensors")
    argv = {"predict": ["predict", edge, runs / "raw.npz"], "inspect": ["inspect", edge],
            "twin": ["train", "--twin-of", edge, "--out", tmp_path / "twin", "--quiet"]}[command]
    code, out, err = run_main(*argv)
    line = _one_error(err)
    assert code == 2 and "model.safetensors" in line and "belongs to run" in line and "method swe" in line
    assert out == "" and not (tmp_path / "twin").exists()


def test_an_edited_seed_in_config_yaml_is_refused_and_an_edited_epochs_is_not(runs, tmp_path):
    edge = _copy(runs, "edge", tmp_path)
    path = edge / "config.yaml"
    config = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**config, "seed": 1}, sort_keys=False))
    code, _, err = run_main("resume", edge, "--epochs", 3, "--quiet")
    line = _one_error(err)
    assert code == 2 and "config.yaml: seed changed from 0 to 1 since the run started" in line
    assert "allowed: epochs" in line
    code, _, err = run_main("train", "--twin-of", edge, "--out", tmp_path / "twin", "--quiet")
    assert code == 2 and "seed changed from 0 to 1" in _one_error(err)
    max_new = config["settings"]["max_new"]
    settings = {**config["settings"], "max_new": max_new + 1}
    path.write_text(yaml.safe_dump({**config, "settings": settings}, sort_keys=False))
    code, _, err = run_main("resume", edge, "--epochs", 3, "--quiet")
    assert code == 2 and f"settings.max_new changed from {max_new} to {max_new + 1}" in _one_error(err)
    path.write_text(yaml.safe_dump({**config, "epochs": 3}, sort_keys=False))  # epochs may change
    run_ok("resume", edge, "--quiet")
    assert json.loads((edge / "summary.json").read_text())["epochs"] == 3


def _csv_run(tmp_path: Path) -> tuple[Path, Path]:
    csv = tmp_path / "colours.csv"
    write_classification_csv(csv, n=120)
    run = tmp_path / "csv-run"
    run_ok("train", "--dataset", csv, "--target", "colour", "--epochs", 2, "--out", run, "--quiet",
           "--batch-size", 16)
    return csv, run


def test_a_csv_whose_target_became_a_float_column_is_refused_on_resume(tmp_path):
    csv, run = _csv_run(tmp_path)
    lines = csv.read_text().splitlines()
    floats = {"blue": "0.5", "green": "1.5", "red": "2.25"}
    body = [",".join(floats.get(cell, cell) for cell in line.split(",")) for line in lines[1:]]
    csv.write_text("\n".join([lines[0], *body]) + "\n")
    code, _, err = run_main("resume", run, "--epochs", 3, "--quiet")
    line = _one_error(err)
    assert code == 2 and str(csv) in line
    assert "task regression now, classification when the run started" in line


def test_changed_training_rows_are_refused_naming_the_split(tmp_path):
    csv, run = _csv_run(tmp_path)
    lines = csv.read_text().splitlines()
    first = lines[1].split(",")
    first[0] = f"{float(first[0]) + 1:.3f}"  # one feature of one row
    csv.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    code, _, err = run_main("resume", run, "--epochs", 3, "--quiet")
    line = _one_error(err)
    assert code == 2 and str(csv) in line and "split sha256" in line


def _as_old_run(run: Path) -> None:
    """Make ``run`` look like a run directory written before run identity."""
    (run / "run.json").unlink()
    for name in ("model.safetensors", str(CKPT)):
        ckpt = load_checkpoint(run / name)
        save_checkpoint(run / name, ckpt.model, ckpt.optimizer, extra=ckpt.extra, tensors=ckpt.tensors)
    config = yaml.safe_load((run / "config.yaml").read_text())
    from selfexpand.runconfig import RunConfig, run_settings

    resolved = run_settings(RunConfig(**{k: v for k, v in config.items() if k != "settings"},
                                      settings=config["settings"]))
    old = {**{k: v for k, v in config.items() if k != "settings"}, "settings": {}, "out": str(run),
           "twin_of": None, "resolved": resolved}
    (run / "config.yaml").write_text(yaml.safe_dump(old, sort_keys=False))


def test_a_run_from_before_the_check_stays_readable_with_a_warning(runs, tmp_path, caplog):
    edge = _copy(runs, "edge", tmp_path)
    _as_old_run(edge)
    assert load_checkpoint(edge / "model.safetensors").run is None
    with caplog.at_level(logging.WARNING, logger="selfexpand"):
        run_ok("inspect", edge)
        run_ok("predict", edge, runs / "raw.npz")
        run_ok("resume", edge, "--epochs", 3, "--quiet")
    assert "before run identity" in caplog.text
    assert not (edge / "run.json").exists() and read_history(edge)[-1]["epoch"] == 3


def test_a_stamped_file_in_a_run_without_run_json_is_checked_against_the_checkpoint(runs, tmp_path, caplog):
    edge = _copy(runs, "edge", tmp_path)
    identity = json.loads((edge / "run.json").read_text())
    (edge / "run.json").unlink()
    with caplog.at_level(logging.WARNING, logger="selfexpand"):
        run_ok("resume", edge, "--epochs", 3, "--quiet")
    assert "has no run.json" in caplog.text
    assert json.loads((edge / "run.json").read_text())["run_id"] == identity["run_id"]  # written back
    (edge / "run.json").unlink()
    config = yaml.safe_load((edge / "config.yaml").read_text())
    (edge / "config.yaml").write_text(yaml.safe_dump({**config, "seed": 5}, sort_keys=False))
    code, _, err = run_main("resume", edge, "--epochs", 4, "--quiet")
    assert code == 2 and "seed changed from 0 to 5" in _one_error(err)

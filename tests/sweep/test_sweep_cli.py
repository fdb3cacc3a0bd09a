"""``selfexpand sweep`` end to end, and ``selfexpand train`` with the size methods and dataset options."""

from __future__ import annotations

import contextlib
import csv
import io
import json

import pytest
import torch

from selfexpand.cli import main


def run_main(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main([str(a) for a in argv])
    finally:
        torch.set_num_threads(threads)
    return status, out.getvalue(), err.getvalue()


def test_sweep_writes_results(tmp_path):
    out = tmp_path / "sweep"
    status, stdout, stderr = run_main("sweep", "--method", "size-weight", "--dataset", "bessel-sum",
                                      "--grid", "lambda=0.01,0.1,1", "--seeds", 3, "--epochs", 60, "--out", out)
    assert status == 0, stderr
    assert "fixed / growing" in stdout and str(out) in stdout
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 3 * 3 * 2
    assert set(rows[0]) >= {"seed", "lambda", "start", "final_size", "test_metric"}
    assert {r["start"] for r in rows} == {"growing", "fixed"}
    assert {r["seed"] for r in rows} == {"0", "1", "2"}
    assert {float(r["lambda"]) for r in rows} == {0.01, 0.1, 1.0}
    assert all(r["final_size"] == "5" for r in rows if r["start"] == "fixed")
    md = (out / "results.md").read_text()
    assert md.count("| growing |") == 3 and md.count("| fixed |") == 3
    assert (out / "sweep.png").stat().st_size > 1000
    assert json.loads((out / "sweep.json").read_text())["epochs"] == 60


def test_sweep_controller_on_spirals_with_arms(tmp_path):
    out = tmp_path / "sweep"
    status, stdout, stderr = run_main("sweep", "--method", "controller-mask", "--dataset", "spirals",
                                      "--set", "arms=4", "--set", "points=10", "--seeds", 2, "--epochs", 30,
                                      "--out", out, "--quiet")
    assert status == 0, stderr
    assert stderr == ""  # --quiet: no progress bar
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 4 and all(0 <= float(r["test_metric"]) <= 1 for r in rows)
    assert json.loads((out / "sweep.json").read_text())["settings"]["arms"] == "4"


def test_sweep_progress_bar_on_stderr(tmp_path):
    status, _, stderr = run_main("sweep", "--method", "size-weight", "--dataset", "bessel", "--seeds", 1,
                                 "--epochs", 200, "--out", tmp_path / "s")
    assert status == 0 and "200/200" in stderr


@pytest.mark.parametrize("argv, words", [
    (["--method", "edge", "--dataset", "bessel"], "sweep supports the methods"),
    (["--method", "size-weight", "--dataset", "bessel", "--grid", "tau=1"], "can vary"),
    (["--method", "size-weight", "--dataset", "bessel", "--grid", "lambda=x"], "must be numbers"),
    (["--method", "size-weight", "--dataset", "bessel", "--seeds", "0"], "positive integer"),
    (["--method", "size-weight", "--dataset", "nope"], "unknown dataset"),
    (["--method", "size-weight", "--dataset", "bessel", "--set", "lambda"], "KEY=VALUE"),
    (["--method", "size-weight", "--dataset", "bessel", "--set", "optimizer=adamw"], "optimizer 'gd' or 'adam'"),
    (["--method", "size-weight"], "required"),
])
def test_bad_sweep_calls_exit_2_with_one_line(argv, words, tmp_path):
    status, stdout, stderr = run_main("sweep", *argv, "--epochs", 5, "--out", tmp_path / "x")
    assert status == 2 and words in stderr and stderr.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_sweep_refuses_a_full_out_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    status, _, stderr = run_main("sweep", "--method", "size-weight", "--dataset", "bessel", "--out", tmp_path)
    assert status == 2 and "new or empty" in stderr


def test_train_size_weight_run_directory_and_resume(tmp_path):
    run = tmp_path / "run"
    status, stdout, stderr = run_main("train", "--method", "size-weight", "--dataset", "bessel", "--epochs", 15,
                                      "--set", "lambda=2", "--out", run, "--quiet", "--threads", 1)
    assert status == 0, stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["params_start"] == 1  # N_0 = 0: no hidden unit live, only the output bias
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert history[-1]["size_control"]["h1"] > 0 and history[-1]["control_params"] == 1
    config = (run / "config.yaml").read_text()
    assert "lambda: 2.0" in config and "optimizer: gd" in config
    status, _, stderr = run_main("resume", run, "--epochs", 20, "--quiet", "--threads", 1)
    assert status == 0, stderr
    assert json.loads((run / "summary.json").read_text())["epochs"] == 20


def test_train_controller_mask_with_dataset_option(tmp_path):
    run = tmp_path / "run"
    status, _, stderr = run_main("train", "--method", "controller-mask", "--dataset", "spirals", "--set", "arms=5",
                                 "--set", "points=8", "--set", "c_start=0.6", "--epochs", 5, "--out", run,
                                 "--quiet", "--threads", 1)
    assert status == 0, stderr
    summary = json.loads((run / "summary.json").read_text())
    live = 7  # s = sin^2(0.3 pi) = 0.654..., s n = 6.5: six units and the fractional one
    assert summary["params_start"] == live * (2 + 1 + 5) + 5
    prep = json.loads((run / "preprocessing.json").read_text())
    assert prep["n_outputs"] == 5


@pytest.mark.parametrize("argv, words", [
    (["--method", "size-weight", "--dataset", "bessel", "--set", "arms=3"], "setting must be one of"),
    (["--method", "controller-mask", "--dataset", "spirals", "--set", "arms=1"], "arms must be an integer >= 2"),
    (["--method", "size-weight", "--dataset", "bessel", "--set", "dn=0"], "dn must be a number > 0"),
])
def test_bad_train_calls(argv, words, tmp_path):
    status, _, stderr = run_main("train", *argv, "--epochs", 2, "--out", tmp_path / "r", "--quiet")
    assert status == 2 and words in stderr


def test_static_twin_of_a_size_run_keeps_the_live_units_without_the_modulator(tmp_path):
    run, twin = tmp_path / "run", tmp_path / "twin"
    status, _, stderr = run_main("train", "--method", "controller-mask", "--dataset", "spirals", "--set", "points=8",
                                 "--set", "c_start=0.6", "--epochs", 4, "--out", run, "--quiet", "--threads", 1)
    assert status == 0, stderr
    status, _, stderr = run_main("train", "--twin-of", run, "--out", twin, "--quiet", "--threads", 1)
    assert status == 0, stderr
    grown, static = (json.loads((d / "summary.json").read_text()) for d in (run, twin))
    assert static["params_start"] == static["params_final"] == grown["params_final"]
    history = [json.loads(line) for line in (twin / "history.jsonl").read_text().splitlines()]
    assert history[-1]["control_params"] == 0 and static["epochs"] == grown["epochs"]

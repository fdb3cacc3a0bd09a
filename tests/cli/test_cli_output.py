"""Output that explains itself: the final table names the metric and says why a figure is missing,
the run's warnings reach stderr, growth event lines name the layer they made, no empty compaction is
recorded, and ``predict --proba`` / ``--out`` print or write the probabilities with their classes."""

from __future__ import annotations

import csv
import inspect
import json
import re
import subprocess
import sys

import pytest
import torch

from clikit import CSV_TRAINING, read_history, run_main, run_ok, write_classification_csv, write_regression_csv
from selfexpand import ops, runs
from selfexpand.graph import GrowableNet
from selfexpand.events import event_line
from selfexpand.ops.event import GrowthEvent


def _table(out: str) -> dict:
    return dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in out.splitlines())


# ------------------------------------------------------------------ event lines
def test_split_edges_line_names_the_new_layer():
    net = GrowableNet.mlp([4, 3], seed=0)
    event = ops.split_edges(net, {"input_to_output": ([0, 1], [2, 3])}, eps=0.0)
    line = event.line()
    assert line.startswith(f"split_edges at output, new layer {event.details['layer']}: +2 units, ")
    assert f"params {event.params_before} -> {event.params_after}" in line
    assert line == event_line(json.loads(json.dumps(event.to_dict())))  # the history.jsonl form reads alike


def test_event_line_counts_removals_and_stored_params():
    record = {"kind": "compact", "site": "graph", "units_removed": 3, "edges_removed": 7, "params_before": 90,
              "params_after": 70, "details": {"stored_params_before": 120, "stored_params_after": 80}}
    assert event_line(record) == "compact at graph: -3 units, +0/-7 edges, params 90 -> 70, stored 120 -> 80"
    both = GrowthEvent("split_units", "h1", units_added=2, units_removed=1, params_before=5, params_after=9)
    assert both.line() == "split_units at h1: +2/-1 units, +0/-0 edges, params 5 -> 9"
    paid = {"kind": "prune_edges", "site": "graph", "edges_removed": 4, "details": {"pays_for_split": True}}
    assert event_line(paid).endswith("(pays for a split)")


def test_progress_bar_writes_event_lines(capsys):
    from types import SimpleNamespace

    from selfexpand.train.progress import ProgressBar

    written = []
    bar = ProgressBar()
    bar.bar = SimpleNamespace(write=written.append)
    event = GrowthEvent("insert_layer", "h1_to_output", units_added=4, details={"layer": "h2"})
    bar.on_grow_end(SimpleNamespace(epoch=7), [event])
    assert written == [f"epoch 7: {event.line()}"] and "new layer h2" in written[0]


def test_a_grown_runs_history_has_no_empty_compaction(grown_run):
    growth = [r for r in read_history(grown_run) if r["type"] == "growth"]
    assert any(r["kind"] == "prune_edges" for r in growth), "the fixture should prune"
    for r in growth:
        if r["kind"] == "compact":
            d = r["details"]
            assert r["units_removed"] or r["edges_removed"] or d["stored_params_before"] != d["stored_params_after"], r
        if r["kind"] == "split_edges":
            assert f"new layer {r['details']['layer']}" in event_line(r)


# ------------------------------------------------------------------ the final table
SUMMARY = {"method": "edge", "dataset": "t", "seed": 0, "epochs": 3, "metric_name": "mse",
           "metric_unit": {"test_metric": "original", "best_val_metric": "standardised", "history": "standardised"},
           "test_metric": 4.04912, "best_val_metric": 3.5, "params_start": 10, "params_final": 12,
           "growth_events": 0, "inactivity": {}, "inactive_units_fraction": 0.25, "inactive_new_units_fraction": None,
           "train_flops": None, "warnings": ["the test set holds 3 rows", "a second\nwarning"]}


@pytest.fixture
def fake_train(monkeypatch, tmp_path):
    """``train_run`` replaced: records its config, returns ``SUMMARY`` (or raises ``fake_train.error``)."""
    seen = {}

    def train_run(config, callbacks=(), command=None):
        seen["config"] = config
        if seen.get("error") is not None:
            raise seen["error"]
        return tmp_path / "run", dict(seen.get("summary", SUMMARY))

    monkeypatch.setattr(runs, "train_run", train_run)
    return seen


def test_table_names_the_metric_says_why_values_are_missing_and_prints_warnings(fake_train):
    status, out, err = run_main("train", "--quiet")
    assert status == 0, err
    table = _table(out)
    assert table["test mse"] == "4.0491 (original unit)" and table["best val mse"] == "3.5000 (standardised unit)"
    assert table["inactive_new_units_fraction"] == "n/a (no growth)"
    assert table["train_flops"].startswith("n/a (")
    assert "None" not in out and "test_metric" not in table
    assert err.splitlines() == ["selfexpand: warning: the test set holds 3 rows", "selfexpand: warning: a second warning"]


def test_table_without_metric_name_keeps_the_keys(fake_train):
    fake_train["summary"] = {k: v for k, v in SUMMARY.items() if k not in ("metric_name", "metric_unit", "warnings")}
    status, out, err = run_main("train", "--quiet")
    assert status == 0 and err == ""
    assert _table(out)["test_metric"] == "4.0491"
    fake_train["summary"] = {**SUMMARY, "metric_unit": "kelvin", "warnings": []}
    status, out, err = run_main("train", "--quiet")
    assert _table(out)["test mse"] == "4.0491 (kelvin)" and err == ""


def test_a_static_run_shows_n_a_with_a_reason(tmp_path):
    out = run_ok("train", "--method", "static", "--epochs", 1, "--set", "hidden=[8]", "--out", tmp_path / "r",
                 "--quiet")
    table = _table(out)
    assert table["inactive_new_units_fraction"] == "n/a (no growth)"
    assert "test accuracy" in table and "None" not in out


# ------------------------------------------------------------------ predict --proba / --out
@pytest.fixture
def fake_predict(monkeypatch):
    """``predict_file`` replaced: three rows of classes ``blue, green, red`` (or ``fake.rows``)."""
    seen = {"labels": ["red", "blue", "red"],
            "probs": [[0.1, 0.2, 0.7], [0.8, 0.15, 0.05], [0.3, 0.3, 0.4]], "classes": ["blue", "green", "red"]}

    def predict_file(run_dir, path, *, proba=False):
        seen["proba"] = proba
        return (seen["labels"], seen["probs"], seen["classes"]) if proba else seen["labels"]

    monkeypatch.setattr(runs, "predict_file", predict_file)
    return seen


def test_predict_proba_prints_a_header_and_the_probabilities(fake_predict, tmp_path):
    out = run_ok("predict", tmp_path, tmp_path / "x.csv", "--proba")
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["prediction", "p_blue", "p_green", "p_red"]
    assert rows[1:] == [["red", "0.1000", "0.2000", "0.7000"], ["blue", "0.8000", "0.1500", "0.0500"],
                        ["red", "0.3000", "0.3000", "0.4000"]]
    assert fake_predict["proba"] is True
    assert run_ok("predict", tmp_path, tmp_path / "x.csv").splitlines() == ["red", "blue", "red"]
    assert fake_predict["proba"] is False


def test_predict_out_writes_a_csv_and_refuses_to_overwrite(fake_predict, tmp_path):
    target = tmp_path / "p.csv"
    out = run_ok("predict", tmp_path, tmp_path / "x.csv", "--proba", "--out", target)
    assert "3 predictions" in out and str(target) in out
    with target.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["prediction", "p_blue", "p_green", "p_red"]
    assert rows[1] == ["red", "0.1", "0.2", "0.7"] and len(rows) == 4
    status, _, err = run_main("predict", tmp_path, tmp_path / "x.csv", "--out", target)
    assert status == 2 and "exists" in err and err.count("\n") == 1
    assert target.read_text().startswith("prediction,p_blue")  # untouched
    plain = tmp_path / "plain.csv"
    run_ok("predict", tmp_path, tmp_path / "x.csv", "--out", plain)
    assert plain.read_text().splitlines() == ["prediction", "red", "blue", "red"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv", "plain.csv"]  # no temporary file left


@pytest.mark.parametrize("rows, header", [([[1.5], [-2.25]], ["prediction"]),
                                          ([[1.0, 2.0], [3.0, 4.5]], ["prediction_0", "prediction_1"])])
def test_predict_out_for_regression_has_one_column_per_output(fake_predict, tmp_path, rows, header):
    fake_predict["labels"] = rows
    target = tmp_path / "r.csv"
    run_ok("predict", tmp_path, tmp_path / "x.csv", "--out", target)
    with target.open(newline="") as f:
        written = list(csv.reader(f))
    assert written[0] == header and [[float(v) for v in r] for r in written[1:]] == rows


_PROBA = "proba" in inspect.signature(runs.predict_file).parameters


@pytest.mark.skipif(not _PROBA, reason="needs runs.predict_file(..., proba=True) (issue #23, runs side)")
def test_predict_proba_on_a_real_run(tmp_path):
    data = tmp_path / "colours.csv"
    write_classification_csv(data, n=120)
    run_ok("train", "--dataset", data, "--target", "colour", "--epochs", 2, "--out", tmp_path / "run", "--quiet",
           *CSV_TRAINING)
    out = run_ok("predict", tmp_path / "run", data, "--proba")
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["prediction", "p_blue", "p_green", "p_red"] and len(lines) == 121
    for label, *probs in lines[1:]:
        values = [float(p) for p in probs]
        assert abs(sum(values) - 1) < 2e-3
        assert label == lines[0][1 + values.index(max(values))].removeprefix("p_")
    regression = tmp_path / "linear.csv"
    write_regression_csv(regression, n=60)
    run_ok("train", "--dataset", regression, "--target", "y", "--epochs", 1, "--out", tmp_path / "reg", "--quiet",
           *CSV_TRAINING)
    status, out, err = run_main("predict", tmp_path / "reg", regression, "--proba")
    assert status == 2 and out == "" and err.count("\n") == 1 and "proba" in err


def test_event_lines_reach_the_progress_output_of_a_run(tmp_path, capsys):
    """A real run with the progress bar on: its growth lines name the new layer."""
    from clikit import GROW_FAST

    from selfexpand.cli import main

    threads = torch.get_num_threads()
    try:
        assert main(["train", "--epochs", "3", "--out", str(tmp_path / "r"), *GROW_FAST]) == 0
    finally:
        torch.set_num_threads(threads)
    captured = capsys.readouterr()
    lines = [ln for ln in (captured.out + captured.err).splitlines() if ln.startswith("epoch ")]
    assert any(re.match(r"epoch \d+: split_edges at output, new layer h\d+: \+\d+ units", ln) for ln in lines), lines
    assert not any("+0 units, +0/-0 edges" in ln for ln in lines)


def test_a_run_warning_is_printed_once_after_the_table_not_also_by_the_log(tmp_path):
    """The library logs a run's warnings and the CLI prints them after the table: the terminal shows each once."""
    proc = subprocess.run([sys.executable, "-m", "selfexpand.cli", "train", "--epochs", "1", "--max-params", "100",
                           "--quiet", "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "max_params 100" in line]
    assert len(lines) == 1 and lines[0].startswith("selfexpand: warning: "), proc.stderr

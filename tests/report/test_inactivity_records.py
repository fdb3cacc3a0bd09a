"""Where the inactivity figures appear: every epoch record of ``history.jsonl`` (per layer and the two
fractions), ``summary.json`` (the final model), and ``selfexpand inspect`` (the stored figures)."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from selfexpand.checkpoint import load_checkpoint
from selfexpand.data import load_dataset
from selfexpand.graph import GrowableNet
from selfexpand.train.recorders import InactivityRecorder
from selfexpand.report.inactivity import LAYER_KEYS, inactivity
from selfexpand.report.describe import describe_inactivity, describe_run
from selfexpand.report.summary import summarize
from selfexpand.runs import RunConfig, train_run

FIELDS = ("inactivity", "inactive_units_fraction", "inactive_new_units_fraction")
# grow on every plateau check, prune after one epoch: growth, pruning and compaction within 5 epochs
GROW_FAST = dict(min_gap=1, window=1, plateau_threshold=100, prune_after=1, max_new=20)


def test_recorder_adds_the_figures_to_the_epoch_record():
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    x = torch.rand(20, 3, generator=torch.Generator().manual_seed(0))
    ctx = SimpleNamespace(model=net, data=SimpleNamespace(x_val=x))
    record = {"type": "epoch", "epoch": 1}
    InactivityRecorder(batch_size=6).on_epoch_end(ctx, record=record)
    figures = inactivity(net, x)
    assert record["inactivity"] == figures["layers"]
    assert record["inactive_units_fraction"] == figures["inactive_units_fraction"]
    assert record["inactive_new_units_fraction"] is None
    assert json.loads(json.dumps(record)) == record


def test_summarize_copies_the_figures_or_says_none():
    base = dict(method="m", dataset="d", seed=0, history=[], counts_start={"params": 1},
                counts_final={"params": 1, "weights_active": 1, "stored_params": 1, "front_params": 0},
                metric_name="accuracy", higher_is_better=True, test_metric=0.5, train_seconds=1.0,
                growth_seconds=0.0)
    assert all(summarize(**base)[key] is None for key in FIELDS)
    net = GrowableNet.mlp([3, 4, 2], seed=0)
    figures = inactivity(net, torch.rand(10, 3))
    summary = summarize(**base, inactivity=figures)
    assert summary["inactivity"] == figures["layers"]
    assert summary["inactive_units_fraction"] == figures["inactive_units_fraction"]


@pytest.fixture(scope="module")
def grown_run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_dir, summary = train_run(RunConfig(epochs=5, batch_size=32, lr=0.005, settings=GROW_FAST,
                                               out=str(tmp_path_factory.mktemp("inactivity") / "run")))
    finally:
        torch.set_num_threads(threads)
    return run_dir, summary


def test_every_epoch_record_carries_the_figures(grown_run):
    run_dir, _ = grown_run
    records = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert len(epochs) == 5
    assert any(r["type"] == "growth" and r["kind"] == "split_edges" for r in records)
    for record in epochs:
        assert all(key in record for key in FIELDS), record["epoch"]
        for counts in record["inactivity"].values():
            assert set(counts) == set(LAYER_KEYS)
            assert counts["inactive"] <= counts["units"] and counts["new_units"] <= counts["units"]
    # an epoch with growth already shows the new layer (figures are taken after the growth step)
    first_growth = min(r["epoch"] for r in records if r["type"] == "growth")
    assert epochs[first_growth - 1]["inactivity"], "the grown layer should appear"


def test_summary_holds_the_final_models_figures(grown_run):
    run_dir, summary = grown_run
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert {key: on_disk[key] for key in FIELDS} == {key: summary[key] for key in FIELDS}
    model = load_checkpoint(run_dir / "model.safetensors").model
    data = load_dataset("digits", seed=0, val_fraction=0.2)
    figures = inactivity(model, data.x_val)
    assert summary["inactivity"] == figures["layers"]
    assert summary["inactive_units_fraction"] == figures["inactive_units_fraction"]
    assert summary["inactive_new_units_fraction"] == figures["inactive_new_units_fraction"]
    # every hidden unit of an edge-expansion run was added by growth
    assert all(c["new_units"] == c["units"] for c in summary["inactivity"].values())
    assert summary["inactive_new_units_fraction"] == summary["inactive_units_fraction"]
    # the last epoch record describes the same model
    records = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    last = [r for r in records if r["type"] == "epoch"][-1]
    assert last["inactivity"] == summary["inactivity"]


def test_inspect_shows_the_stored_figures(grown_run):
    run_dir, summary = grown_run
    text = describe_run(run_dir)
    assert "inactivity (final model, validation set" in text
    for name, c in summary["inactivity"].items():
        row = f"  {name:<10} {c['units']:>6} {c['new_units']:>6} {c['dead']:>6} {c['silent']:>6} " \
              f"{c['inactive']:>8} {c['new_inactive']:>12}"
        assert row in text.splitlines()
    assert f"inactive_units_fraction {summary['inactive_units_fraction']:.4f}" in text


def test_inspect_falls_back_to_the_last_epoch_record_then_says_not_recorded(grown_run, tmp_path):
    run_dir, _ = grown_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    summary = json.loads((copy / "summary.json").read_text())
    for key in FIELDS:
        summary.pop(key)
    (copy / "summary.json").write_text(json.dumps(summary))
    assert "inactivity (model after epoch 5, validation set" in describe_run(copy)
    records = [json.loads(line) for line in (copy / "history.jsonl").read_text().splitlines()]
    for record in records:
        for key in FIELDS:
            record.pop(key, None)
    (copy / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert "inactivity: not recorded by this run" in describe_run(copy)


def test_describe_inactivity_without_hidden_or_new_units():
    figures = {"inactivity": {}, "inactive_units_fraction": None, "inactive_new_units_fraction": None}
    text = "\n".join(describe_inactivity(figures, "final model"))
    assert "n/a (no hidden units)" in text and "n/a (no new units)" in text

"""SWE, SVoD + random and SVoD + zero as whole runs on digits: they grow in rounds, report the
inactivity figures, record integration epochs (SWE only), and a run resumed in the middle of a round
(best weights pending in the checkpoint) ends exactly like the uninterrupted run."""

from __future__ import annotations

import json

import pytest
import torch

from selfexpand.checkpoint import load_checkpoint
from selfexpand.runs import CHECKPOINT, RunConfig, resume_run, train_run

# tiny rounds: 64-8-8-10, 3 rounds of at most 3 epochs, +4 then +6 units
TINY = {"hidden": [8, 8], "rounds": 3, "schedule": [4, 6], "max_round_epochs": 3, "patience": 10,
        "final_patience": 10, "epochs": 30, "tuned_epochs": None}  # counts as plain epochs


def records(run_dir) -> list[dict]:
    """``history.jsonl`` without timings (at any depth) and without the inactivity entries' order."""

    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if not k.endswith("seconds")}
        return value

    return [clean(json.loads(line)) for line in (run_dir / "history.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", ["swe", "svod-random", "svod-zero"])
def test_each_method_grows_in_rounds_and_reports_inactivity(tmp_path, method):
    run_dir, summary = train_run(RunConfig(method=method, dataset="digits", seed=0, out=str(tmp_path / method),
                                           settings=dict(TINY)))
    history = records(run_dir)
    grown = [r for r in history if r["type"] == "growth" and r["kind"] == "add_units"]
    assert sum(r["units_added"] for r in grown) == 4 + 6
    assert summary["units_added"] == 10 and summary["params_final"] > summary["params_start"]
    integration = [r for r in history if r["type"] == "epoch" and r.get("phase") == "integration"]
    bakes = [r for r in history if r["type"] == "growth" and r["kind"] == "bake_donations"]
    if method == "swe":
        assert len(integration) == len(bakes) == len(grown) >= 2
        # integration epochs are epochs of the run: their time is not growth time (glossary)
        raw = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
        steps = [r for r in raw if r["type"] == "epoch" and "integration_seconds" in r]
        assert len(steps) == 2
        assert sum(r["integration_seconds"] for r in steps) == pytest.approx(
            sum(r["seconds"] for r in raw if r.get("phase") == "integration"), rel=1e-9)
    else:
        assert not integration and not bakes
    # 3 rounds of 3 epochs, plus the integration epochs, then the last round stops the run
    assert summary["epochs"] == 9 + len(integration)
    for key in ("inactive_units_fraction", "inactive_new_units_fraction"):
        assert 0.0 <= summary[key] <= 1.0
    model = load_checkpoint(run_dir / "model.safetensors").model
    assert model.widths()[1:-1] == [8 + n for n in _added_per_layer(grown, ["h1", "h2"])]


def _added_per_layer(grown, layers):
    return [sum(r["units_added"] for r in grown if r["site"] == name) for name in layers]


def test_swe_run_resumed_mid_round_equals_the_uninterrupted_run(tmp_path):
    settings = {**TINY, "max_round_epochs": 12, "patience": 2, "final_patience": 2, "lr": 0.03}

    def config(out, epochs):
        return RunConfig(method="swe", dataset="digits", seed=1, out=str(out), settings={**settings, "epochs": epochs})

    fresh, fresh_summary = train_run(config(tmp_path / "fresh", 40))
    full = records(fresh)
    last_growth = max(r["epoch"] for r in full if r["type"] == "growth")
    final_round = [r for r in full if r["type"] == "epoch" and r["epoch"] > last_growth]
    best = min(final_round, key=lambda r: r["val_loss"])["epoch"]
    # stop just after the last round's best epoch: its weights are pending in the checkpoint, and
    # the run ends by restoring them, so a resume that lost them would end elsewhere
    stop = best + 1
    assert stop < final_round[-1]["epoch"] + 1
    first, _ = train_run(config(tmp_path / "resumed", stop))
    ckpt = load_checkpoint(first / CHECKPOINT)
    assert any(k.startswith("method.") and ".best." in k for k in ckpt.tensors)
    _, summary = resume_run(first, epochs=40)
    resumed = records(first)
    assert resumed == full
    a = load_checkpoint(first / "model.safetensors").model.state_dict()
    b = load_checkpoint(fresh / "model.safetensors").model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert summary["epochs"] == fresh_summary["epochs"] < 40

"""``inspect``, ``train --twin-of``, ``resume`` and ``selfexpand.load_run`` on a grown digits run."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import yaml

from clikit import GROW_FAST, read_history, read_summary, run_main, run_ok
from selfexpand import load_run
from selfexpand.data import decode_labels, preprocess_features


def _architecture(model) -> dict:
    """Layers in order with sizes and activations; connections with shapes, reads and live masks."""
    spec = model.spec()
    # the grown marks say which units growth added, not what the architecture is (a twin has none)
    layers = [(n, {k: v for k, v in spec["layers"][n].items() if k != "grown"}) for n in spec["order"]]
    conns = {}
    for name, c in model.connections.items():
        index = None if c.in_index is None else c.in_index.tolist()
        conns[name] = (c.source, c.target, tuple(c.shape), index, c.live().tolist())
    return {"layers": layers, "connections": conns}


def test_grown_run_grew(grown_run):
    summary = read_summary(grown_run)
    assert summary["growth_events"] >= 2 and summary["units_added"] > 0 and summary["edges_added"] > 0
    assert summary["edges_pruned"] > 0
    assert summary["params_final"] > summary["params_start"]
    history = read_history(grown_run)
    grown = [r for r in history if r["type"] == "growth" and r["kind"] == "split_edges"]
    assert len(grown) == summary["growth_events"]
    assert sum(r["units_added"] for r in grown) == summary["units_added"]


def test_inspect_shows_layers_counts_and_events(grown_run, capsys):
    from selfexpand.cli import main

    assert main(["inspect", str(grown_run)]) == 0
    text = capsys.readouterr().out
    model, _ = load_run(grown_run)
    summary = read_summary(grown_run)
    for name in model.order:
        line = next(ln for ln in text.splitlines() if ln.split()[:1] == [name])
        assert f"{model.layers[name].size} units" in line
    for c in model.connections.values():
        assert f"stored {c.shape[0]}x{c.shape[1]}" in text
    counts = model.counts()
    assert f"params {counts['params']}," in text and f"stored_params {counts['stored_params']}" in text
    assert f"growth events: {summary['growth_events']} " in text
    events = [r for r in read_history(grown_run) if r["type"] == "growth"]
    listed = [ln for ln in text.splitlines() if ln.strip().startswith("epoch ")]
    assert len(listed) == len(events)
    for line, event in zip(listed, events):
        assert line.split()[1:3] == [str(event["epoch"]), event["kind"]]
        assert f"params {event['params_before']} -> {event['params_after']}" in line
    assert f"test accuracy {summary['test_metric']:.4f}" in text


def test_twin_has_the_final_architecture_fresh_values_same_epochs(grown_run, tmp_path):
    twin_dir = tmp_path / "twin"
    out = run_ok("train", "--twin-of", grown_run, "--out", twin_dir, "--quiet")
    assert str(twin_dir) in out
    source, twin = read_summary(grown_run), read_summary(twin_dir)
    assert "twin" in twin["method"] and twin["method"].startswith(source["method"])
    assert twin["epochs"] == source["epochs"] and twin["seed"] == source["seed"]
    assert twin["growth_events"] == twin["units_added"] == twin["edges_added"] == 0
    for key in ("params", "weights_active", "stored_params"):
        assert twin[f"{key}_final"] == source[f"{key}_final"]
        assert twin["params_start"] == source["params_final"]

    grown_model, _ = load_run(grown_run)
    twin_model, _ = load_run(twin_dir)
    assert _architecture(twin_model) == _architecture(grown_model)
    differs = [not torch.equal(a.weight, b.weight) for a, b in
               zip(grown_model.connections.values(), twin_model.connections.values())]
    assert all(differs), "the twin must start from fresh values, not the grown run's"

    config = yaml.safe_load((twin_dir / "config.yaml").read_text())
    original = yaml.safe_load((grown_run / "config.yaml").read_text())
    assert config["twin_of"] == str(grown_run)
    for key in ("lr", "batch_size"):
        assert config[key] == original[key]
    for key in ("optimizer", "weight_decay"):
        assert config["settings"][key] == original["settings"][key]
    history = read_history(twin_dir)
    assert [r["epoch"] for r in history if r["type"] == "epoch"] == list(range(1, source["epochs"] + 1))
    assert not [r for r in history if r["type"] == "growth"]


def test_resume_extends_a_run(grown_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(grown_run, run_dir)
    before = read_summary(run_dir)
    out = run_ok("resume", run_dir, "--epochs", before["epochs"] + 2, "--quiet")
    after = read_summary(run_dir)
    assert str(run_dir) in out
    assert after["epochs"] == before["epochs"] + 2
    assert after["params_start"] == before["params_start"]
    assert after["growth_events"] >= before["growth_events"]
    epochs = [r["epoch"] for r in read_history(run_dir) if r["type"] == "epoch"]
    assert epochs == list(range(1, before["epochs"] + 3))


def test_resume_continues_exactly(tmp_path):
    """3 epochs, then resume to 6 == 6 epochs at once (growth, pruning, data order, optimizer)."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_ok("train", "--epochs", 6, "--out", straight, "--quiet", *GROW_FAST)
    run_ok("train", "--epochs", 3, "--out", split, "--quiet", *GROW_FAST)
    run_ok("resume", split, "--epochs", 6, "--quiet")
    a, b = read_summary(straight), read_summary(split)
    for key in ("epochs", "test_metric", "best_val_metric", "params_final", "growth_events", "edges_pruned"):
        assert a[key] == b[key], key
    model_a, _ = load_run(straight)
    model_b, _ = load_run(split)
    assert model_a.spec() == model_b.spec()
    state_b = model_b.state_dict()
    for key, value in model_a.state_dict().items():
        assert torch.equal(value, state_b[key]), key


def test_resume_of_a_twin_stays_static(grown_run, tmp_path):
    twin_dir = tmp_path / "twin"
    run_ok("train", "--twin-of", grown_run, "--out", twin_dir, "--quiet")
    epochs = read_summary(twin_dir)["epochs"]
    run_ok("resume", twin_dir, "--epochs", epochs + 2, "--quiet")
    after = read_summary(twin_dir)
    assert after["epochs"] == epochs + 2 and "twin" in after["method"] and after["growth_events"] == 0


def test_load_run_reproduces_predict_on_raw_digits(grown_run, tmp_path, capsys):
    from sklearn.datasets import load_digits

    from selfexpand.cli import main

    raw = load_digits().data[:40]  # raw pixels 0..16
    path = tmp_path / "digits.npz"
    np.savez(path, X=raw)
    assert main(["predict", str(grown_run), str(path)]) == 0
    printed = [int(v) for v in capsys.readouterr().out.split()]

    model, prep = load_run(grown_run)
    assert not model.training
    with torch.no_grad():
        mine = decode_labels(prep, model(preprocess_features(prep, raw)).argmax(1))
    assert mine == printed
    assert np.mean(np.asarray(mine) == load_digits().target[:40]) > 0.8
    # 8x8 images are accepted as well as flat rows
    with torch.no_grad():
        images = model(preprocess_features(prep, raw.reshape(-1, 8, 8)))
    assert decode_labels(prep, images.argmax(1)) == printed


def test_resume_without_epochs_of_a_finished_run_changes_nothing(grown_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(grown_run, run_dir)
    before = read_summary(run_dir)
    status, _, err = run_main("resume", run_dir, "--quiet")
    assert status == 0, err
    after = read_summary(run_dir)
    for key in ("epochs", "test_metric", "params_final", "growth_events"):
        assert after[key] == before[key]


@pytest.mark.parametrize("command", ["inspect", "resume"])
def test_run_directory_without_checkpoint_is_refused(grown_run, tmp_path, command):
    run_dir = tmp_path / "run"
    shutil.copytree(grown_run, run_dir)
    (run_dir / "checkpoint" / "last.safetensors").unlink()
    (run_dir / "model.safetensors").unlink()
    status, out, err = run_main(command, run_dir)
    assert status == 2 and len(err.splitlines()) == 1 and "Traceback" not in err

"""SENN end to end: a short moons run grows a layer through natural-gradient training, resumes
exactly (the optimizer checkpointed too), and its static twin starts its rational activation afresh."""

from __future__ import annotations

import json

import torch

from selfexpand.checkpoint import load_checkpoint
from selfexpand.graph.rational import RationalActivation
from selfexpand.runs import RunConfig, resume_run, train_run, twin_config

# grow_until 1: the moons row stops growth at half the run, which a 7-epoch run resumed to 12 would move
FAST = {"bursts": 3, "cooldown": 5, "layer_cooldown": 1, "tau": 0.05, "alpha": 1e-5, "optimizer": "natural", "lr": 0.1,
        "grow_until": 1.0}


def _epochs(run_dir):
    return [json.loads(line) for line in open(run_dir / "history.jsonl") if '"epoch"' in line
            and json.loads(line)["type"] == "epoch"]


def test_moons_run_grows_depth_resumes_exactly_and_has_a_twin(tmp_path):
    torch.set_num_threads(1)
    full_dir, full = train_run(RunConfig(method="senn", dataset="moons", epochs=12, seed=1, settings=FAST,
                                         out=str(tmp_path / "full")))
    net = load_checkpoint(full_dir / "model.safetensors").model
    assert full["growth_events"] >= 1 and len(net.hidden_layers()) >= 1
    rational = [net.layers[n].activation for n in net.hidden_layers()
                if isinstance(net.layers[n].activation, RationalActivation)]
    assert rational and any(a.coefficients.tolist() != [0.0, 0.0, 1.0] for a in rational)  # they train

    part_dir, _ = train_run(RunConfig(method="senn", dataset="moons", epochs=7, seed=1, settings=FAST,
                                      out=str(tmp_path / "part")))
    _, resumed = resume_run(part_dir, epochs=12)
    assert resumed["test_metric"] == full["test_metric"] and resumed["params_final"] == full["params_final"]
    assert [r["val_loss"] for r in _epochs(part_dir)] == [r["val_loss"] for r in _epochs(full_dir)]

    twin_dir, twin = train_run(twin_config(full_dir, out=str(tmp_path / "twin")))
    assert twin["params_final"] == full["params_final"] and twin["growth_events"] == 0

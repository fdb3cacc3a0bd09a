"""``selfexpand train --front NAME``: a fixed conv front before the growable layers, end to end.

Digits (flat 64 values, raw shape 8x8) train behind ``conv-small`` in well under a second per epoch;
the CIFAR-10 subset runs one epoch when the shared data is there.
"""

from __future__ import annotations

import pytest
import torch
import yaml

from clikit import GROW_FAST, read_summary, run_main, run_ok, write_classification_csv
from selfexpand import load_run
from selfexpand.checkpoint import load_checkpoint

SMALL_HEAD = ["--set", "hidden=[8]"]
# conv-small on a 1x8x8 image: 32 features; the head 32 -> 8 -> 10
DIGITS_FRONT_PARAMS = 1 * 16 * 9 + 16 * 32 * 9 + 2 * (16 + 32)
DIGITS_HEAD_PARAMS = 32 * 8 + 8 + 8 * 10 + 10


def _front_run(out, *extra):
    threads = torch.get_num_threads()  # the CLI sets one thread for digits; a fixture must not leak it
    try:
        return run_ok("train", "--front", "conv-small", "--epochs", 2, *SMALL_HEAD, *GROW_FAST,
                      "--out", out, "--quiet", *extra)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def front_run(tmp_path_factory):
    """A 2-epoch edge-expansion run on digits behind conv-small, growing once: ``(run dir, stdout)``."""
    run_dir = tmp_path_factory.mktemp("front") / "run"
    return run_dir, _front_run(run_dir)


@pytest.fixture(scope="module")
def front_twin(front_run):
    run_dir = front_run[0].parent / "twin"
    threads = torch.get_num_threads()
    try:
        run_ok("train", "--twin-of", front_run[0], "--out", run_dir, "--quiet")
    finally:
        torch.set_num_threads(threads)
    return run_dir


def _model(run_dir):
    return load_checkpoint(run_dir / "model.safetensors").model


def test_digits_train_behind_the_front(front_run):
    run_dir, out = front_run
    summary = read_summary(run_dir)
    assert summary["front_params"] == DIGITS_FRONT_PARAMS
    assert summary["params_start"] == DIGITS_HEAD_PARAMS  # params never include the front
    assert summary["growth_events"] >= 1 and summary["params_final"] > DIGITS_HEAD_PARAMS
    table = dict(line.split(None, 1) for line in out.splitlines())
    assert table["front_params"].strip() == str(DIGITS_FRONT_PARAMS)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["front"] == "conv-small"
    model = _model(run_dir)
    assert model.spec()["front"] == {"type": "conv-small", "in_shape": [1, 8, 8]}
    assert model.counts()["front_params"] == DIGITS_FRONT_PARAMS


def test_the_finished_front_model_predicts_from_flat_rows(front_run):
    model, prep = load_run(front_run[0])
    assert not model.training
    with torch.no_grad():
        out = model(torch.rand(5, 64))
    assert out.shape == (5, 10) and torch.isfinite(out).all()
    assert prep["raw_shape"] == [8, 8]


def test_the_front_is_drawn_from_the_run_seed(front_run, tmp_path):
    again = tmp_path / "again"
    _front_run(again)
    first, second = _model(front_run[0]).state_dict(), _model(again).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = tmp_path / "other-seed"
    _front_run(other, "--seed", 1)
    assert not torch.equal(_model(other).front.body[0].weight, first["front.body.0.weight"])


def test_twin_of_a_front_run_is_freshly_drawn(front_run, front_twin):
    source, twin = _model(front_run[0]), _model(front_twin)
    assert twin.spec()["front"] == source.spec()["front"]
    assert twin.widths() == source.widths() != [32, 8, 10]  # the grown architecture
    for name, value in source.front.state_dict().items():
        if value.is_floating_point():
            assert not torch.equal(twin.front.state_dict()[name], value), name
    summary = read_summary(front_twin)
    assert summary["method"] == "edge-twin" and summary["front_params"] == DIGITS_FRONT_PARAMS
    assert summary["params_start"] == read_summary(front_run[0])["params_final"]
    assert yaml.safe_load((front_twin / "config.yaml").read_text())["front"] == "conv-small"


def test_resume_a_front_run(front_twin, tmp_path):
    import shutil

    run_dir = tmp_path / "resumed"
    shutil.copytree(front_twin, run_dir)
    run_ok("resume", run_dir, "--epochs", 3, "--quiet")
    summary = read_summary(run_dir)
    assert summary["epochs"] == 3 and summary["front_params"] == DIGITS_FRONT_PARAMS


def test_cifar10_subset_trains_behind_conv_small(shared_dataset, tmp_path):
    data_dir = shared_dataset("cifar10-subset").parent
    run_dir = tmp_path / "cifar"
    run_ok("train", "--dataset", "cifar10", "--data-dir", data_dir, "--front", "conv-small",
           "--method", "static", "--epochs", 1, *SMALL_HEAD, "--batch-size", 100, "--out", run_dir,
           "--quiet")
    summary = read_summary(run_dir)
    assert summary["dataset"] == "cifar10" and summary["epochs"] == 1
    assert summary["front_params"] == 3 * 16 * 9 + 16 * 32 * 9 + 2 * (16 + 32)
    assert summary["params_start"] == 512 * 8 + 8 + 8 * 10 + 10  # 32 channels x 4 x 4
    assert 0.0 <= summary["test_metric"] <= 1.0


def _fails(*argv) -> str:
    status, out, err = run_main(*argv)
    assert status == 2, f"exit {status}: {err}"
    assert err.count("\n") == 1 and err.startswith("selfexpand: error: ") and "Traceback" not in err
    return err


def test_a_front_needs_image_inputs(tmp_path):
    data = tmp_path / "colours.csv"
    write_classification_csv(data)
    out = tmp_path / "run"
    err = _fails("train", "--dataset", data, "--target", "colour", "--front", "conv", "--out", out,
                 "--quiet")
    assert "front 'conv' needs image inputs" in err and "input_shape=[4]" in err
    assert not out.exists()  # nothing written


def test_unknown_front_names_are_refused(tmp_path):
    err = _fails("train", "--front", "resnet", "--out", tmp_path / "a")
    assert "--front" in err and "invalid choice" in err and "conv-small" in err
    config = tmp_path / "run.yaml"
    config.write_text("front: resnet\nepochs: 1\n")
    err = _fails("train", "--config", config, "--out", tmp_path / "b", "--quiet")
    assert "front must be one of ['conv', 'conv-small'], got front='resnet'" in err
    assert not (tmp_path / "b").exists()


def test_twin_of_refuses_a_front(front_run, tmp_path):
    err = _fails("train", "--twin-of", front_run[0], "--front", "conv", "--out", tmp_path / "t")
    assert "--twin-of" in err and "--front" in err

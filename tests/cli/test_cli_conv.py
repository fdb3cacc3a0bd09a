"""``selfexpand train`` with a conv start (issue #24) on the real images: random, zero and net2net on
256 CIFAR-10-subset / MNIST images for 2 epochs grow channels and report inactivity per channel; a conv
run's twin, export and prediction; refusals. Needs ../shared/data (skips, or fails under CI=true)."""

from __future__ import annotations

import json

import pytest
import torch

from clikit import read_summary, run_main, run_ok
from selfexpand import load_run
from selfexpand.graph.conv import ConvLayer

QUICK = ["--set", "limit=256", "--epochs", 2, "--quiet"]


def _train(*argv):
    threads = torch.get_num_threads()
    try:
        return run_ok("train", *argv)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("dataset,folder,conv", [("cifar10", "cifar10-subset", []), ("mnist", "mnist", ["--set", "conv=[4,8]"])])
@pytest.mark.parametrize("method", ["random", "zero", "net2net", "gradmax"])
def test_conv_methods_grow_channels_and_report_inactivity(shared_dataset, tmp_path, method, dataset, folder, conv):
    data_dir = shared_dataset(folder).parent
    run_dir = tmp_path / "run"
    _train("--method", method, "--dataset", dataset, "--data-dir", data_dir, *conv, *QUICK, "--out", run_dir)
    summary = read_summary(run_dir)
    assert summary["growth_events"] >= 2 and summary["units_added"] > 0
    assert summary["params_final"] > summary["params_start"]
    assert summary["inactive_units_fraction"] is not None
    records = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    kinds = {r["kind"] for r in records if r["type"] == "growth"}
    channel_kind = "split_channels" if method == "net2net" else "add_channels"
    assert channel_kind in kinds  # mnist's row keeps its dense hidden=[8], which grows units beside
    model, prep = load_run(run_dir)
    convs = [n for n in model.order if isinstance(model.layers[n], ConvLayer)]
    assert set(convs) <= set(records[-1 if records[-1]["type"] == "epoch" else -2].get("inactivity") or
                              next(r for r in reversed(records) if r["type"] == "epoch")["inactivity"])
    start = [4, 8, 16] if dataset == "cifar10" else [4, 8]
    assert [model.layers[n].size for n in convs] > start and len(convs) == len(start)
    assert prep["input_shape"] == ([3, 32, 32] if dataset == "cifar10" else [1, 28, 28])


@pytest.fixture(scope="module")
def mnist_conv_run(shared_dataset, tmp_path_factory):
    data_dir = shared_dataset("mnist").parent
    run_dir = tmp_path_factory.mktemp("conv") / "run"
    _train("--method", "zero", "--dataset", "mnist", "--data-dir", data_dir, "--set", "conv=[4]",
           "--set", "hidden=[6]", *QUICK, "--out", run_dir)
    return run_dir, data_dir


def test_a_conv_runs_twin_is_its_final_network_static(mnist_conv_run):
    run_dir, data_dir = mnist_conv_run
    twin = run_dir.parent / "twin"
    _train("--twin-of", run_dir, "--out", twin, "--quiet")
    summary, grown = read_summary(twin), read_summary(run_dir)
    assert summary["method"] == "zero-twin" and summary["growth_events"] == 0
    assert summary["params_start"] == summary["params_final"] == grown["params_final"]
    assert load_run(twin)[0].widths() == load_run(run_dir)[0].widths()


def test_a_conv_run_exports_and_predicts_from_flat_rows(mnist_conv_run, tmp_path):
    run_dir, _ = mnist_conv_run
    model, prep = load_run(run_dir)
    plain = model.export()
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(plain(x), model(x), atol=1e-6)
    rows = tmp_path / "rows.csv"
    rows.write_text("\n".join(",".join("0.5" for _ in range(784)) for _ in range(3)) + "\n")
    status, out, err = run_main("predict", run_dir, rows)
    assert status == 0, err
    assert len(out.split()) >= 3


@pytest.mark.parametrize("argv,message", [
    (["--method", "edge", "--set", "conv=[4]"], "cannot grow a conv start yet"),
    (["--method", "random", "--set", "conv=[4]", "--front", "conv-small"], "fixed front"),
    (["--method", "edge", "--dataset", "cifar10"], None),  # edge's cifar10 row stays dense: no refusal there
])
def test_refusals_name_what_is_missing(argv, message, tmp_path):
    if message is None:
        from selfexpand.presets import resolve_config
        assert resolve_config("edge", "cifar10")["conv"] == []
        return
    status, _, err = run_main("train", "--dataset", "digits", *argv, "--epochs", 1, "--out", tmp_path / "r")
    assert status != 0 and message in err and "Traceback" not in err


def test_a_table_refuses_a_conv_start(tmp_path):
    status, _, err = run_main("train", "--method", "random", "--dataset", "spirals", "--set", "conv=[4]",
                              "--epochs", 1, "--out", tmp_path / "r")
    assert status != 0 and "no image shape" in err


@pytest.mark.parametrize("dataset,folder,conv", [
    ("cifar10", "cifar10-subset", ["--set", "capacity=[7,11,19]"]),
    ("mnist", "mnist", ["--set", "conv=[4,8]", "--set", "hidden=[]", "--set", "capacity=[7,11]",
                        "--set", "conv_pairs=4096", "--set", "sample_size=256", "--set", "proposals=16",
                        "--set", "ascent_steps=10"])])
def test_senn_grows_channels_from_the_cli_and_reports_inactivity(shared_dataset, tmp_path, dataset, folder, conv):
    """SENN's conv width (its cifar10 row; a conv start on mnist): every threshold at 0 so that the one
    check of a 2-epoch run accepts, as a longer run's checks do; capacities 2-3 channels above the start
    (each accepted channel is one more search)."""
    data_dir = shared_dataset(folder).parent
    run_dir = tmp_path / "run"
    _train("--method", "senn", "--dataset", dataset, "--data-dir", data_dir, *conv, "--set", "tau=0",
           "--set", "alpha=0", *QUICK, "--out", run_dir)
    summary = read_summary(run_dir)
    assert summary["growth_events"] >= 1 and summary["units_added"] > 0
    assert summary["inactive_units_fraction"] is not None
    records = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in records if r["type"] == "growth"} == {"add_channels"}
    model, _ = load_run(run_dir)
    convs = [n for n in model.order if isinstance(model.layers[n], ConvLayer)]
    epoch = next(r for r in reversed(records) if r["type"] == "epoch")
    assert set(convs) <= set(epoch["inactivity"])
    start = [4, 8, 16] if dataset == "cifar10" else [4, 8]
    assert [model.layers[n].size for n in convs] > start

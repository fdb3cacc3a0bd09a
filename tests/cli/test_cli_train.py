"""``selfexpand train`` / ``predict`` end to end on the user's own CSV files, and the run directory."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import yaml

from clikit import CLASSES, CSV_TRAINING, read_history, read_summary, run_main, run_ok, \
    write_classification_csv, write_regression_csv
from selfexpand import load_run, predict_file
from selfexpand.data import decode_labels, decode_targets, preprocess_features
from selfexpand.report.summary import SUMMARY_TABLE_KEYS

SUMMARY_TYPES = {
    "method": str, "dataset": str, "seed": int, "epochs": int, "metric_name": str, "higher_is_better": bool,
    "test_metric": float, "best_val_metric": float, "params_start": int, "params_final": int,
    "weights_active_final": int, "stored_params_final": int, "train_seconds": float,
    "growth_seconds": float, "growth_events": int, "units_added": int, "edges_added": int,
    "edges_pruned": int,
}
RUN_FILES = ("config.yaml", "summary.json", "history.jsonl", "checkpoint/last.safetensors", "growth.png",
             "environment.json", "model.safetensors", "preprocessing.json", "run.json")


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    """A 5-epoch run on a 300-row CSV with a string target: ``(csv path, labels, run dir, stdout)``."""
    root = tmp_path_factory.mktemp("colours")
    data = root / "colours.csv"
    labels = write_classification_csv(data)
    run_dir = root / "run"
    out = run_ok("train", "--dataset", data, "--target", "colour", "--epochs", 5, "--out", run_dir,
                 "--quiet", *CSV_TRAINING)
    return data, labels, run_dir, out


def _check_run_directory(run_dir, *, epochs: int) -> dict:
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), f"{name} missing from the run directory"
    assert (run_dir / "growth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = read_summary(run_dir)
    for key, kind in SUMMARY_TYPES.items():
        assert key in summary, f"summary.json lacks {key!r}"
        assert type(summary[key]) is kind, f"{key}={summary[key]!r} is not {kind.__name__}"
    assert summary["epochs"] == epochs
    assert summary["params_start"] > 0 and summary["params_final"] > 0
    assert summary["weights_active_final"] < summary["params_final"] <= summary["stored_params_final"]
    for key in ("units_added", "edges_added", "edges_pruned", "growth_events"):
        assert summary[key] >= 0
    assert math.isfinite(summary["test_metric"]) and math.isfinite(summary["best_val_metric"])
    history = read_history(run_dir)
    assert [r["epoch"] for r in history if r["type"] == "epoch"] == list(range(1, epochs + 1))
    env = json.loads((run_dir / "environment.json").read_text())
    assert {"python", "torch", "selfexpand", "seed", "device", "command"} <= set(env)
    assert env["command"][:2] == ["selfexpand", "train"]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["epochs"] == epochs and "out" not in config  # config.yaml is a --config: no folder in it
    return summary


def test_csv_classification_run_directory(colour_run):
    data, _, run_dir, out = colour_run
    summary = _check_run_directory(run_dir, epochs=5)
    assert summary["method"] == "edge" and summary["dataset"] == "colours"
    assert summary["metric_name"] == "accuracy" and summary["higher_is_better"] is True
    assert summary["test_metric"] > 0.8  # three separated blobs
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["target"] == "colour" and config["lr"] == 0.05
    assert config["batch_size"] == 16
    # the final table on stdout: every key (the metric by its name), and the run directory
    table = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in out.splitlines())
    named = {"test_metric": "test accuracy", "best_val_metric": "best val accuracy"}
    assert {named.get(k, k) for k in SUMMARY_TABLE_KEYS} <= set(table)
    assert table["epochs"] == "5" and table["method"] == "edge"
    assert table["test accuracy"] == f"{summary['test_metric']:.4f}"
    assert "None" not in out
    assert table["run directory"] == str(run_dir) and out.splitlines()[-1].endswith(str(run_dir))


def test_predict_prints_decoded_labels_matching_predict_file(colour_run, capsys):
    from selfexpand.cli import main

    data, labels, run_dir, _ = colour_run
    assert main(["predict", str(run_dir), str(data)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(labels)
    assert set(printed) <= set(CLASSES)
    assert printed == [str(v) for v in predict_file(run_dir, data)]
    right = np.mean([p == t for p, t in zip(printed, labels)])
    assert right > 0.85, f"only {right:.2f} of the training rows predicted right"


def test_load_run_model_and_preprocessing_reproduce_predict(colour_run):
    data, _, run_dir, _ = colour_run
    model, prep = load_run(run_dir)
    assert prep["task"] == "classification" and prep["class_labels"] == list(CLASSES)
    assert prep["feature_names"] == ["f0", "f1", "f2", "f3"]
    table = np.genfromtxt(data, delimiter=",", names=True, dtype=None, encoding="utf-8")
    raw = np.column_stack([table[name] for name in ("f0", "f1", "f2", "f3")])
    logits = model(preprocess_features(prep, raw)).detach()
    assert decode_labels(prep, logits.argmax(1)) == predict_file(run_dir, data)
    # the stored standardisation is applied: raw values (mean about 50) give other answers
    assert not np.allclose(preprocess_features(prep, raw).numpy(), raw)


def test_predict_ignores_column_order_and_extra_columns(colour_run, tmp_path, capsys):
    from selfexpand.cli import main

    data, _, run_dir, _ = colour_run
    rows = [line.split(",") for line in data.read_text().splitlines()]
    order = [3, 0, 4, 1]  # f2, f0, f3, f1 without the target, plus a column of noise
    lines = [",".join([r[i] for i in order] + ["extra" if k == 0 else "7"]) for k, r in enumerate(rows)]
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join(lines) + "\n")
    assert main(["predict", str(run_dir), str(shuffled)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(v) for v in predict_file(run_dir, data)]


def test_csv_regression_run_and_predict(tmp_path, capsys):
    from selfexpand.cli import main

    data = tmp_path / "linear.csv"
    table = write_regression_csv(data)
    test_file = tmp_path / "flipped.csv"  # the test set follows another rule: test mse must show it
    write_regression_csv(test_file, n=60, seed=2, sign=-1.0)
    run_dir = tmp_path / "run"
    out = run_ok("train", "--dataset", data, "--target", "y", "--test-file", test_file, "--epochs", 5,
                 "--out", run_dir, "--quiet", *CSV_TRAINING)
    assert str(run_dir) in out
    summary = _check_run_directory(run_dir, epochs=5)
    assert summary["metric_name"] == "mse" and summary["higher_is_better"] is False
    variance = float(np.var(table[:, -1]))
    assert summary["best_val_metric"] < 0.3 * variance
    assert summary["test_metric"] > 3 * summary["best_val_metric"]

    assert main(["predict", str(run_dir), str(data)]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = predict_file(run_dir, data)
    assert len(printed) == len(table) and all(len(row) == 1 for row in printed)
    assert np.allclose(printed, expected, rtol=1e-6, atol=1e-6)
    assert np.mean((np.asarray(printed)[:, 0] - table[:, -1]) ** 2) < 0.3 * variance

    model, prep = load_run(run_dir)
    assert prep["task"] == "regression"
    direct = decode_targets(prep, model(preprocess_features(prep, table[:, :4]))).detach().numpy()
    assert np.allclose(direct, expected, rtol=1e-6, atol=1e-6)


def test_npz_dataset_with_integer_labels(tmp_path, capsys):
    from selfexpand.cli import main

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200) * 5  # labels 0 and 5
    x = rng.normal(size=(200, 3)) + y[:, None] / 2.0
    data = tmp_path / "pairs.npz"
    np.savez(data, X=x, y=y)
    run_ok("train", "--dataset", data, "--epochs", 3, "--out", tmp_path / "run", "--quiet", *CSV_TRAINING)
    assert main(["predict", str(tmp_path / "run"), str(data)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 200 and set(printed) <= {"0", "5"}
    assert np.mean([int(p) == t for p, t in zip(printed, y)]) > 0.8


def test_config_file_and_set_are_resolved_into_config_yaml(tmp_path):
    config = tmp_path / "my.yaml"
    config.write_text("epochs: 2\nbatch-size: 64\nseed: 3\nsettings:\n  tau: 0.5\nmax_new: 10\n")
    run_dir = tmp_path / "run"
    run_ok("train", "--config", config, "--set", "max_new=12", "--lr", "0.01", "--out", run_dir, "--quiet")
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["seed"] == 3 and resolved["epochs"] == 2
    r = resolved["settings"]
    assert (resolved["epochs"], resolved["batch_size"], resolved["lr"], r["tau"], r["max_new"]) == (2, 64, 0.01, 0.5, 12)
    summary = read_summary(run_dir)
    assert summary["seed"] == 3 and summary["epochs"] == 2


def test_static_method_does_not_grow(tmp_path):
    run_dir = tmp_path / "run"
    run_ok("train", "--method", "static", "--epochs", 3, "--set", "hidden=[8]", "--out", run_dir, "--quiet")
    summary = read_summary(run_dir)
    assert summary["method"] == "static" and summary["growth_events"] == 0
    assert summary["params_start"] == summary["params_final"] == 64 * 8 + 8 + 8 * 10 + 10


def test_same_seed_same_run(tmp_path):
    for name in ("a", "b"):
        run_ok("train", "--method", "static", "--epochs", 2, "--seed", 7, "--out", tmp_path / name, "--quiet")
    a, b = read_summary(tmp_path / "a"), read_summary(tmp_path / "b")
    assert a["test_metric"] == b["test_metric"] and a["best_val_metric"] == b["best_val_metric"]


def test_empty_existing_out_folder_is_used(tmp_path):
    (tmp_path / "empty").mkdir()
    status, _, err = run_main("train", "--method", "static", "--epochs", 1, "--out", tmp_path / "empty",
                              "--quiet")
    assert status == 0, err
    assert (tmp_path / "empty" / "summary.json").is_file()


# ------------------------------------------------------------------ options of issue #23
def _integer_target_csv(path) -> None:
    """A linear target rounded to whole numbers: read as classes unless told otherwise."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = np.round(2 * x[:, 0] + x[:, 1] + 5).astype(int)
    path.write_text("a,b,c,y\n" + "".join(f"{a:.3f},{b:.3f},{c:.3f},{t}\n" for (a, b, c), t in zip(x, y)))


def test_task_option_and_config_key_make_a_regression(tmp_path):
    data = tmp_path / "ints.csv"
    _integer_target_csv(data)
    common = ["--dataset", data, "--target", "y", "--epochs", 1, "--quiet", *CSV_TRAINING]
    run_ok("train", *common, "--out", tmp_path / "guessed")
    assert read_summary(tmp_path / "guessed")["metric_name"] == "accuracy"
    out = run_ok("train", *common, "--task", "regression", "--out", tmp_path / "told")
    assert read_summary(tmp_path / "told")["metric_name"] == "mse" and "test mse" in out
    config = tmp_path / "c.yaml"
    config.write_text("task: regression\n")
    run_ok("train", *common, "--config", config, "--out", tmp_path / "from-config")
    assert read_summary(tmp_path / "from-config")["metric_name"] == "mse"


@pytest.fixture
def captured(monkeypatch, tmp_path):
    """``resume_run``, ``run_bench`` / ``write_bench`` and ``run_sweep`` / ``write_sweep`` replaced by
    recorders of their arguments (nothing trains)."""
    import selfexpand.bench
    import selfexpand.sweep
    import selfexpand.sweep.report
    from selfexpand import runs

    calls = {}

    def record(name, result):
        def fake(*args, **kwargs):
            calls[name] = (args, kwargs)
            return result
        return fake

    summary = {"method": "edge", "test_metric": 0.5, "metric_name": "accuracy"}
    monkeypatch.setattr(runs, "resume_run", record("resume", (tmp_path / "run", summary)))
    monkeypatch.setattr(selfexpand.bench, "run_bench", record("bench", [{"method": "zero", "error": ""}]))
    monkeypatch.setattr(selfexpand.bench, "write_bench",
                        lambda rows, out, **kw: (out.mkdir(exist_ok=True), (out / "results.md").write_text("| t |\n")))
    monkeypatch.setattr(selfexpand.sweep, "run_sweep", record("sweep", object()))
    monkeypatch.setattr(selfexpand.sweep, "write_sweep", lambda result, out: None)
    monkeypatch.setattr(selfexpand.sweep.report, "summary_markdown", lambda result: "| s |\n")
    return calls


def test_resume_passes_lr_only_as_given(captured, tmp_path):
    run_ok("resume", tmp_path / "run", "--lr", "0.0005", "--quiet")
    assert captured["resume"][1]["lr"] == 0.0005
    run_ok("resume", tmp_path / "run", "--epochs", 9, "--quiet")
    assert captured["resume"][1]["lr"] is None and captured["resume"][1]["epochs"] == 9


DATA_FLAGS = ["--target", "y", "--test-file", "test.csv", "--task", "regression", "--val-fraction", "0.3"]
DATA_OPTIONS = {"target": "y", "test_file": "test.csv", "task": "regression", "val_fraction": 0.3}


def test_bench_data_options_and_resume(captured, tmp_path):
    out = tmp_path / "b"
    run_ok("bench", "--dataset", "t.csv", "--methods", "zero", "--out", out, "--quiet", *DATA_FLAGS)
    kwargs = captured["bench"][1]
    assert kwargs["data_options"] == DATA_OPTIONS and kwargs["resume"] is False
    run_ok("bench", "--dataset", "t.csv", "--methods", "zero", "--out", tmp_path / "c", "--quiet", "--task",
           "classification")
    assert captured["bench"][1]["data_options"] == {"task": "classification"}  # only the options given
    (out / "runs").mkdir()  # a bench folder with results in it: refused without --resume, continued with it
    status, _, err = run_main("bench", "--methods", "zero", "--out", out, "--quiet")
    assert status == 2 and "new or empty" in err
    del captured["bench"]
    run_ok("bench", "--methods", "zero", "--out", out, "--resume", "--quiet")
    args, kwargs = captured["bench"]
    assert kwargs["resume"] is True and str(args[3]) == str(out) and kwargs["data_options"] is None


def test_sweep_data_options(captured, tmp_path):
    run_ok("sweep", "--method", "size-weight", "--dataset", "bessel", "--out", tmp_path / "s", "--quiet",
           "--val-fraction", "0.25", "--task", "regression")
    assert captured["sweep"][1]["data_options"] == {"val_fraction": 0.25, "task": "regression"}
    run_ok("sweep", "--method", "size-weight", "--dataset", "bessel", "--out", tmp_path / "t", "--quiet")
    assert captured["sweep"][1]["data_options"] is None

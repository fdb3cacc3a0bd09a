"""Bad command lines: exit status 2, exactly one line on stderr naming the problem, no traceback,
nothing written. A few run as real processes to check the exit status the shell sees."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clikit import run_main, write_classification_csv
from selfexpand.data import dataset_names
from selfexpand.presets import method_names

NOT_YAML = "epochs: [1, 2\n"
A_LIST = "- 1\n- 2\n"

# (id, argv, files to create first {name: text}, substrings the message must contain)
CASES = [
    ("unknown-method", ["train", "--method", "grow-magic"], {}, ["grow-magic", *method_names()]),
    ("unknown-dataset", ["train", "--dataset", "no-such-set"], {}, ["no-such-set", *dataset_names()]),
    ("epochs-zero", ["train", "--epochs", "0"], {}, ["--epochs", "'0'"]),
    ("epochs-negative", ["train", "--epochs", "-3"], {}, ["--epochs", "'-3'"]),
    ("epochs-not-a-number", ["train", "--epochs", "abc"], {}, ["--epochs", "'abc'"]),
    ("batch-size-zero", ["train", "--batch-size", "0"], {}, ["--batch-size", "'0'"]),
    ("lr-zero", ["train", "--lr", "0"], {}, ["--lr", "'0'"]),
    ("lr-infinite", ["train", "--lr", "inf"], {}, ["--lr", "must be a number > 0", "'inf'"]),
    ("epochs-fractional", ["train", "--epochs", "2.5"], {}, ["--epochs", "must be a positive integer", "'2.5'"]),
    ("epochs-bool", ["train", "--epochs", "true"], {}, ["--epochs", "'true'"]),
    ("val-fraction-nan", ["train", "--val-fraction", "nan"], {}, ["--val-fraction", "must be a number in (0, 1)",
                                                                  "'nan'"]),
    ("set-unknown-key", ["train", "--set", "bogus=1"], {}, ["'bogus'", "tau", "max_new"]),
    ("set-bad-value-type", ["train", "--set", "tau=abc"], {}, ["tau", "'abc'"]),
    ("set-without-equals", ["train", "--set", "tau"], {}, ["KEY=VALUE", "'tau'"]),
    ("set-empty-key", ["train", "--set", "=3"], {}, ["KEY=VALUE", "'=3'"]),
    ("set-key-of-other-method", ["train", "--method", "static", "--set", "tau=0.5"], {}, ["'tau'", "static"]),
    ("config-unreadable", ["train", "--config", "missing.yaml"], {}, ["missing.yaml", "cannot read"]),
    ("config-not-yaml", ["train", "--config", "bad.yaml"], {"bad.yaml": NOT_YAML}, ["bad.yaml", "YAML"]),
    ("config-not-mapping", ["train", "--config", "list.yaml"], {"list.yaml": A_LIST}, ["list.yaml", "mapping"]),
    ("config-settings-not-mapping", ["train", "--config", "s.yaml"], {"s.yaml": "settings: [1, 2]\n"},
     ["settings", "mapping"]),
    ("config-unknown-setting", ["train", "--config", "u.yaml"], {"u.yaml": "colour: red\n"}, ["'colour'"]),
    ("config-epochs-zero", ["train", "--config", "e.yaml"], {"e.yaml": "epochs: 0\n"}, ["epochs", "0"]),
    ("config-lr-negative", ["train", "--config", "l.yaml"], {"l.yaml": "lr: -1\n"}, ["lr", "-1"]),
    ("config-lr-text", ["train", "--config", "l.yaml"], {"l.yaml": "lr: fast\n"}, ["lr", "'fast'"]),
    ("config-bad-device", ["train", "--config", "d.yaml"], {"d.yaml": "device: tpu\n"}, ["device", "'tpu'"]),
    ("config-bad-optimizer", ["train", "--config", "o.yaml"], {"o.yaml": "optimizer: magic\n"},
     ["optimizer", "'magic'"]),
    ("config-weight-decay-negative", ["train", "--config", "w.yaml"], {"w.yaml": "weight_decay: -0.1\n"},
     ["weight_decay", "-0.1"]),
    ("set-epochs-zero", ["train", "--set", "epochs=0"], {}, ["epochs", "0"]),
    ("missing-data-folder", ["train", "--dataset", "mnist", "--data-dir", "/nonexistent/data"], {},
     ["mnist", "/nonexistent/data"]),
    ("val-fraction-above-one", ["train", "--val-fraction", "1.5"], {}, ["--val-fraction", "1.5"]),
    ("val-fraction-zero", ["train", "--val-fraction", "0"], {}, ["--val-fraction", "'0'"]),
    ("device-unknown", ["train", "--device", "tpu"], {}, ["--device", "'tpu'"]),
    ("target-with-named-dataset", ["train", "--dataset", "digits", "--target", "y"], {}, ["target", "digits"]),
    ("csv-not-found", ["train", "--dataset", "nothere.csv", "--target", "y"], {}, ["nothere.csv", "not found"]),
    ("csv-without-target", ["train", "--dataset", "t.csv"], {"t.csv": "a,b\n1,x\n2,y\n"}, ["target", "'a'", "'b'"]),
    ("csv-unknown-target", ["train", "--dataset", "t.csv", "--target", "z"], {"t.csv": "a,b\n1,x\n2,y\n"},
     ["'z'", "known columns"]),
    ("out-not-empty", ["train", "--out", "full"], {"full/keep.txt": "mine"}, ["out", "full"]),
    ("twin-with-training-options", ["train", "--twin-of", "somewhere", "--epochs", "3"], {},
     ["--twin-of", "--epochs"]),
    ("twin-of-non-run", ["train", "--twin-of", "plain"], {"plain/x.txt": "x"}, ["plain", "run directory"]),
    ("resume-non-run", ["resume", "plain"], {"plain/x.txt": "x"}, ["plain", "run directory"]),
    ("resume-missing-folder", ["resume", "gone"], {}, ["gone", "run directory"]),
    ("resume-epochs-zero", ["resume", "plain", "--epochs", "0"], {"plain/x.txt": "x"}, ["--epochs", "'0'"]),
    ("inspect-non-run", ["inspect", "plain"], {"plain/x.txt": "x"}, ["plain", "run directory"]),
    ("predict-non-run", ["predict", "plain", "t.csv"], {"plain/x.txt": "x", "t.csv": "a\n1\n"}, ["plain"]),
    ("unknown-command", ["grow"], {}, ["'grow'", "train", "resume", "inspect", "predict"]),
    ("out-empty", ["train", "--out", ""], {}, ["--out must not be empty"]),
    ("out-blank-in-config", ["train", "--config", "o.yaml"], {"o.yaml": "out: ''\n"}, ["--out must not be empty"]),
    ("bench-out-empty", ["bench", "--methods", "zero", "--out", ""], {}, ["--out must not be empty"]),
    ("sweep-out-empty", ["sweep", "--method", "size-weight", "--dataset", "bessel", "--out", ""], {},
     ["--out must not be empty"]),
    ("predict-out-empty", ["predict", "plain", "t.csv", "--out", ""], {"plain/x.txt": "x", "t.csv": "a\n1\n"},
     ["--out must not be empty"]),
    ("predict-out-in-missing-folder", ["predict", "plain", "t.csv", "--out", "nowhere/p.csv"],
     {"plain/x.txt": "x", "t.csv": "a\n1\n"}, ["nowhere"]),
    ("task-unknown", ["train", "--task", "ranking"], {}, ["--task", "'ranking'", "classification", "regression"]),
    ("bench-task-unknown", ["bench", "--methods", "zero", "--task", "ranking"], {}, ["--task", "'ranking'"]),
    ("bench-val-fraction-one", ["bench", "--methods", "zero", "--val-fraction", "1"], {}, ["--val-fraction", "'1'"]),
    ("bench-resume-without-out", ["bench", "--methods", "zero", "--resume"], {}, ["--resume", "--out"]),
    ("bench-resume-missing-folder", ["bench", "--methods", "zero", "--resume", "--out", "gone"], {},
     ["--resume", "'gone'"]),
    ("resume-lr-zero", ["resume", "plain", "--lr", "0"], {"plain/x.txt": "x"}, ["--lr", "'0'"]),
    ("unknown-option", ["train", "--colour", "red"], {}, ["--colour"]),
]


def _check_one_line_error(status: int, out: str, err: str, needles) -> None:
    assert status == 2, f"exit status {status}, stderr: {err!r}"
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert lines[0].startswith("selfexpand: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not named in {lines[0]!r}"
    assert out == ""


@pytest.mark.parametrize("argv, files, needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_invocation_exits_2_with_one_line(argv, files, needles, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SELFEXPAND_DATA", raising=False)
    for name, text in files.items():
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(text)
    before = sorted(str(p) for p in tmp_path.rglob("*"))

    _check_one_line_error(*run_main(*argv), needles)

    assert sorted(str(p) for p in tmp_path.rglob("*")) == before, "a failed command left files behind"


def test_unknown_dataset_without_data_dir_says_how_to_set_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SELFEXPAND_DATA", raising=False)
    _check_one_line_error(*run_main("train", "--dataset", "mnist"), ["mnist", "--data-dir", "SELFEXPAND_DATA"])
    assert not Path("runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _check_one_line_error(*run_main("train", "--device", "cuda", "--epochs", "1"), ["cuda", "not available"])
    assert not Path("runs").exists()


def test_bad_options_with_an_explicit_out_do_not_create_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _check_one_line_error(*run_main("train", "--set", "batch_size=0", "--out", "new-run"), ["batch_size"])
    assert not Path("new-run").exists()


def test_predict_missing_file_and_wrong_columns(grown_run, tmp_path):
    _check_one_line_error(*run_main("predict", grown_run, tmp_path / "absent.csv"), ["absent.csv"])
    csv = tmp_path / "t.csv"
    write_classification_csv(csv, n=10)  # 4 columns, the digits run wants 64
    _check_one_line_error(*run_main("predict", grown_run, csv), ["t.csv", "64"])
    _check_one_line_error(*run_main("predict", grown_run, tmp_path / "x.txt"), ["x.txt"])


def test_predict_csv_missing_a_feature_column(tmp_path):
    from clikit import CSV_TRAINING, run_ok

    data = tmp_path / "colours.csv"
    write_classification_csv(data, n=120)
    run_ok("train", "--dataset", data, "--target", "colour", "--epochs", 1, "--out", tmp_path / "run",
           "--quiet", *CSV_TRAINING)
    partial = tmp_path / "partial.csv"
    partial.write_text("f0,f1,f2\n1,2,3\n")
    _check_one_line_error(*run_main("predict", tmp_path / "run", partial), ["partial.csv", "f3"])


# ------------------------------------------------------------------ real processes
def _env() -> dict:
    return {**os.environ, "PYTHONWARNINGS": "ignore"}


def test_process_exit_status_2_for_bad_epochs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "selfexpand.cli", "train", "--epochs", "0"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=_env())
    _check_one_line_error(proc.returncode, proc.stdout, proc.stderr, ["--epochs", "'0'"])
    assert list(tmp_path.iterdir()) == []


def test_process_console_script_inspects_a_run(grown_run, tmp_path):
    script = Path(sys.executable).with_name("selfexpand")
    command = [str(script)] if script.exists() else [shutil.which("selfexpand") or ""]
    if not command[0]:
        pytest.skip("the selfexpand console script is not installed")
    proc = subprocess.run([*command, "inspect", str(grown_run)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert "layers (topological order):" in proc.stdout and "growth events:" in proc.stdout


def test_number_options_read_values_as_set_does():
    """``--epochs`` / ``--lr`` / ``--val-fraction`` check with the validator rules, reading text as ``--set``."""
    import argparse

    from selfexpand.cli import _fraction, _positive_float, _positive_int

    assert (_positive_int("3"), _positive_int("1e3"), _positive_int("4.0")) == (3, 1000, 4)
    assert type(_positive_float("1")) is float and _positive_float("5e-3") == 0.005
    assert _fraction(".25") == 0.25
    for parse, text in ((_positive_int, "0"), (_positive_int, "true"), (_positive_float, "inf"),
                        (_positive_float, "-1"), (_fraction, "1"), (_fraction, "nan")):
        with pytest.raises(argparse.ArgumentTypeError, match=f"got {text!r}"):
            parse(text)


# ------------------------------------------------------------------ exit status per kind of failure
@pytest.fixture
def failing_train(monkeypatch):
    """``train_run`` replaced by one that raises ``failing_train["error"]`` (with ``run_dir`` set on a
    KeyboardInterrupt when ``failing_train["run_dir"]`` is given)."""
    from selfexpand import runs

    box = {}

    def train_run(config, callbacks=(), command=None):
        error = box["error"]
        if "run_dir" in box:
            error.run_dir = box["run_dir"]
        raise error

    monkeypatch.setattr(runs, "train_run", train_run)
    return box


def test_training_stopped_exits_3_naming_the_run_and_how_to_continue(failing_train, tmp_path):
    from selfexpand.errors import TrainingStopped

    failing_train["error"] = TrainingStopped("the loss became nan at epoch 4", run_dir=tmp_path / "my run")
    status, out, err = run_main("train", "--quiet")
    assert status == 3 and out == "" and err.count("\n") == 1
    assert err.startswith("selfexpand: error: the loss became nan at epoch 4")
    assert f"selfexpand resume '{tmp_path / 'my run'}' --lr" in err


def test_a_library_error_exits_with_its_own_code(failing_train):
    from selfexpand.errors import RunLockedError, SelfExpandError

    failing_train["error"] = RunLockedError("run r is being written by process 12")
    _check_one_line_error(*run_main("train", "--quiet"), ["process 12"])

    class Odd(SelfExpandError):
        exit_code = 5

    failing_train["error"] = Odd("odd\nline")
    status, _, err = run_main("train", "--quiet")
    assert status == 5 and err == "selfexpand: error: odd line\n"


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 80000000000 bytes. Error code 12 (Cannot allocate memory)"),
    MemoryError(),
], ids=["cuda", "cpu-allocator", "python"])
def test_out_of_memory_is_one_line_with_a_hint(failing_train, error):
    failing_train["error"] = error
    _check_one_line_error(*run_main("train", "--quiet"), ["out of memory", "hidden", "--batch-size", "--max-params"])


def test_an_unexpected_error_keeps_its_traceback(failing_train):
    failing_train["error"] = RuntimeError("index 3 is out of bounds")
    with pytest.raises(RuntimeError, match="out of bounds"):
        run_main("train", "--quiet")


def test_interrupted_train_names_the_run_directory(failing_train, tmp_path):
    failing_train["error"], failing_train["run_dir"] = KeyboardInterrupt(), tmp_path / "r 1"
    status, out, err = run_main("train", "--quiet")
    assert status == 130 and out == ""
    assert err == f"selfexpand: interrupted; resume with `selfexpand resume '{tmp_path / 'r 1'}'`\n"
    del failing_train["run_dir"]  # interrupted before the run directory was made
    failing_train["error"] = KeyboardInterrupt()
    status, _, err = run_main("train", "--quiet")
    assert status == 130 and err == "selfexpand: interrupted; resume with `selfexpand resume RUN_DIR`\n"


def test_interrupted_resume_names_its_directory(monkeypatch, tmp_path):
    from selfexpand import runs

    def resume_run(run_dir, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "resume_run", resume_run)
    status, _, err = run_main("resume", tmp_path / "run", "--quiet")
    assert status == 130 and err == f"selfexpand: interrupted; resume with `selfexpand resume {tmp_path / 'run'}`\n"


def test_interrupted_bench_says_how_to_continue(monkeypatch, tmp_path):
    import selfexpand.bench

    def run_bench(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(selfexpand.bench, "run_bench", run_bench)
    out = tmp_path / "b"
    status, _, err = run_main("bench", "--methods", "zero,static", "--seeds", 2, "--out", out, "--quiet")
    assert status == 130 and err.count("\n") == 1
    assert err.startswith("selfexpand: interrupted; continue the bench with ")
    assert f"`selfexpand bench --methods zero,static --seeds 2 --quiet --resume --out {out}`" in err

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

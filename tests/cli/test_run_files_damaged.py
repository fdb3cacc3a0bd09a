"""Damaged run files never give a traceback (issue #23). Every file of a run directory is damaged in
three ways (cut in half; emptied or of the wrong JSON / YAML type; garbage bytes), and every command
that reads run directories runs on it: a command that needs the file exits 2 with exactly one
``selfexpand: error:`` line naming it; the others exit 0 (a warning is fine).

One tiny run is trained once and copied per case; the growth plot is replaced by a stub (the plot
is not what is tested, and drawing it is most of a tiny run's time).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from clikit import run_main, run_ok

GARBAGE = bytes(range(255, -1, -7)) * 9 + b"\x00\xff not a file of a run \xfe"

#: what each command reads and cannot do without (run.json: the run's identity)
NEEDS = {
    "inspect": {"run.json", "model.safetensors"},
    "predict": {"run.json", "model.safetensors", "preprocessing.json"},
    "resume": {"run.json", "config.yaml", "checkpoint/last.safetensors", "environment.json"},
    "twin": {"run.json", "config.yaml", "summary.json", "model.safetensors"},
}

#: "wrong": emptied, or valid JSON / YAML of the wrong type
WRONG = {"config.yaml": b"resolved: 5\n", "history.jsonl": b'[]\n{"type": "epoch"}\n',
         "model.safetensors": b"", "checkpoint/last.safetensors": b"", "growth.png": b""}

FILES = ["config.yaml", "run.json", "environment.json", "history.jsonl", "summary.json", "preprocessing.json",
         "model.safetensors", "checkpoint/last.safetensors", "growth.png"]


def _damaged(data: bytes, name: str, mode: str) -> bytes:
    if mode == "truncated":
        return data[:len(data) // 2]
    if mode == "wrong":
        return WRONG.get(name, b"[]")
    return GARBAGE


CASES = [(name, mode, _damaged) for name in FILES for mode in ("truncated", "wrong", "garbage")]
# config.yaml as issue #23 found it: one line left, another method, a preprocessing of no keys
CASES += [("config.yaml", "method-only", lambda data, name, mode: b"method: edge\n"),
          ("config.yaml", "method-changed", lambda data, name, mode: data.replace(b"method: edge", b"method: swe")),
          ("preprocessing.json", "empty-object", lambda data, name, mode: b"{}")]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished run (digits, edge, seed 1, a --set value) and a file of raw digits to predict."""
    import selfexpand.runs

    root = tmp_path_factory.mktemp("damaged")
    from sklearn.datasets import load_digits

    np.savez(root / "raw.npz", X=load_digits().data[:3])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(selfexpand.runs, "plot_growth", lambda records, path, *a, **k: Path(path).write_bytes(b"png"))
        run_ok("train", "--epochs", 2, "--seed", 1, "--set", "max_new=7", "--out", root / "run", "--quiet",
               "--threads", 1)
        yield root


def _commands(run: Path, raw: Path, tmp: Path) -> dict[str, list]:
    return {"inspect": ["inspect", run], "predict": ["predict", run, raw], "resume": ["resume", run, "--quiet"],
            "twin": ["train", "--twin-of", run, "--out", tmp / "twin", "--quiet"]}


@pytest.mark.parametrize("name, mode, damage", CASES, ids=[f"{n}-{m}" for n, m, _ in CASES])
def test_a_damaged_file_gives_one_error_line_naming_it_or_nothing(source, tmp_path, monkeypatch, name, mode, damage):
    import selfexpand.runs

    monkeypatch.setattr(selfexpand.runs, "plot_growth", lambda records, path, *a, **k: Path(path).write_bytes(b"png"))
    failures = []
    for command in NEEDS:
        run = tmp_path / command / "run"
        shutil.copytree(source / "run", run)
        path = run / name
        path.write_bytes(damage(path.read_bytes(), name, mode))
        code, _, err = run_main(*_commands(run, source / "raw.npz", tmp_path / command)[command])
        errors = [ln for ln in err.splitlines() if ln.startswith("selfexpand: error:")]
        if "Traceback" in err:
            failures.append(f"{command}: a traceback\n{err}")
        elif name in NEEDS[command] and not (code == 2 and len(errors) == 1 and Path(name).name in errors[0]):
            failures.append(f"{command}: needs {name}; expected exit 2 and one error line naming it, got {code}: {err}")
        elif name not in NEEDS[command] and (code != 0 or errors):
            failures.append(f"{command}: does not need {name}; expected exit 0, got {code}: {err}")
    assert not failures, "\n".join(failures)


def test_the_table_can_fail(source, tmp_path):
    """A planted case: the undamaged run passes every command, and a damaged needed file does not."""
    run = tmp_path / "run"
    shutil.copytree(source / "run", run)
    assert yaml.safe_load((run / "config.yaml").read_text())["settings"]["max_new"] == 7
    run_ok("inspect", run)
    (run / "model.safetensors").write_bytes(GARBAGE)
    code, _, err = run_main("inspect", run)
    assert code == 2 and "model.safetensors" in err

"""A setting its declaration refuses stops ``selfexpand train`` before any data is loaded: exit status 2,
one ``selfexpand: error:`` line naming the setting, no run directory. One case per numeric setting of
every method (training, start network and part settings alike), run in process through the CLI's
entry function; the data loader is replaced by one that fails the test if it is ever called."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "presets"))

from settings_kit import is_numeric, refused  # noqa: E402

from selfexpand import runs  # noqa: E402
from selfexpand.cli import main  # noqa: E402
from selfexpand.presets import method_names, method_settings  # noqa: E402

CASES = [(method, s.name, refused(s.rule)) for method in method_names()
         for _, s, _ in method_settings(method, "digits") if is_numeric(s.rule)]


@pytest.fixture
def no_data(monkeypatch):
    def load(*args, **kwargs):
        raise AssertionError("the dataset was loaded before the settings were checked")

    monkeypatch.setattr(runs, "load_dataset", load)


@pytest.mark.parametrize("method, key, text", CASES, ids=[f"{m}-{k}" for m, k, _ in CASES])
def test_a_refused_numeric_setting_exits_2_with_one_line_and_writes_nothing(method, key, text, tmp_path, capsys,
                                                                               no_data):
    out = tmp_path / "run"
    code = main(["train", "--method", method, "--dataset", "digits", "--set", f"{key}={text}", "--out", str(out),
                 "--quiet"])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("selfexpand: error: ") and key in lines[0], lines
    assert captured.out == "" and not out.exists() and not any(tmp_path.iterdir())


@pytest.mark.parametrize("key", ["step_size", "ascent_lr", "bursts", "reproposal"])
def test_senn_on_moons_refuses_a_zero_or_negative_search_setting(key, tmp_path, capsys, no_data):
    value = "-1" if key == "reproposal" else "0"
    code = main(["train", "--method", "senn", "--dataset", "moons", "--set", f"{key}={value}",
                 "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"{key} must be" in err and not (tmp_path / "run").exists()


def test_every_method_has_numeric_cases():
    assert {m for m, _, _ in CASES} == set(method_names())
    assert ("senn", "step_size", "0") in CASES and ("swe", "integration_epochs", "-1") in CASES

"""``selfexpand bench``: the three files with their columns on a tiny run, twins included, a failing
method recorded while the others go on (exit status 1), bad requests refused."""

from __future__ import annotations

import csv

import pytest

import dataclasses

from selfexpand.bench import BENCH_COLUMNS, run_bench, write_bench
from selfexpand.cli import main
from selfexpand.errors import ConfigError
from selfexpand.presets import get_preset, registry
from selfexpand.strategies import Trigger
from selfexpand.strategies import registry as parts


@dataclasses.dataclass(eq=False)
class _Boom(Trigger):
    name = "test-boom"

    def should_grow(self, ctx):
        raise RuntimeError("planted failure")


@pytest.fixture
def broken_method(monkeypatch):
    """A method ``broken`` (``zero`` with a trigger that raises at the end of the first epoch)."""
    monkeypatch.setitem(parts._PARTS["trigger"], _Boom.name, _Boom)
    zero = get_preset("zero")
    rows = {key: {k: v for k, v in row.items() if k not in ("every", "times")} for key, row in zero.rows.items()}
    monkeypatch.setitem(registry._METHODS, "broken", dataclasses.replace(zero, name="broken", trigger=_Boom.name,
                                                                          rows=rows))


def test_bench_writes_the_three_files_with_twins_and_survives_a_failing_method(tmp_path, broken_method):
    rows = run_bench("digits", ["zero", "broken", "static"], 2, tmp_path, epochs=2)
    write_bench(rows, tmp_path, command="selfexpand bench ...")
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0].keys()) == BENCH_COLUMNS
    zero = [r for r in table if r["method"] == "zero"]
    assert [(r["seed"], r["twin"]) for r in zero] == [("0", "False"), ("0", "True"), ("1", "False"), ("1", "True")]
    assert all(r["error"] == "" and float(r["test_metric"]) > 0 for r in zero)
    assert zero[0]["params_final"] == zero[1]["params_final"]  # the twin has the grown architecture
    broken = [r for r in table if r["method"] == "broken"]
    assert len(broken) == 2 and all("planted failure" in r["error"] for r in broken)
    static = [r for r in table if r["method"] == "static"]
    assert len(static) == 2 and all(r["twin"] == "False" for r in static)  # a static run has no twin
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("`selfexpand bench ...`") and "| zero | 2 |" in md and "planted failure" in md
    assert (tmp_path / "pareto.png").stat().st_size > 1000


def test_cli_bench_exit_status_is_1_when_a_run_failed(tmp_path, broken_method, capsys):
    code = main(["bench", "--dataset", "digits", "--methods", "zero,broken", "--epochs", "1", "--out",
                 str(tmp_path / "b"), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1 and "1 of 3 runs failed" in err and "| zero | 1 |" in out


def test_cli_bench_refuses_bad_requests(tmp_path, capsys):
    assert main(["bench", "--methods", "nope", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "methods must be names from" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    assert main(["bench", "--methods", "zero", "--out", str(tmp_path / "full"), "--quiet"]) == 2
    assert "new or empty folder" in capsys.readouterr().err


def test_run_bench_validates():
    with pytest.raises(ConfigError, match="seeds"):
        run_bench("digits", ["zero"], 0, "/tmp/unused")
    with pytest.raises(ConfigError, match="methods"):
        run_bench("digits", [], 1, "/tmp/unused")


def test_cli_bench_set_reaches_every_run_and_its_twin(tmp_path, capsys):
    code = main(["bench", "--dataset", "digits", "--methods", "zero", "--epochs", "2", "--set", "units=1",
                 "--set", "lr=0.05", "--out", str(tmp_path / "b"), "--quiet"])
    assert code == 0
    import yaml

    grown = yaml.safe_load((tmp_path / "b" / "runs" / "zero-seed0" / "config.yaml").read_text())["resolved"]
    twin = yaml.safe_load((tmp_path / "b" / "runs" / "zero-seed0-twin" / "config.yaml").read_text())["resolved"]
    assert grown["units"] == 1 and grown["lr"] == 0.05 and twin["lr"] == 0.05
    with open(tmp_path / "b" / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert int(table[0]["params_final"]) == 64 * 10 + 10 + 10 * 10 + 10  # 8, + 1 unit after epochs 1 and 2


def test_cli_bench_set_with_a_key_the_method_lacks_fails_its_runs(tmp_path, capsys):
    code = main(["bench", "--dataset", "digits", "--methods", "zero", "--epochs", "1", "--set", "nope=1",
                 "--out", str(tmp_path / "b"), "--quiet"])
    assert code == 1 and "nope" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, name", [({"seeds": True}, "seeds"), ({"jobs": True}, "jobs"),
                                          ({"jobs": 0}, "jobs"), ({"threads": -1}, "threads")])
def test_run_bench_refuses_bad_counts(kwargs, name):
    args = {"seeds": 1, **kwargs}
    with pytest.raises(ConfigError, match=f"{name} must be .*, got {name}="):
        run_bench("digits", ["zero"], args.pop("seeds"), "/tmp/unused", **args)

"""``--help`` and the method listing: quick (no torch imported), complete (every method, dataset and
front, with the defaults), and drawn from a catalog that equals the registries it stands for."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from clikit import run_main, run_ok
from selfexpand import catalog
from selfexpand.cli import _parser


def test_catalog_equals_the_registries():
    from selfexpand.data import dataset_names
    from selfexpand.data.base import TASKS
    from selfexpand.graph.spec import FRONTS
    from selfexpand.presets import get_preset, method_names

    assert catalog.METHODS == {name: get_preset(name).summary for name in method_names()}
    assert list(catalog.METHODS) == sorted(catalog.METHODS)
    assert list(catalog.DATASETS) == dataset_names()
    assert list(catalog.FRONTS) == sorted(FRONTS)
    assert catalog.TASKS == tuple(TASKS)


SUBCOMMANDS = ("train", "resume", "inspect", "predict", "methods", "sweep", "bench", "search")


def test_help_and_the_method_listing_import_no_torch():
    """In a fresh interpreter: every ``--help`` and ``selfexpand methods`` leave torch unimported."""
    calls = [["--help"], ["--version"], ["methods"]] + [[name, "--help"] for name in SUBCOMMANDS]
    script = ("import sys\nfrom selfexpand.cli import main\n"
              f"codes = [main(a) for a in {calls!r}]\n"
              "assert codes == [0] * len(codes), codes\n"
              "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy'))\n"
              "assert not loaded, loaded[:5]\n"
              "print('clean')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.rstrip().endswith("clean")
    assert "edge expansion" in done.stdout  # the listing and the helps were printed


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name):
    status, out, err = run_main(name, "--help")
    assert status == 0 and err == ""
    assert out.startswith(f"usage: selfexpand {name}")
    assert "--help" in out


def test_the_parser_knows_exactly_these_subcommands():
    (subparsers,) = [a for a in _parser()._actions if a.dest == "command"]
    assert set(subparsers.choices) == set(SUBCOMMANDS)


def test_train_help_lists_methods_datasets_fronts_and_defaults():
    from selfexpand.runs import RunConfig

    out = run_ok("train", "--help")
    flat = " ".join(out.split())
    for name, summary in catalog.METHODS.items():
        assert re.search(rf"^  {re.escape(name)} +{re.escape(summary)}$", out, re.M), name
    for name in (*catalog.DATASETS, *catalog.FRONTS):
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", flat), name
    # the defaults shown are the ones a run takes
    defaults = RunConfig()
    for option, shown in (("--method", defaults.method), ("--dataset", defaults.dataset), ("--seed", defaults.seed),
                          ("--val-fraction", defaults.val_fraction), ("--device", defaults.device)):
        assert f"(default: {shown})" in _help_of("train", option), f"{option} default {shown} not shown"
        assert " ".join(_help_of("train", option).split()) in flat
    for option in ("--epochs", "--batch-size", "--lr", "--max-params", "--grow-until"):
        help_text = _help_of("train", option)
        assert "default: the method's row" in help_text, option
    assert "the method's row" in flat and "selfexpand methods NAME --dataset D" in flat


def _help_of(command: str, option: str) -> str:
    (subparsers,) = [a for a in _parser()._actions if a.dest == "command"]
    (action,) = [a for a in subparsers.choices[command]._actions if option in a.option_strings]
    return action.help


@pytest.mark.parametrize("command", ["train", "resume", "predict", "bench", "sweep"])
def test_every_value_option_states_its_default(command):
    """An option that takes a value says what happens without it (or is required)."""
    (subparsers,) = [a for a in _parser()._actions if a.dest == "command"]
    exempt = {"--set", "--config", "--twin-of", "--grid", "--target"}  # nothing by default, said otherwise
    for action in subparsers.choices[command]._actions:
        if not action.option_strings or action.nargs == 0 or action.required:
            continue
        if action.option_strings[0] in exempt:
            continue
        assert "default" in (action.help or ""), f"{command} {action.option_strings[0]}: {action.help!r}"


def test_methods_lists_every_method_with_its_summary():
    out = run_ok("methods")
    lines = out.splitlines()
    assert len(lines) == len(catalog.METHODS)
    for line, (name, summary) in zip(lines, catalog.METHODS.items()):
        assert line.split()[0] == name and line.endswith(summary)


def test_methods_parts_with_a_name_shows_that_methods_parts():
    from selfexpand.presets import get_preset

    preset = get_preset("edge")
    out = run_ok("methods", "--parts", "edge")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert out.splitlines()[0].startswith("edge: ")
    shown = {(r[0], r[1]) for r in rows}
    expected = {(k, v) for k, v in preset.parts().items() if v} | {("helper", h) for h in preset.helpers}
    assert shown == expected
    every = run_ok("methods", "--parts")
    assert len(every.splitlines()) > len(rows)  # without a name: all registered parts
    assert "svod" in every and "svod" not in out
    edge_row = next(r for r in rows if r[0] == "selector")
    assert "tau" in " ".join(edge_row)  # with their settings
    status, _, err = run_main("methods", "--parts", "no-such-method")
    assert status == 2 and "no-such-method" in err and err.count("\n") == 1


def test_methods_name_shows_its_settings():
    out = run_ok("methods", "edge", "--dataset", "digits")
    assert out.startswith("edge: ") and "row: digits" in out
    assert re.search(r"^  epochs = \d+$", out, re.M) and re.search(r"^  tau = ", out, re.M)


def test_python_dash_m_runs_the_same_command_line():
    """``python -m selfexpand`` is the ``selfexpand`` script: the same help, the same exit statuses."""
    helped = subprocess.run([sys.executable, "-m", "selfexpand", "methods"], capture_output=True, text=True,
                            timeout=120)
    assert helped.returncode == 0 and "edge" in helped.stdout
    refused = subprocess.run([sys.executable, "-m", "selfexpand", "train", "--method", "no-such-method"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "no-such-method" in refused.stderr

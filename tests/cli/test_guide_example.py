"""docs/guide.md cannot rot: its Python blocks run, its YAML config is accepted, its option tables
name every option of the command line."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from extras import under_ci
import torch
import yaml

from clikit import read_summary, run_ok

from selfexpand import load_run

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", GUIDE.read_text(), flags=re.S | re.M)


def _section(title: str) -> str:
    text = GUIDE.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_guide_has_the_training_loop_example():
    section = _section("Growing a network inside your own training loop")
    (block,) = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    for needle in ("GrowableNet.mlp", "torch.optim.", "split_edges(", "optimizer=opt", "net.export()"):
        assert needle in block


@pytest.fixture(scope="module")
def ran_blocks(tmp_path_factory) -> list[tuple[str, dict, str]]:
    """Every ```python block of the guide run once, in a fresh folder: (code, globals, stdout). The
    parts and methods the blocks register are unregistered afterwards."""
    folder = tmp_path_factory.mktemp("guide")
    ran = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is many times faster on a busy machine
    with _chdir(folder), _restore_threads(threads), _registries_restored():
        for index, code in enumerate(_blocks("python")):
            if _needs_missing_extra(code):
                continue
            script = folder / f"guide_block_{index}.py"
            script.write_text(code)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                names = runpy.run_path(str(script), run_name="__main__")
            ran.append((code, names, out.getvalue()))
    return ran


_EXTRAS = {"lightning": "lightning", "optuna": "optuna"}  # module a block imports -> the extra that brings it


def _needs_missing_extra(code: str) -> bool:
    """A block that imports an optional extra's module which is not installed: skipped, except under
    CI=true (CI installs every extra, so a missing one fails there)."""
    missing = [m for m in _EXTRAS if re.search(rf"^(import|from) {m}\b", code, flags=re.M)
               and importlib.util.find_spec(m) is None]
    if missing and under_ci():
        raise AssertionError(f"CI=true but the guide's example needs {missing}: install the extras")
    return bool(missing)


@contextlib.contextmanager
def _registries_restored():
    from selfexpand.presets import registry as methods
    from selfexpand.strategies import registry as parts

    saved = ({kind: dict(names) for kind, names in parts._PARTS.items()}, dict(methods._METHODS))
    try:
        yield
    finally:
        for kind, names in saved[0].items():
            parts._PARTS[kind].clear()
            parts._PARTS[kind].update(names)
        methods._METHODS.clear()
        methods._METHODS.update(saved[1])


@contextlib.contextmanager
def _restore_threads(threads: int):
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _chdir(folder: Path):
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def test_python_blocks_run_and_show_a_result(ran_blocks):
    assert len(ran_blocks) >= 2
    for code, _, out in ran_blocks:
        assert out.strip(), f"a guide example should print its result:\n{code[:200]}"


def test_training_loop_example_grows_and_keeps_learning(ran_blocks):
    section = _section("Growing a network inside your own training loop")
    (block,) = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    (names,) = [n for code, n, _ in ran_blocks if code == block]
    net, opt, model, event = names["net"], names["opt"], names["model"], names["event"]
    assert event.kind == "split_edges" and event.units_added == 8
    assert event.params_after > event.params_before
    assert net.counts()["params"] == event.params_after
    in_optimizer = {id(p) for group in opt.param_groups for p in group["params"]}
    assert all(id(p) in in_optimizer for p in net.parameters()), "new tensors must join the optimizer"
    assert names["accuracy"] > 0.9
    assert "GrowableNet" not in type(model).__name__


def test_run_example_predicts_like_the_cli(ran_blocks, capsys):
    from selfexpand.cli import main

    (code, names, out) = next(b for b in ran_blocks if "load_run" in b[0])
    run_dir = names["run_dir"]
    if not Path(run_dir).is_absolute():
        run_dir = Path(names["__file__"]).parent / run_dir
    raw = tmp = Path(names["__file__"]).parent / "raw.npz"
    np.savez(tmp, X=names["raw"])
    assert main(["predict", str(run_dir), str(raw)]) == 0
    printed = [int(v) for v in capsys.readouterr().out.split()]
    assert printed == names["decode_labels"](names["prep"], names["logits"].argmax(1))
    assert str(printed) in out


def test_custom_part_example_grows_resumes_and_is_stored_by_name(ran_blocks):
    (code, names, out) = next(b for b in ran_blocks if "register_part" in b[0])
    run_dir = Path(names["__file__"]).parent / names["run_dir"]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())["settings"]
    assert (config["trigger"], config["selector"], config["initializer"]) == ("every-k", "all-layers",
                                                                              "small-outgoing")
    assert config["k"] == 2 and config["times"] == 2 and config["scale"] == 0.01 and config["units"] == 4
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    growth = [r for r in history if r["type"] == "growth"]
    assert [r["epoch"] for r in growth] == [2, 4] and all(r["units_added"] == 4 for r in growth)
    summary = names["summary"]  # after the resume to 8 epochs: the trigger's count came back, no 3rd growth
    assert summary["epochs"] == 8 and summary["growth_events"] == 2 and summary["units_added"] == 8
    model = load_run(run_dir)[0]
    outgoing = model.connections["h1_to_output"].weight.detach()[:, 16:]  # the 8 new units' columns
    assert 0 < float(outgoing.abs().max()) < 0.5  # small, random, and trained a little
    assert "growth steps" in out and "resumed to 8 epochs" in out


def test_a_run_naming_an_unregistered_part_or_method_is_refused_on_resume(ran_blocks, tmp_path):
    (code, names, _) = next(b for b in ran_blocks if "register_part" in b[0])
    run_dir = Path(names["__file__"]).parent / names["run_dir"]
    script = (f"from selfexpand.runs import resume_run\n"
              f"resume_run({str(run_dir)!r}, epochs=9)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "ConfigError: method must be one of" in done.stderr
    assert "got method='every-k-small'" in done.stderr
    swapped = tmp_path / "swapped"
    (swapped / "checkpoint").mkdir(parents=True)
    for name in ("config.yaml", "checkpoint/last.safetensors"):
        (swapped / name).write_bytes((run_dir / name).read_bytes())
    config = yaml.safe_load((swapped / "config.yaml").read_text())
    config["method"] = "zero"  # the built-in baseline with the guide's trigger swapped in
    config["settings"] = {k: v for k, v in config["settings"].items() if k != "scale"}
    config["settings"]["initializer"] = "zero"
    (swapped / "config.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-c", script.replace(str(run_dir), str(swapped))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "got trigger='every-k'" in done.stderr
    assert "register_part" in done.stderr  # the message says how to make it known


def test_yaml_config_example_is_accepted(tmp_path):
    (block,) = [b for b in _blocks("yaml") if "settings:" in b]
    config = tmp_path / "my-run.yaml"
    config.write_text(block)
    assert isinstance(yaml.safe_load(block), dict)
    run_ok("train", "--config", config, "--set", "max_new=8", "--epochs", 1, "--out", tmp_path / "run",
           "--quiet")
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["settings"]
    given = yaml.safe_load(block)
    assert resolved["tau"] == given["settings"]["tau"] and resolved["max_new"] == 8
    assert read_summary(tmp_path / "run")["seed"] == given["seed"]


def test_guide_names_every_subcommand_and_option():
    from selfexpand.cli import _parser

    text = GUIDE.read_text()
    parser = _parser()
    (subparsers,) = [a for a in parser._actions if a.dest == "command"]
    for name, sub in subparsers.choices.items():
        assert f"selfexpand {name}" in text, f"subcommand {name} not documented"
        for action in sub._actions:
            for option in action.option_strings:
                if option in ("-h", "--help"):
                    continue
                assert f"`{option}" in text or f" {option}" in text, f"{name} {option} not documented"

"""Several processes on one study: two ``selfexpand search`` processes started together on one SQLite
storage finish exactly the trials they were asked for, each trial once, the defaults enqueued once; a
stopped study is resumed; ``--jobs`` shares the trials among worker processes; a process with other
options may not join."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

METHODS = ["random", "zero"]


def _check_study(study, out: Path, total: int, search_lib, epochs: int = 3):
    import optuna

    trials = study.get_trials(deepcopy=False)
    states = {t.state for t in trials}
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}, states
    assert len(trials) == total
    assert sorted(t.number for t in trials) == list(range(total))
    dirs = sorted(p.relative_to(out / "trials").as_posix() for p in (out / "trials").glob("*/*"))
    assert dirs == sorted(f"{t.number:04d}-{t.params['method']}/seed0" for t in trials)  # a run directory per trial
    defaults = [t for t in trials if t.user_attrs.get("default")]
    assert sorted(t.params["method"] for t in defaults) == sorted(METHODS)  # enqueued once
    for t in defaults:
        space = search_lib.method_space(t.params["method"], "digits", {}, epochs)
        assert t.params == search_lib.default_params(t.params["method"], "digits", space, {}, epochs)


def test_two_processes_on_one_storage_finish_every_trial_once(tmp_path, search_lib, study_of):
    """Started together on a new folder: both race to create the storage and the study. The second one
    runs its 3 trials in 2 worker processes (``--jobs 2``): 4 processes share the study in all."""
    out = tmp_path / "search"
    command = [sys.executable, "-m", "selfexpand.cli", "search", "--dataset", "digits", "--methods", ",".join(METHODS),
               "--trials", "3", "--epochs", "3", "--repeats", "1", "--threads", "1", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [subprocess.Popen(command + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for extra in (["--quiet"], ["--jobs", "2"])]
    results = [p.communicate(timeout=240) for p in processes]
    for p, (stdout, stderr) in zip(processes, results):
        assert p.returncode == 0, stderr
        assert "3 trials finished here" in stdout
    lines = [line for line in results[1][0].splitlines() if line.startswith("trial ")]
    assert len(lines) == 3  # the workers' trials, reported by their parent
    study = study_of(out, "digits-random+zero-seed0")
    _check_study(study, out, 6, search_lib)
    text = (out / "search.md").read_text()
    assert "| random |" in text and "| zero |" in text  # the last process wrote the whole study's report


def test_a_stopped_study_is_resumed_without_enqueuing_the_defaults_again(tmp_path, search_lib, make_options,
                                                                         study_of):
    out = tmp_path / "search"
    first = search_lib.run_search(make_options(out, trials=2))
    assert first.created and first.finished == 2 and first.total == 2
    seen = []
    second = search_lib.run_search(make_options(out, trials=2), on_start=seen.append)
    assert not second.created and second.total == 4
    assert seen[0]["trials_before"] == 2
    _check_study(study_of(out, first.study), out, 4, search_lib)


def test_the_trials_are_shared_evenly_among_workers(search_lib):
    from selfexpand.search.workers import worker_shares

    assert worker_shares(3, 2) == [2, 1]
    assert worker_shares(2, 4) == [1, 1]  # no worker without a trial
    assert worker_shares(7, 3) == [3, 2, 2]


def test_a_process_may_not_join_a_study_with_other_options(tmp_path, search_lib, make_options):
    from selfexpand.errors import ConfigError

    out = tmp_path / "search"
    search_lib.run_search(make_options(out, trials=1))
    with pytest.raises(ConfigError, match="other options.*epochs: 3 there, 4 here"):
        search_lib.run_search(make_options(out, trials=1, epochs=4, study="digits-random+zero-seed0"))
    with pytest.raises(ConfigError, match="holds the search of study"):
        search_lib.run_search(make_options(out, trials=1, seed=1))  # another study, same folder


def test_a_trial_averages_its_seeds_and_small_data_gets_three(tmp_path, search_lib, make_options):
    from selfexpand.search.loop import prepare

    options = make_options(tmp_path / "search", methods=["random"], trials=1, epochs=2, repeats=2, seed=5)
    result = search_lib.run_search(options)
    folder = tmp_path / "search" / "trials" / "0000-random"
    assert sorted(p.name for p in folder.iterdir()) == ["seed5", "seed6"]  # each its own split and start
    values = [json.loads((folder / s / "summary.json").read_text())["val_metric"] for s in ("seed5", "seed6")]
    assert result.best["value"] == pytest.approx(sum(values) / 2)
    assert yaml.safe_load((tmp_path / "search" / "best" / "config.yaml").read_text())["seed"] == 5
    auto = make_options(tmp_path / "auto", repeats=None)
    data = prepare(auto)[0]
    assert auto.repeats == 3 and sorted(data) == [0, 1, 2]  # digits: 288 validation images
    assert not torch.equal(data[0].y_val, data[1].y_val)


def test_a_journal_file_holds_a_study_too(tmp_path, search_lib, make_options):
    import optuna

    journal = tmp_path / "shared" / "study.log"
    journal.parent.mkdir()
    for out in ("a", "b"):  # two folders (two machines, say) on one journal file
        result = search_lib.run_search(make_options(tmp_path / out, trials=1, epochs=1, storage=str(journal)))
    assert result.total == 2 and not result.created
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name=result.study, storage=storage).trials
    assert [Path(t.user_attrs["run_dir"]).parents[2].name for t in trials] == ["a", "b"]  # each in its own folder
    assert sorted(p.name for p in journal.parent.iterdir()) == ["study.log", "study.log.search-lock"]


def test_storage_names_are_read_as_urls_sqlite_files_or_journals(tmp_path, search_lib):
    spec = search_lib.storage_spec(None, tmp_path)
    assert spec.url == f"sqlite:///{tmp_path.resolve()}/study.db" and spec.path == tmp_path.resolve() / "study.db"
    assert search_lib.storage_spec("sqlite:///rel/s.db", tmp_path).path == (tmp_path.cwd() / "rel" / "s.db")
    assert search_lib.storage_spec("postgresql://me@db/search", tmp_path).path is None
    assert search_lib.storage_spec(str(tmp_path / "s.journal"), tmp_path).journal == tmp_path / "s.journal"
    assert search_lib.storage_spec(str(tmp_path / "s.sqlite"), tmp_path).url.startswith("sqlite:///")

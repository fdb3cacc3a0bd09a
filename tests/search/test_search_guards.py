"""What a search must never do and must always refuse: read the test split, keep a bad trial running
(the pruner stops it, judging it within its own method), accept bad input silently."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest
import torch

from selfexpand.cli import main
from selfexpand.errors import SelfExpandError


class _Guard(torch.Tensor):
    """A tensor that records (and refuses) every torch operation on it, its shape included."""

    touched: list = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.touched.append(getattr(func, "__name__", str(func)))
        raise AssertionError("the test split was read")


def _guarded(load_dataset):
    def load(*args, **kwargs):
        data = load_dataset(*args, **kwargs)
        return dataclasses.replace(data, x_test=torch.Tensor._make_subclass(_Guard, data.x_test),
                                   y_test=torch.Tensor._make_subclass(_Guard, data.y_test))

    return load


def test_the_test_split_is_never_read_during_a_search(tmp_path, monkeypatch, search_lib, make_options):
    from selfexpand.search import trial

    monkeypatch.setattr(trial, "load_dataset", _guarded(trial.load_dataset))
    _Guard.touched = []
    result = search_lib.run_search(make_options(tmp_path / "search", methods=["random", "edge"], trials=3))
    assert _Guard.touched == []
    assert result.finished == 3 and result.failed == 0
    for summary in (tmp_path / "search" / "trials").glob("*/seed0/summary.json"):
        assert json.loads(summary.read_text())["test_metric"] is None  # no trial evaluated a test split


def test_the_guard_catches_a_search_that_would_read_the_test_split(tmp_path, monkeypatch, search_lib, make_options):
    """The control: with the test split kept (no ``without_test``) the runs read it, and the guard says so."""
    from selfexpand.search import trial

    monkeypatch.setattr(trial, "load_dataset", _guarded(trial.load_dataset))
    monkeypatch.setattr(trial, "without_test", lambda data: data)
    _Guard.touched = []
    with pytest.raises(SelfExpandError, match="5 trials in a row failed; the last: AssertionError: the test split"):
        search_lib.run_search(make_options(tmp_path / "search", methods=["random"], trials=1, epochs=1))
    assert _Guard.touched


def _frozen(method: str, curve: dict, *, value=None, epochs: int = 10, **attrs):
    import optuna

    distributions = {"method": optuna.distributions.CategoricalDistribution(["a", "b"])}
    state = optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.RUNNING
    return optuna.trial.create_trial(params={"method": method}, distributions=distributions, value=value,
                                     intermediate_values=curve, user_attrs={"epochs": epochs, **attrs}, state=state)


def test_the_pruner_judges_a_trial_within_its_method_after_the_warm_up(search_lib):
    import optuna

    from selfexpand.search.pruner import MethodPruner

    study = optuna.create_study(direction="maximize")
    for method, level in (("a", 0.9), ("a", 0.92), ("a", 0.94), ("b", 0.2), ("b", 0.22), ("b", 0.24)):
        study.add_trial(_frozen(method, {step: level for step in range(1, 11)}, value=level))
    pruner = MethodPruner()
    assert not pruner.prune(study, _frozen("b", {s: 0.3 for s in range(1, 6)}))  # good for b
    assert optuna.pruners.MedianPruner().prune(study, _frozen("b", {s: 0.3 for s in range(1, 6)}))  # all: pruned
    assert pruner.prune(study, _frozen("b", {s: 0.1 for s in range(1, 6)}))  # bad for b
    assert not pruner.prune(study, _frozen("b", {1: 0.1, 2: 0.1}))  # before 25 % of its 10 epochs


@pytest.mark.parametrize("challenger,picked", [(0.975, "default"), (0.985, "challenger")])
def test_the_pick_keeps_the_defaults_unless_beaten_by_a_standard_error(search_lib, challenger, picked):
    import optuna

    from selfexpand.search.pick import pick_trial

    study = optuna.create_study(direction="maximize")
    for method, value, default in (("a", 0.9722, True), ("b", 0.9600, True), ("a", challenger, False)):
        study.add_trial(_frozen(method, {1: value}, value=value, default=default, n_val=288, values=[value] * 3))
    # one standard error of the best default: sqrt(0.9722 * 0.0278 / (3 * 288)) = 0.0056
    pick, best, margin = pick_trial(study, "accuracy")
    assert best.number == 2 and margin == pytest.approx(0.0056, abs=1e-4)
    assert pick.number == (0 if picked == "default" else 2)
    assert pick_trial(study, "mse")[0].number == 2  # no rule for a metric that is not an accuracy


@pytest.mark.filterwarnings("ignore:Fixed parameter random.lr")  # 1e-7 lies outside the space, on purpose
def test_the_pruner_prunes_a_planted_bad_setting(tmp_path, search_lib, make_options, study_of):
    import optuna

    options = make_options(tmp_path / "search", methods=["random"], epochs=6)
    search_lib.run_search(options)  # the defaults and one more: the method has 2 finished trials
    study = study_of(options.out_dir, options.study_name)
    study.enqueue_trial({"method": "random", "random.lr": 1e-7})  # learns nothing: chance level throughout
    search_lib.run_search(dataclasses.replace(options, trials=1))
    bad = study_of(options.out_dir, options.study_name).trials[-1]
    assert bad.params["random.lr"] == pytest.approx(1e-7)
    assert bad.state == optuna.trial.TrialState.PRUNED
    assert bad.user_attrs["pruned_at"] == 2  # the first epoch after the warm-up (25 % of 6)
    history = (tmp_path / "search" / "trials" / f"{bad.number:04d}-random" / "seed0" / "history.jsonl").read_text()
    assert sum('"type": "epoch"' in line for line in history.splitlines()) == 2  # the run stopped there


def _cli(args, capsys):
    status = main(["search", *args])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--methods", "random,nope"], "unknown method 'nope'"),
    (["--methods", ","], "--methods must name at least one method"),
    (["--trials", "0"], "--trials: must be a positive integer"),
    (["--storage", "sqlite:////no/such/folder/study.db"], "cannot be opened"),
    (["--storage", "nosuchdb://host/db"], "cannot be opened"),
    (["--storage", "study.txt"], "storage must be an Optuna RDB URL"),
    (["--storage", "sqlite:///:memory:"], "in-memory database"),
    (["--set", "nosuch=1"], "setting must be one of"),
])
def test_bad_input_is_refused_with_a_clear_error(tmp_path, capsys, search_lib, args, message):
    base = ["--dataset", "digits", "--methods", "random", "--trials", "1", "--epochs", "1", "--repeats", "1", "--out",
            str(tmp_path / "search"), "--quiet"]
    status, err = _cli(base + args, capsys)
    assert status == 2
    assert message in err and err.startswith("selfexpand: error:")
    assert not (tmp_path / "search" / "trials").exists()


def test_a_foreign_folder_is_not_written_into(tmp_path, capsys, search_lib):
    (tmp_path / "notes.txt").write_text("mine")
    status, err = _cli(["--methods", "random", "--trials", "1", "--repeats", "1", "--out", str(tmp_path)], capsys)
    assert status == 2 and "out must be a new or empty folder" in err


def test_without_optuna_the_command_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    status, err = _cli(["--trials", "1", "--out", str(tmp_path / "s")], capsys)
    assert status == 2 and "pip install 'selfexpand[optuna]'" in err


def test_the_help_names_the_default_methods(search_lib):
    from selfexpand.cli_parser import build_parser

    (subparsers,) = [a for a in build_parser()._actions if a.dest == "command"]
    (action,) = [a for a in subparsers.choices["search"]._actions if "--methods" in a.option_strings]
    assert f"(default: {', '.join(search_lib.DEFAULT_METHODS)})" in action.help


@pytest.mark.filterwarnings("ignore:Fixed parameter random")
def test_a_failed_trial_is_recorded_and_the_search_goes_on(tmp_path, search_lib, make_options, study_of):
    options = make_options(tmp_path / "search", methods=["random"], trials=1, epochs=1)
    search_lib.run_search(options)
    study = study_of(options.out_dir, options.study_name)
    study.enqueue_trial({"method": "random", "random.every": 0})  # refused by the run: every >= 1
    study.enqueue_trial({"method": "random", "random.units": 0})  # refused by Optuna: 0 on a log scale
    lines = []
    result = search_lib.run_search(dataclasses.replace(options, trials=1), on_trial=lines.append)
    assert (result.finished, result.failed, result.total) == (1, 2, 2)  # the failed ones do not count
    assert [info["state"] for info in lines] == ["FAIL", "FAIL", "COMPLETE"]
    errors = [t.user_attrs["error"] for t in study_of(options.out_dir, options.study_name).trials[1:3]]
    assert "every must be a positive integer, got every=0" in errors[0]
    assert errors[1].startswith("ValueError: `0` is invalid value")


def test_a_timeout_starts_no_trial_after_it(tmp_path, search_lib, make_options):
    result = search_lib.run_search(make_options(tmp_path / "search", trials=5, timeout=1e-6))
    assert result.finished == 0 and result.best is None
    assert (tmp_path / "search" / "search.md").read_text().count("No trial is complete yet") == 1

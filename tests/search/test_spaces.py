"""Search spaces (``selfexpand.spaces``): every declared space holds its setting's default and only values
its rule accepts; each method's space holds its own row's values; a bad declaration is refused. The
property tests draw without Optuna; the last test asks a real Optuna trial."""

from __future__ import annotations

import random

import pytest

from selfexpand.errors import ConfigError
from selfexpand.presets import get_preset, method_names, method_settings
from selfexpand.presets.starts import STARTS
from selfexpand.settings import setting
from selfexpand.spaces import Categorical, Float, Int, LogFloat
from selfexpand.strategies import PART_KINDS, part_class, part_names
from selfexpand.train.settings import TrainingSettings
from selfexpand.validators import Integer, Number

DRAWS = 200
DATASETS = ("digits", "mnist", "*", "moons")


def _owners():
    return [TrainingSettings, *STARTS.values(), *(part_class(k, n) for k in PART_KINDS for n in part_names(k))]


def _declared_spaces():
    return [(cls.__name__, s) for cls in _owners() for s in cls.declared() if s.space is not None]


def test_the_settings_worth_searching_declare_spaces():
    names = {s.name for _, s in _declared_spaces()}
    assert {"lr", "batch_size", "weight_decay", "tau", "plateau_threshold", "min_gap", "units", "every", "eps",
            "epsilon", "noise", "cooldown", "patience", "donation_lr"} <= names


@pytest.mark.parametrize("owner,declared", _declared_spaces(), ids=lambda v: v if isinstance(v, str) else v.name)
def test_a_declared_space_holds_its_default_and_only_values_its_rule_accepts(owner, declared):
    space, rule = declared.space, declared.rule
    if declared.default is not None:
        assert space.contains(declared.default), f"{owner}.{declared.name}"
    rng = random.Random(0)
    for _ in range(DRAWS):
        value = space.sample(rng)
        assert space.contains(value)
        assert declared.check(value) == value or declared.check(value) == pytest.approx(value)
    bounds = list(space.options) if isinstance(space, Categorical) else [space.low, space.high]
    for value in bounds:
        assert rule.accept(value)[0], f"{owner}.{declared.name}: {value!r}"


@pytest.mark.parametrize("method", method_names())
def test_each_method_s_space_holds_its_rows_and_its_draws_pass_every_declaration(search_lib, method):
    for dataset in DATASETS:
        space = search_lib.method_space(method, dataset)
        declarations = {}
        for _, s, value in method_settings(method, dataset):
            declarations.setdefault(s.name, []).append(s)
            if s.name in space:
                assert space[s.name].contains(value), (method, dataset, s.name, value)
        rng = random.Random(1)
        for _ in range(DRAWS // 4):
            for key, sp in space.items():
                value = sp.sample(rng)
                for s in declarations[key]:
                    s.check(value)  # raises ConfigError on a value the rule refuses


def test_a_preset_narrows_or_fixes_a_space(search_lib):
    # the size methods keep their full batch (one epoch is one step) and search their size loss's weight
    assert get_preset("size-weight").space["batch_size"] is None
    space = search_lib.method_space("size-weight", "digits")
    assert "batch_size" not in space and "growth_warmup" not in space
    assert isinstance(space["lambda"], Float) and space["lambda"].log
    assert space["lr"].contains(0.5)  # the digits row's lr, outside the declared range: widened to hold it


def test_fixed_settings_and_epochs_are_not_searched(search_lib):
    space = search_lib.method_space("edge", "digits", {"lr": 0.02, "tau": 0.5}, epochs=5)
    assert "lr" not in space and "tau" not in space and "epochs" not in space
    params = search_lib.default_params("edge", "digits", space, {"lr": 0.02}, epochs=5)
    assert params["method"] == "edge" and params["edge.min_gap"] == 4  # the digits row


def test_a_bad_declaration_is_refused():
    with pytest.raises(ConfigError, match="must include its default"):
        setting(Number(0), 5.0, "a rate", space=Float(0.0, 1.0))
    with pytest.raises(ConfigError, match="which its rule refuses"):
        setting(Number(0, low_open=True), 0.5, "a rate", space=Float(0.0, 1.0))
    with pytest.raises(ConfigError, match="which its rule refuses"):
        setting(Integer(1), 2, "a count", space=Int(0, 4))
    with pytest.raises(ConfigError, match="log-scale"):
        LogFloat(0.0, 1.0)
    with pytest.raises(ConfigError, match="twice"):
        Categorical([1, 1])
    with pytest.raises(ConfigError):
        Int(3, 3)


def test_a_space_widens_to_hold_a_row_value_and_lists_round_trip():
    assert Float(0.1, 0.9).including(1.5) == Float(0.1, 1.5)
    assert LogFloat(1e-3, 1e-1).including(0.0) is None  # no log range holds 0
    assert Int(1, 8).including(20) == Int(1, 20)
    assert Categorical([[8, 12], [16, 24]]).including([36, 47]).contains([36, 47])
    assert not Categorical([1, 2]).contains(True)  # compared with their type, as the rules are


def test_an_optuna_trial_gives_values_in_the_space(search_lib):
    import optuna

    spaces = {"f": LogFloat(1e-4, 1e-1), "i": Int(1, 32, log=True), "c": Categorical([[8, 12], [16, 24]]),
              "s": Categorical(["constant", "cosine"])}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        for name, space in spaces.items():
            value = space.suggest(trial, name)
            assert space.contains(value), (name, value)
        study.tell(trial, 0.0)
    study.enqueue_trial({"c": Categorical([[8, 12], [16, 24]]).to_param([16, 24])})
    assert spaces["c"].suggest(study.ask(), "c") == [16, 24]

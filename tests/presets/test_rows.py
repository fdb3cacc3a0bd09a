"""The method table: resolution per dataset, ``--set`` parsing, errors that echo the value."""

import pytest

from selfexpand.errors import ConfigError
from selfexpand.presets import build_method, get_preset, method_names, resolve_config


@pytest.mark.parametrize("text, expected", [("1e-3", 1e-3), ("0.5", 0.5), ("2", 2.0), ("1.0e-2", 1e-2)])
def test_float_settings_parse_every_spelling(text, expected):
    assert resolve_config("edge", "mnist", {"plateau_threshold": text})["plateau_threshold"] == expected


@pytest.mark.parametrize("key, value, words", [
    ("tau", "abc", "tau"), ("max_new", "1.5", "max_new"), ("max_params", "-3", "max_params"),
    ("signed", "maybe", "signed"), ("hidden", "[0]", "hidden"), ("nonsense", "1", "nonsense"),
    ("tau", "1.0", "tau must be a number in \\[0, 1\\), got tau=1.0"), ("epochs", "true", "epochs"),
])
def test_bad_settings_name_the_key_and_value(key, value, words):
    with pytest.raises(ConfigError, match=words):
        resolve_config("edge", "digits", {key: value})


def test_a_csv_or_npz_path_reads_the_table_row_and_case_is_ignored():
    assert resolve_config("edge", "data/My.CSV") == resolve_config("edge", "table")
    assert resolve_config("edge", "MNIST") == resolve_config("edge", "mnist")
    assert resolve_config("static", "x.npz") == resolve_config("static", "table")


def test_dataset_rows_differ_and_fall_back_to_star():
    assert resolve_config("edge", "mnist")["max_params"] == 60000
    assert resolve_config("edge", "emnist-letters") == resolve_config("edge", "*")
    assert resolve_config("edge", "digits")["batch_size"] != resolve_config("edge", "*")["batch_size"]
    assert resolve_config("edge-reference", "mnist")["tau"] == 0.7  # the reference's values


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ConfigError, match="edge"):
        resolve_config("nope", "digits")


@pytest.mark.parametrize("method", method_names())
def test_every_method_builds_from_every_row(method):
    for dataset in get_preset(method).rows:
        built = build_method(method, resolve_config(method, dataset))
        assert built.name == method

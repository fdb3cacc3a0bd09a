"""What a search leaves: ``trials.csv``, ``search.md`` (the best per method, the command), Optuna's plots as
PNG, a run directory per trial and ``best/``, whose ``config.yaml`` trains again with ``selfexpand train``."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from selfexpand.cli import main


@pytest.fixture(scope="module")
def finished(tmp_path_factory, search_lib):
    """``selfexpand search`` of random on digits: 4 trials of 3 epochs, none pruned (so that the importance
    plot has 4 complete trials); its folder and its printed lines."""
    import io
    from contextlib import redirect_stdout

    import torch

    out = tmp_path_factory.mktemp("outputs") / "search"
    before = torch.get_num_threads()
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        status = main(["search", "--dataset", "digits", "--methods", "random", "--trials", "4", "--epochs", "3",
                       "--repeats", "1", "--no-prune", "--threads", "1", "--out", str(out)])
    torch.set_num_threads(before)
    assert status == 0
    return out, buffer.getvalue()


def test_a_line_per_trial_and_the_best_at_the_end(finished):
    out, printed = finished
    lines = printed.splitlines()
    assert lines[0].startswith("study digits-random-seed0 (new study) in sqlite:///")
    trial_lines = [line for line in lines if line.startswith("trial ")]
    assert len(trial_lines) == 4 and "COMPLETE" in trial_lines[0] and "(defaults)" in trial_lines[0]
    assert f"train it again and test it: selfexpand train --config {out}/best/config.yaml" in printed
    assert "the pick: trial " in printed


def test_trials_csv_has_a_row_per_trial_with_its_settings(finished, search_lib):
    from selfexpand.search.report import CSV_COLUMNS

    out, _ = finished
    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert list(rows[0])[:len(CSV_COLUMNS)] == list(CSV_COLUMNS)
    assert set(search_lib.method_space("random", "digits", {}, 3)) <= set(rows[0])  # a column per searched setting
    assert [r["number"] for r in rows] == ["0", "1", "2", "3"]
    assert rows[0]["default"] == "True" and rows[0]["lr"] == "0.01" and rows[0]["state"] == "COMPLETE"
    for r in rows:
        assert 0 <= float(r["value"]) <= 1 and float(r["values"]) == pytest.approx(float(r["value"]))
        assert r["run_dir"] == str(out / "trials" / f"{int(r['number']):04d}-random" / "seed0")


def test_search_md_names_the_best_per_method_and_the_command(finished):
    out, _ = finished
    text = (out / "search.md").read_text()
    assert "selfexpand search --dataset digits --methods random --trials 4" in text
    assert "## The pick" in text and "## Best per method" in text and "| random | 4 | 4 | 0 | 0 |" in text
    assert f"selfexpand train --config {out}/best/config.yaml" in text
    assert "the test split is never read" in text


@pytest.mark.parametrize("name", ["history.png", "curves.png", "importance-random.png"])
def test_the_plots_are_png_images(finished, name):
    from matplotlib.image import imread

    out, _ = finished
    path = out / name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0  # not blank


def test_trials_keep_no_checkpoint_and_best_is_a_copy_of_the_pick(finished, search_lib, study_of):
    from selfexpand.search.pick import pick_trial

    out, _ = finished
    assert not list((out / "trials").glob("*/*/checkpoint"))  # a trial is never resumed
    marker = json.loads((out / "best" / "search_trial.json").read_text())
    source = out / "trials" / f"{marker['number']:04d}-random" / "seed0"
    assert (out / "best" / "config.yaml").read_text() == (source / "config.yaml").read_text()
    pick, _top, _margin = pick_trial(study_of(out, "digits-random-seed0"), "accuracy")
    assert marker["number"] == pick.number
    assert json.loads((out / "best" / "summary.json").read_text())["test_metric"] is None


def test_the_best_config_trains_again_and_is_tested(finished, tmp_path, capsys):
    out, _ = finished
    status = main(["train", "--config", str(out / "best" / "config.yaml"), "--epochs", "1",
                   "--out", str(tmp_path / "again"), "--quiet"])
    assert status == 0, capsys.readouterr().err
    best, again = (yaml.safe_load((d / "config.yaml").read_text()) for d in (out / "best", tmp_path / "again"))
    assert {**best, "epochs": 1} == again  # the same settings, one epoch
    assert json.loads((tmp_path / "again" / "summary.json").read_text())["test_metric"] is not None

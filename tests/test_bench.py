"""``selfexpand bench``: the files with their columns on a tiny run (twins, the static front, the sweep),
a failing method recorded while the others go on (exit status 1), bad requests refused; the front, the
sweep and the equal-compute epochs on planted cases."""

from __future__ import annotations

import csv
import dataclasses
import re

import pytest

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


def _table(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_bench_writes_kinds_fronts_sweep_and_both_plots_and_survives_a_failing_method(tmp_path, broken_method):
    rows = run_bench("digits", ["zero", "broken"], 1, tmp_path, epochs=2)
    write_bench(rows, tmp_path, command="selfexpand bench ...")
    table = _table(tmp_path / "results.csv")
    assert tuple(table[0].keys()) == BENCH_COLUMNS
    for column in ("kind", "train_flops", "live_train_flops", "growth_flops", "final_val_metric"):
        assert column in BENCH_COLUMNS
    zero = [r for r in table if r["method"] == "zero"]
    kinds = [r["kind"] for r in zero]
    assert kinds[:2] == ["grown", "twin"] and set(kinds) <= {"grown", "twin", "compute-twin"}
    assert [r["twin"] for r in zero[:2]] == ["False", "True"]  # the old column, for old readers
    assert all(r["error"] == "" and float(r["test_metric"]) > 0 and r["family"] == "zero" for r in zero)
    assert zero[0]["params_final"] == zero[1]["params_final"]  # the twin has the grown architecture
    broken = [r for r in table if r["method"] == "broken"]
    assert len(broken) == 1 and "planted failure" in broken[0]["error"] and broken[0]["kind"] == "grown"
    front = [r for r in table if r["kind"] == "front"]
    assert len(front) == 5 and {r["method"] for r in front} == {"front:zero"}  # broken has no family
    params = [int(r["params_final"]) for r in front]
    grown = int(zero[0]["params_final"])
    assert params == sorted(params) and params[0] == int(zero[0]["params_start"])  # the start's 8 units first
    assert abs(params[-1] - 2 * grown) <= 64 + 10 + 1  # 2x the largest grown params, to one unit
    assert front[0]["hidden"] == "8" and all(r["error"] == "" for r in front)
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("`selfexpand bench ...`") and "| zero | 1 |" in md and "planted failure" in md
    assert "equal-compute twin" in md and "static front at its params" in md and "- zero: picks hidden" in md
    for name in ("pareto.png", "pareto_flops.png"):
        assert (tmp_path / name).stat().st_size > 1000
    if not zero[0]["train_flops"]:
        pytest.skip("compute accounting (summary.json train_flops) is not there yet: no equal-compute twin")
    compute = [r for r in zero if r["kind"] == "compute-twin"]
    assert len(compute) == 1 and compute[0]["error"] == ""
    total = float(zero[0]["train_flops"]) + float(zero[0]["growth_flops"])
    per_epoch = float(compute[0]["train_flops"]) / int(compute[0]["epochs"])
    assert abs(float(compute[0]["train_flops"]) - total) <= per_epoch  # within one of its own epochs
    assert float(compute[0]["train_flops"]) <= total or int(compute[0]["epochs"]) == 1  # floor: never more
    assert all(r["train_flops"] and r["live_train_flops"] and r["growth_flops"] != "" for r in zero + front)


def test_cli_bench_exit_status_is_1_when_a_run_failed(tmp_path, broken_method, capsys):
    code = main(["bench", "--dataset", "digits", "--methods", "zero,broken,static", "--epochs", "1", "--out",
                 str(tmp_path / "b"), "--quiet", "--no-front"])
    out, err = capsys.readouterr()
    assert code == 1 and re.search(r"1 of \d+ runs failed", err) and "| zero | 1 |" in out
    table = _table(tmp_path / "b" / "results.csv")
    assert not [r for r in table if r["kind"] == "front"]  # --no-front
    assert [r["kind"] for r in table if r["method"] == "static"] == ["grown"]  # a static run has no twin


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
                 "--set", "lr=0.05", "--out", str(tmp_path / "b"), "--quiet", "--no-front"])
    assert code == 0
    import yaml

    grown = yaml.safe_load((tmp_path / "b" / "runs" / "zero-seed0" / "config.yaml").read_text())
    twin = yaml.safe_load((tmp_path / "b" / "runs" / "zero-seed0-twin" / "config.yaml").read_text())
    assert grown["settings"]["units"] == 1 and grown["lr"] == 0.05 and twin["lr"] == 0.05
    with open(tmp_path / "b" / "results.csv") as f:
        table = list(csv.DictReader(f))
    # 8, + 1 unit after epoch 1: the row's timetable (11 steps in 40 epochs) scaled to 2 epochs is one step
    assert int(table[0]["params_final"]) == 64 * 9 + 9 + 9 * 10 + 10


def test_cli_bench_set_with_a_key_the_method_lacks_fails_its_runs(tmp_path, capsys):
    code = main(["bench", "--dataset", "digits", "--methods", "zero", "--epochs", "1", "--set", "nope=1",
                 "--out", str(tmp_path / "b"), "--quiet", "--no-front"])
    assert code == 1 and "nope" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, name", [({"seeds": True}, "seeds"), ({"jobs": True}, "jobs"),
                                          ({"jobs": 0}, "jobs"), ({"threads": -1}, "threads")])
def test_run_bench_refuses_bad_counts(kwargs, name):
    args = {"seeds": 1, **kwargs}
    with pytest.raises(ConfigError, match=f"{name} must be .*, got {name}="):
        run_bench("digits", ["zero"], args.pop("seeds"), "/tmp/unused", **args)


def _front_row(hidden, params, val, test, seed=0, flops=1e6, higher_is_better=True):
    return {"method": "front:f", "family": "f", "kind": "front", "seed": seed, "hidden": hidden,
            "params_final": params, "final_val_metric": val, "best_val_metric": val, "test_metric": test,
            "train_flops": flops, "higher_is_better": higher_is_better, "error": ""}


def test_sweep_picks_on_validation_never_on_test():
    from selfexpand.bench.front import sweep_pick, sweeps

    # planted: the best test metric (hidden 40) is not the best validation metric (hidden 20)
    rows = [_front_row("10", 700, 0.90, 0.90), _front_row("20", 1400, 0.95, 0.91),
            _front_row("40", 2800, 0.93, 0.99), _front_row("80", 5600, 0.94, 0.97),
            {**_front_row("160", 11200, 0.99, 0.99), "error": "RuntimeError: failed"}]  # a failed run is no pick
    assert sweep_pick(rows)["hidden"] == "20"
    # lower is better (MSE): the lowest validation value, not the lowest test value
    mse = [_front_row("10", 700, 0.5, 0.1, higher_is_better=False),
           _front_row("20", 1400, 0.2, 0.3, higher_is_better=False)]
    assert sweep_pick(mse)["hidden"] == "20"
    # a tie on validation: the smaller network; the final validation metric before the best epoch's
    assert sweep_pick([_front_row("20", 1400, 0.9, 0.5), _front_row("10", 700, 0.9, 0.4)])["hidden"] == "10"
    assert sweep_pick([{**_front_row("10", 700, 0.8, 0.9), "best_val_metric": 0.99},
                       _front_row("20", 1400, 0.9, 0.5)])["hidden"] == "20"
    # per seed, with the training FLOPs of every finished front network of that seed together
    both = [*rows[:4], *[{**r, "seed": 1, "train_flops": 2e6} for r in rows[:2]]]
    assert [(s["seed"], s["pick"]["hidden"], s["flops"]) for s in sweeps(both, "f")] == [(0, "20", 4e6),
                                                                                           (1, "20", 4e6)]


def test_front_at_interpolates_in_log_params_and_never_extrapolates():
    from selfexpand.bench.front import front_at

    pts = [_front_row("10", 100, 0, 0.5), _front_row("40", 1000, 0, 0.8), _front_row("160", 10000, 0, 0.9)]
    assert front_at(pts, 10 ** 2.5) == pytest.approx(0.65)  # halfway in log params
    assert front_at(pts, 1000) == pytest.approx(0.8) and front_at(pts, 10 ** 3.25) == pytest.approx(0.825)
    assert front_at(pts, 99) is None and front_at(pts, 10001) is None and front_at([], 100) is None


def test_front_sizes_are_geometric_and_widths_scale_the_start():
    from selfexpand.bench.front import front_params, front_widths

    targets = front_params(610, 910)
    assert targets[0] == 610 and targets[-1] == pytest.approx(1820)
    ratios = [b / a for a, b in zip(targets, targets[1:])]
    assert ratios == pytest.approx([ratios[0]] * 4)

    def chain(widths):
        return sum((a + 1) * b for a, b in zip(widths, widths[1:]))

    assert front_widths(chain([64, 8, 10]), 64, 10, [8]) == [8]  # the start itself
    assert front_widths(chain([64, 16, 10]), 64, 10, [8]) == [16]
    assert front_widths(chain([64, 30, 15, 10]), 64, 10, [20, 10]) == [30, 15]  # one factor for every layer
    assert front_widths(650, 64, 10, []) == []  # no hidden layer: the start first
    one = front_widths(5000, 64, 10, [])  # then one hidden layer whose width gives the params
    assert len(one) == 1 and abs(chain([64, *one, 10]) - 5000) <= (64 + 1 + 10) / 2
    assert front_widths(5000 + 123, 64, 10, [], offset=123) == one  # params outside the chain (a front)


@pytest.mark.parametrize("total, per_epoch, epochs", [(10, 3, 3), (9, 3, 3), (2, 3, 1), (0, 3, 1), (3e12, 1e12, 3)])
def test_equal_compute_epochs_floor_at_least_one(total, per_epoch, epochs):
    from selfexpand.twins import equal_compute_epochs

    assert equal_compute_epochs(total, per_epoch) == epochs
    assert abs(epochs * per_epoch - total) <= per_epoch  # within one of its own epochs


def test_equal_compute_epochs_refuses_bad_counts():
    from selfexpand.twins import equal_compute_epochs

    with pytest.raises(ConfigError, match="epoch_flops must be > 0, got epoch_flops=0"):
        equal_compute_epochs(10, 0)
    with pytest.raises(ConfigError, match="total_flops must be >= 0"):
        equal_compute_epochs(-1, 3)


def test_every_method_has_its_own_colour_and_marker_and_chance_runs_are_set_apart():
    from selfexpand.bench.plots import method_styles, split_at_chance

    styles = method_styles([f"m{i}" for i in range(20)])
    assert len({str(c) for c, _ in styles.values()}) == 20 and len({str(m) for _, m in styles.values()}) == 20
    rows = [{"method": "a", "test_metric": 0.9, "chance_metric": 0.1, "error": ""},
            {"method": "b", "test_metric": 0.104, "chance_metric": 0.1, "error": ""},
            {"method": "d", "test_metric": 0.29, "chance_metric": 0.1, "error": ""},  # 0.29 <= 0.1 + 0.25 * 0.8
            {"method": "e", "test_metric": 0.31, "chance_metric": 0.1, "error": ""},
            {"method": "c", "test_metric": 0.99, "error": "boom"}]
    shown, near, threshold = split_at_chance(rows)
    assert [r["method"] for r in shown] == ["a", "e"] and [r["method"] for r in near] == ["b", "d"]
    assert threshold == pytest.approx(0.3)
    mse = [{"method": "a", "test_metric": 5.0, "metric_name": "mse", "error": ""}]
    assert split_at_chance(mse) == (mse, [], None)  # no chance level: every run shown


def test_growth_plot_has_a_title_from_the_run_and_marks_growth_and_pruning(tmp_path, monkeypatch):
    import json

    import matplotlib.figure

    from selfexpand.report.plots import plot_growth

    titles, labels = [], []
    monkeypatch.setattr(matplotlib.figure.Figure, "suptitle", lambda self, t, **kw: titles.append(t))
    real = matplotlib.figure.Figure.savefig

    def savefig(self, *args, **kw):
        labels.extend(lab for ax in self.axes for lab in ax.get_legend_handles_labels()[1])
        return real(self, *args, **kw)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    (tmp_path / "summary.json").write_text(json.dumps({"method": "edge", "dataset": "digits", "seed": 2}))
    epoch = {"type": "epoch", "train_loss": 1.0, "val_loss": 1.1, "val_metric": 0.5, "params": 650}
    history = [{**epoch, "epoch": 1}, {"type": "growth", "epoch": 1, "kind": "split_edges"},
               {**epoch, "epoch": 2}, {"type": "growth", "epoch": 2, "kind": "prune_edges"}, {**epoch, "epoch": 3}]
    plot_growth(history, tmp_path / "growth.png", "accuracy")
    assert titles == ["edge on digits, seed 2"] and (tmp_path / "growth.png").stat().st_size > 1000
    assert {"training loss", "validation loss", "validation accuracy", "params", "growth", "pruning"} <= set(labels)

"""``TensorBoardLogger`` and ``selfexpand train/resume --tensorboard``: the event files are read back
with TensorBoard's own ``EventAccumulator``. Without the ``tensorboard`` package these tests skip (fail
under ``CI=true``: every extra is required there), except the one about its absence."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json

import pytest
from extras import missing_extra

from selfexpand.cli import main
from selfexpand.errors import ConfigError
from selfexpand.train import tensorboard as tb_module
from selfexpand.train.tensorboard import TensorBoardLogger

# growth early on digits (as tests/cli/clikit.py's GROW_FAST): the plateau trigger fires whenever it may
GROW_FAST = ["--set", "min_gap=1", "--set", "window=1", "--set", "plateau_threshold=100", "--set", "prune_after=1",
             "--set", "max_new=20", "--batch-size", "32", "--lr", "0.005", "--quiet"]


@pytest.fixture(scope="module")
def accumulator():
    """TensorBoard's ``EventAccumulator`` class; skips without tensorboard (fails under CI=true)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as exc:
        missing_extra(f"TensorBoard logging needs the tensorboard extra (pip install -e '.[tensorboard]'): {exc}")

    def read(path):
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        return acc

    return read


def _cli(*argv) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main([str(a) for a in argv])


def _scalars(acc, tag) -> dict[int, float]:
    return {e.step: e.value for e in acc.Scalars(tag)}


def _texts(acc, tag) -> dict[int, str]:
    from tensorboard.util import tensor_util

    return {e.step: tensor_util.make_ndarray(e.tensor_proto).item().decode() for e in acc.Tensors(tag)}


def _history(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines() if line.strip()]


def test_a_run_and_its_resume_write_one_continuous_log(tmp_path, accumulator):
    run, logs = tmp_path / "run", tmp_path / "tb"
    assert _cli("train", "--epochs", "4", "--out", run, "--tensorboard", logs, *GROW_FAST) == 0
    first = accumulator(logs)
    epochs = [r for r in _history(run) if r["type"] == "epoch"]
    assert sorted(_scalars(first, "loss/train")) == [1, 2, 3, 4]
    for record in epochs:  # every figure of the epoch record, at step = epoch
        step = record["epoch"]
        for key, tag in tb_module.SCALARS.items():
            if record[key] is None:  # no hidden unit yet: no inactivity figure
                assert step not in _scalars(first, tag), tag
            else:
                assert _scalars(first, tag)[step] == pytest.approx(record[key], rel=1e-6), tag
        assert _scalars(first, "metric/val_accuracy")[step] == pytest.approx(record["val_metric"], rel=1e-6)
    growth = [r for r in _history(run) if r["type"] == "growth"]
    assert growth, "the settings make edge expansion grow within 4 epochs"
    texts = _texts(first, "growth/text_summary")
    from selfexpand.events import event_line

    for record in growth:
        assert event_line(record) in texts[record["epoch"]]
        assert f"reason: {record['reason']}" in texts[record["epoch"]]
    widths = _texts(first, "widths/text_summary")
    assert widths[0] == "input 64, output 10" and sorted(widths) == [0, 1, 2, 3, 4]
    new_layer = growth[0]["details"]["layer"]
    assert _scalars(first, f"width/{new_layer}")[growth[0]["epoch"]] == growth[0]["units_added"]

    assert _cli("resume", run, "--epochs", "6", "--tensorboard", logs, "--quiet") == 0
    both = accumulator(logs)
    train_loss = both.Scalars("loss/train")
    assert [e.step for e in train_loss] == [1, 2, 3, 4, 5, 6]  # continued, no step written twice
    epochs = {r["epoch"]: r for r in _history(run) if r["type"] == "epoch"}
    assert all(e.value == pytest.approx(epochs[e.step]["train_loss"], rel=1e-6) for e in train_loss)


def test_the_python_callback_logs_a_trainer_fit(tmp_path, accumulator):
    from selfexpand.data import load_dataset
    from selfexpand.graph import GrowableNet
    from selfexpand.train.recorders import InactivityRecorder
    from selfexpand.train.trainer import Trainer

    data = load_dataset("digits", seed=0)
    net = GrowableNet.mlp([64, 8, 10], seed=0)
    logger = TensorBoardLogger(tmp_path / "tb")
    Trainer(epochs=2, batch_size=64, callbacks=[InactivityRecorder(), logger]).fit(net, data)
    acc = accumulator(tmp_path / "tb")
    assert sorted(_scalars(acc, "loss/val")) == [1, 2]
    assert sorted(_scalars(acc, "inactive/units_fraction")) == [1, 2]
    assert _scalars(acc, "width/h1") == {0: 8.0, 1: 8.0, 2: 8.0}
    assert logger.writer is None  # closed at the end of training


def test_without_the_package_the_logger_and_the_cli_name_the_extra(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ConfigError, match=r"selfexpand\[tensorboard\]"):
        TensorBoardLogger(tmp_path / "tb")
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = main(["train", "--epochs", "1", "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb"),
                       "--quiet"])
    assert status == 2 and "selfexpand[tensorboard]" in err.getvalue()
    assert not (tmp_path / "run").exists() and not (tmp_path / "tb").exists()  # refused before anything is written


def test_an_empty_log_dir_is_refused(tmp_path, accumulator):
    with pytest.raises(ConfigError, match="log_dir must be a folder path"):
        TensorBoardLogger(" ")

"""The lock on a run directory (issue #23): a second process on a run being written is refused with a
clear error and the first finishes intact; the lock of a process killed with SIGKILL is taken over
by ``resume``, which finishes the run; the lock is released on every exit."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clikit import read_history, read_summary, run_main
from selfexpand.errors import RunLockedError
from selfexpand.runlock import RunLock
from selfexpand.runs import resume_run

# A run of 4 epochs that stops after its 2nd epoch until the file ``go`` appears in GATE (at most 60 s),
# having written ``ready`` there.
SCRIPT = """
import pathlib, sys, time
import torch
torch.set_num_threads(1)
from selfexpand.runs import RunConfig, train_run
from selfexpand.train.callbacks import Callback
out, gate = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])

class Gate(Callback):
    def on_epoch_end(self, ctx, record, **kwargs):
        if ctx.epoch == 2:
            (gate / "ready").write_text("")
            deadline = time.time() + 60
            while not (gate / "go").exists() and time.time() < deadline:
                time.sleep(0.02)

train_run(RunConfig(method="static", epochs=4, out=str(out)), callbacks=[Gate()])
"""


@pytest.fixture(scope="module")
def processes(tmp_path_factory):
    """Two training processes started together (each takes seconds to import torch): ``name ->
    (process, run directory, gate folder)``; any still running at the end is killed."""
    root = tmp_path_factory.mktemp("lock")
    started = {}
    for name in ("refused", "killed"):
        out, gate = root / name / "run", root / name / "gate"
        gate.mkdir(parents=True)
        started[name] = (subprocess.Popen([sys.executable, "-c", SCRIPT, str(out), str(gate)],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), out, gate)
    yield started
    for proc, _, _ in started.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _ready(proc: subprocess.Popen, gate: Path) -> None:
    deadline = time.time() + 120
    while not (gate / "ready").exists():
        if proc.poll() is not None:
            pytest.fail(f"the training process ended early ({proc.returncode}): {proc.stderr.read()}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail("the training process did not reach its 2nd epoch in 120 s")
        time.sleep(0.05)


def _epochs(run_dir: Path) -> list[int]:
    return [r["epoch"] for r in read_history(run_dir) if r["type"] == "epoch"]


def test_a_second_process_is_refused_and_the_first_finishes_intact(processes):
    proc, out, gate = processes["refused"]
    _ready(proc, gate)
    try:
        code, _, err = run_main("resume", out, "--epochs", 6, "--quiet")
        lines = [ln for ln in err.splitlines() if ln.startswith("selfexpand: error:")]
        assert code == 2 and len(lines) == 1 and "Traceback" not in err
        assert f"run directory {out} is being written by process {proc.pid}" in lines[0]
        assert "wait for it or stop it" in lines[0]
    finally:
        (gate / "go").write_text("")
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert _epochs(out) == [1, 2, 3, 4]
    summary = read_summary(out)
    assert summary["epochs"] == 4 and summary["stopped"] is None
    assert (out / ".lock").read_text() == ""


def test_resume_takes_over_the_lock_of_a_killed_process_and_finishes(processes, caplog):
    proc, out, gate = processes["killed"]
    _ready(proc, gate)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert f'"pid": {proc.pid}' in (out / ".lock").read_text()  # what it left behind
    with caplog.at_level(logging.WARNING, logger="selfexpand"):
        resume_run(out)
    assert f"took over the lock left by process {proc.pid}" in caplog.text
    assert _epochs(out) == [1, 2, 3, 4] and read_summary(out)["epochs"] == 4
    assert (out / ".lock").read_text() == ""


def test_the_lock_refuses_a_second_holder_and_is_released_on_an_exception(tmp_path):
    with RunLock(tmp_path) as first:
        assert first.held
        with pytest.raises(RunLockedError, match=f"is being written by process {os.getpid()}"):
            RunLock(tmp_path).acquire()
    with pytest.raises(ValueError):
        with RunLock(tmp_path):
            raise ValueError("boom")
    with RunLock(tmp_path):  # free again: no stale-lock message either
        pass
    assert (tmp_path / ".lock").read_text() == ""

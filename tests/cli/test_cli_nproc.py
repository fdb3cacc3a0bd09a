"""``--nproc N`` (issue #27): data-parallel runs on torch.distributed (gloo on the CPU).

A 2-process run equals a 1-process run with the same global batch, in float64 on digits over 4
epochs, for every method: the same growth events, parameters within 1e-8 (each run also checks, after
every epoch's growth step, that its ranks hold bit-identical models and optimizer states: a run whose
ranks diverge stops, see ``test_diverged_ranks_are_caught``). Resume after growth continues bit for bit
on 2 processes; a killed rank stops the other and the run resumes; what cannot run on several ranks is
refused before any work.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from clikit import GROW_FAST, run_ok
from nproc_methods import run_config
from selfexpand.checkpoint import load_checkpoint
from selfexpand.presets import method_names
from selfexpand.runs import train_run

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="this torch build has no torch.distributed")

WORKER = Path(__file__).resolve().parent / "nproc_methods.py"
#: no growth events: a static network, or a size set by gradient descent (compared by its values)
GROWS_BY_GRADIENT = {"static", "size-weight", "controller-mask", "controller-mask-reference"}


def _environment() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}


def selfexpand(*argv, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m selfexpand ARGV`` in a fresh process (as a user starts ``--nproc`` runs)."""
    return subprocess.run([sys.executable, "-m", "selfexpand", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=_environment())


def final(run_dir) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model.safetensors"))


def growth(run_dir) -> list[tuple]:
    records = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    return [(r["epoch"], r["kind"], r["site"], r["params_after"]) for r in records if r["type"] == "growth"]


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory) -> Path:
    """Every method on 2 gloo ranks, one torchrun launch for all (``nproc_methods.py``)."""
    out = tmp_path_factory.mktemp("two-ranks")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                             str(WORKER), str(out), *method_names()], capture_output=True, text=True, timeout=600,
                            env=_environment())
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.parametrize("method", method_names())
def test_two_processes_equal_one(tmp_path, two_process_runs, method):
    train_run(run_config(method, tmp_path / "one"))
    one, two = tmp_path / "one", two_process_runs / method
    a, b = final(one), final(two)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-8, msg=key)
    assert growth(two) == growth(one)
    if method not in GROWS_BY_GRADIENT:
        assert growth(one), "no growth inside the 4 epochs: the comparison would not see it"
    assert json.loads((two / "run.json").read_text())["identity"]["nproc"] == 2
    assert "nproc" not in json.loads((one / "run.json").read_text())["identity"]


def test_resume_after_growth_on_two_processes_is_exact(tmp_path):
    args = ["train", "--nproc", 2, "--dtype", "float64", "--batch-size", "32", *GROW_FAST[:10]]
    first = selfexpand(*args, "--epochs", 3, "--out", tmp_path / "resumed")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "test accuracy" in first.stdout and first.stdout.count("run directory") == 1  # rank 0 alone prints
    args.append("--quiet")
    assert growth(tmp_path / "resumed")  # grown before the checkpoint
    again = selfexpand("resume", tmp_path / "resumed", "--epochs", 6, "--quiet")  # on 2 processes again
    assert again.returncode == 0, again.stderr[-3000:]
    fresh = selfexpand(*args, "--epochs", 6, "--out", tmp_path / "fresh")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    a, b = final(tmp_path / "resumed"), final(tmp_path / "fresh")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert growth(tmp_path / "resumed") == growth(tmp_path / "fresh")


def _descendants(pid: int) -> list[int]:
    out, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as fh:
                        if int(fh.read().rsplit(")", 1)[1].split()[1]) == parent:
                            out.append(int(entry))
                            frontier.append(int(entry))
                except (OSError, ValueError, IndexError):
                    continue
    return out


def _rank_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            env = dict(item.split(b"=", 1) for item in fh.read().split(b"\0") if b"=" in item)
    except OSError:
        return None
    return int(env[b"RANK"]) if b"RANK" in env else None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank's process in /proc")
def test_a_killed_rank_stops_the_others_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    env = _environment()
    proc = subprocess.Popen([sys.executable, "-m", "selfexpand", "train", "--nproc", "2", "--epochs", "400",
                             "--batch-size", "32", "--quiet", "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        checkpoint, history = out / "checkpoint" / "last.safetensors", out / "history.jsonl"
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline and not (
                history.exists() and history.read_text().count('"type": "epoch"') >= 2):
            time.sleep(0.2)  # the first epoch's checkpoint is written when its record is
        assert checkpoint.exists(), "no checkpoint appeared"
        ranks = {_rank_of(pid): pid for pid in _descendants(proc.pid)}
        os.kill(ranks[1], signal.SIGKILL)
        killed = time.time()
        _, stderr = proc.communicate(timeout=60)
        assert time.time() - killed < 60
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "rank 1 of 2 was killed by SIGKILL" in stderr and "selfexpand resume" in stderr
    ckpt = load_checkpoint(checkpoint)  # the last checkpoint stays loadable
    done = ckpt.extra["trainer"]["epoch"]
    assert 1 <= done < 400
    resumed = selfexpand("resume", out, "--epochs", done + 2, "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["epochs"] == done + 2


def test_what_cannot_run_on_several_ranks_is_refused_before_any_work(tmp_path):
    out = tmp_path / "conv"
    result = selfexpand("train", "--nproc", 2, "--method", "random", "--set", "conv=[4]", "--epochs", 1, "--quiet",
                        "--out", out)
    assert result.returncode == 2
    assert "synchronised batch norm is not implemented" in result.stderr and "nothing was trained" in result.stderr
    assert not out.exists()  # nothing written, nothing trained
    # a resume on another number of processes is refused, the run untouched
    one = tmp_path / "one"
    run_ok("train", "--epochs", 1, "--quiet", "--out", one)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          "-m", "selfexpand", "resume", str(one), "--epochs", "3", "--quiet"],
                         capture_output=True, text=True, timeout=120, env=_environment())
    assert two.returncode != 0 and "nproc=1 but this process is one of 2" in two.stderr
    assert json.loads((one / "summary.json").read_text())["epochs"] == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _diverge(rank: int, port: int, what: str, out: str) -> None:
    """Rank ``rank`` of 2: check equal states, then (rank 1) move one entry by one ulp and check again;
    each rank writes what the two checks said into ``out/<rank>.json``."""
    from selfexpand.graph import GrowableNet
    from selfexpand.train.distributed import DataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    said = []
    try:
        net = GrowableNet.mlp([4, 3, 2], seed=0)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        net(torch.ones(2, 4)).sum().backward()
        optimizer.step()
        group = DataParallel(rank, 2)
        for planted in (False, True):
            if planted and rank == 1:  # one entry moved by one ulp
                tensor = next(net.parameters()).data if what == "model" else \
                    optimizer.state[next(net.parameters())]["exp_avg_sq"]
                entry = tensor.view(-1)[:1]
                entry.copy_(torch.nextafter(entry, entry + 1))
            try:
                group.check_same(net, optimizer, "a planted divergence" if planted else "the same steps")
                said.append(None)
            except RuntimeError as exc:
                said.append(str(exc))
        dist.barrier()  # neither rank closes the group while the other still uses it
    finally:
        dist.destroy_process_group()
        Path(out, f"{rank}.json").write_text(json.dumps(said))


@pytest.mark.parametrize("what", ["model", "optimizer"])
def test_diverged_ranks_are_caught(tmp_path, what):
    mp.spawn(_diverge, args=(_free_port(), what, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        equal, planted = json.loads((tmp_path / f"{rank}.json").read_text())
        assert equal is None  # the same states pass
        assert "ranks [1] hold another model or optimizer state than rank 0 after a planted divergence" in planted

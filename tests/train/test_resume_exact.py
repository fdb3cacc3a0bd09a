"""Resume continues exactly, bit for bit on CPU with the same seed.

(a) Core: train, grow (split), prune and compact, train, ``save_checkpoint``, ``load_checkpoint`` into
    fresh objects, train more == the same steps uninterrupted: every parameter and every optimizer
    state tensor ``torch.equal``.
(b) Run: ``train_run`` for E1 epochs (a growth event and a pending prune inside), ``resume_run`` to E2
    == a fresh ``train_run`` of E2 epochs: final parameters, optimizer state and history records
    equal except timing fields.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from edgekit import toy_dataset
from selfexpand import ops
from selfexpand.checkpoint import load_checkpoint, save_checkpoint
from selfexpand.graph import GrowableNet
from selfexpand.runs import CHECKPOINT, RunConfig, resume_run, train_run
from selfexpand.train.trainer import make_optimizer


def steps(net, optimizer, data, gen: torch.Generator, n: int, batch: int = 16) -> None:
    for _ in range(n):
        idx = torch.randint(0, data.x_train.shape[0], (batch,), generator=gen)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(data.x_train[idx]), data.y_train[idx]).backward()
        optimizer.step()


def grow(net, optimizer, gen: torch.Generator) -> None:
    """Split the four largest edges into the output, then prune half the eps edges and compact
    (masks, index buffers, provisional marks and resized optimizer state all present)."""
    c = net.connections["input_to_output"]
    top = torch.topk(c.weight.detach().abs().flatten(), 4).indices
    ops.split_edges(net, {"input_to_output": (top // c.shape[1], top % c.shape[1])}, eps=1e-2,
                    generator=gen, optimizer=optimizer)
    edges = []
    for name, conn in net.connections.items():
        if conn.provisional is not None:
            eps = torch.nonzero(conn.provisional)
            edges += [(name, int(r), int(col)) for r, col in eps[::2]]
    ops.prune_edges(net, edges, optimizer=optimizer)
    for conn in net.connections.values():
        conn.provisional = None
    ops.compact(net, optimizer=optimizer)


def named_state(net, optimizer) -> dict[str, torch.Tensor]:
    """Every parameter and buffer, and every optimizer state entry, keyed by parameter name."""
    out = {f"model.{k}": v for k, v in net.state_dict().items()}
    name_of = {id(p): n for n, p in net.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                out[f"optim.{name_of[id(p)]}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return out


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("optimizer_name, sparse_below", [
    ("adam", None), ("adamw", None), ("sgd", None), ("rmsprop", None), ("adam", 1.0), ("rmsprop", 1.0)])
def test_core_resume_is_bitwise_identical(tmp_path, optimizer_name, sparse_below):
    """``sparse_below=1.0``: every masked connection is stored sparse after each op (and dense within
    it, ``ops.storage``), so the sequence converts storage both ways before the checkpoint."""
    data = toy_dataset(n=80, d=8, k=4, seed=1)
    k_steps, j_steps, m_steps = 5, 4, 6

    def start():
        net = GrowableNet.mlp([8, 4], seed=2)
        if sparse_below is not None:
            net.sparse_below = sparse_below
        optimizer = make_optimizer(optimizer_name, net.parameters(), lr=1e-2, weight_decay=1e-3)
        gen = torch.Generator().manual_seed(3)
        steps(net, optimizer, data, gen, k_steps)
        grow(net, optimizer, gen)
        steps(net, optimizer, data, gen, j_steps)
        return net, optimizer, gen

    net, optimizer, gen = start()
    steps(net, optimizer, data, gen, m_steps)
    uninterrupted = named_state(net, optimizer)

    net, optimizer, gen = start()
    path = save_checkpoint(tmp_path / "ckpt.safetensors", net, optimizer,
                           extra={"note": "mid-run"}, tensors={"generator": gen.get_state()})
    at_save = {k: v.clone() for k, v in named_state(net, optimizer).items()}
    del net, optimizer, gen
    ckpt = load_checkpoint(path)
    net, optimizer = ckpt.model, ckpt.optimizer
    assert ckpt.extra == {"note": "mid-run"}
    assert_bitwise_equal(named_state(net, optimizer), at_save)  # the load itself is exact
    gen = torch.Generator()
    gen.set_state(ckpt.tensors["generator"])
    steps(net, optimizer, data, gen, m_steps)
    resumed = named_state(net, optimizer)

    assert any(k.endswith("exp_avg_sq") or k.endswith("momentum_buffer") or k.endswith("square_avg")
               for k in resumed)
    if sparse_below is None:
        assert any(".mask" in k for k in resumed) and any("index" in k for k in resumed)
    else:
        assert any(".edge_index" in k for k in resumed) and not any(".mask" in k for k in resumed)
    assert_bitwise_equal(resumed, uninterrupted)
    # the comparison can fail: one more step changes the state
    steps(net, optimizer, data, gen, 1)
    assert not all(torch.equal(v, uninterrupted[k]) for k, v in named_state(net, optimizer).items())


# ---------------------------------------------------------------- run level
# counts as plain epochs: scaled counts follow the run's length, which the resume below changes (3 -> 7)
SETTINGS = {"min_gap": 2, "window": 2, "plateau_threshold": 1.0, "prune_after": 1, "max_new": 16,
            "tuned_epochs": None}


def history(run_dir) -> list[dict]:
    """``history.jsonl`` with the timing fields removed."""
    records = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in records]


def final_state(run_dir) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(run_dir / CHECKPOINT)
    state = named_state(ckpt.model, ckpt.optimizer)
    final = load_checkpoint(run_dir / "model.safetensors").model.state_dict()
    assert_bitwise_equal({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")},
                         final)
    return state


@pytest.mark.parametrize("sparse_below", [None, 1.0])
def test_run_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch, sparse_below):
    """``sparse_below=1.0`` (new networks' default patched; the spec carries it into the resume): every
    masked connection is stored sparse between growth steps, converted at each one."""
    if sparse_below is not None:
        monkeypatch.setattr("selfexpand.graph.network.SPARSE_BELOW", sparse_below)
    e1, e2 = 3, 7

    def config(out, epochs):
        return RunConfig(method="edge", dataset="digits", epochs=epochs, seed=0, out=str(out),
                         settings=dict(SETTINGS))

    first, _ = train_run(config(tmp_path / "resumed", e1))
    partial = history(first)
    kinds = [(r["epoch"], r["kind"]) for r in partial if r["type"] == "growth"]
    assert kinds == [(3, "split_edges")]  # grown at the last epoch: the prune is still pending
    _, summary = resume_run(first, epochs=e2)
    resumed = history(first)

    fresh, fresh_summary = train_run(config(tmp_path / "fresh", e2))
    uninterrupted = history(fresh)
    kinds = [(r["epoch"], r["kind"]) for r in uninterrupted if r["type"] == "growth"]
    # the resumed part holds a prune (pending state) and a second growth (t_last restored)
    assert (4, "prune_edges") in kinds and (6, "split_edges") in kinds
    assert resumed[:len(partial)] == partial
    assert resumed == uninterrupted
    state = final_state(first)
    assert_bitwise_equal(state, final_state(fresh))
    assert summary["epochs"] == fresh_summary["epochs"] == e2
    assert any(k.endswith(".edge_index") for k in state) == (sparse_below is not None)

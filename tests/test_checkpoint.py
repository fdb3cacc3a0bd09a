"""Tests for selfexpand.checkpoint: exact resume, extras and RNG, atomic writes, bad files."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from selfexpand import checkpoint as ck
from selfexpand.checkpoint import Checkpoint, load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from selfexpand.errors import CheckpointError
from selfexpand.graph.modulators import GateModulator
from selfexpand.graph.network import GrowableNet

BATCH = 16


def _data(seed: int, n: int = 64, n_in: int = 20, n_out: int = 3):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, n_in, generator=gen), torch.randint(0, n_out, (n,), generator=gen)


def _train(model, optimizer, x, y, steps: int, start: int = 0) -> None:
    for step in range(start, start + steps):
        lo = (step * BATCH) % len(x)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x[lo:lo + BATCH]), y[lo:lo + BATCH])
        loss.backward()
        optimizer.step()


def _grouped(model, lr: float) -> list[dict]:
    """Two groups in an order unlike named_parameters(): biases (reversed) first, at half the lr."""
    named = list(model.named_parameters())
    biases = [p for n, p in named if n.endswith("bias")][::-1]
    others = [p for n, p in named if not n.endswith("bias")]
    return [{"params": biases, "lr": lr / 2}, {"params": others}]


OPTIMIZERS = {
    "SGD": lambda m: torch.optim.SGD(_grouped(m, 0.1), lr=0.1, momentum=0.9, nesterov=True,
                                     weight_decay=1e-3),
    "Adam": lambda m: torch.optim.Adam(_grouped(m, 1e-2), lr=1e-2),
    "AdamW": lambda m: torch.optim.AdamW(_grouped(m, 1e-2), lr=1e-2, amsgrad=True, weight_decay=0.1),
    "RMSprop": lambda m: torch.optim.RMSprop(_grouped(m, 1e-2), lr=1e-2, momentum=0.5, centered=True),
}


def _widen_h1(model, optimizer, n_new: int) -> None:
    """A hand-made width growth of h1: bigger Parameters replace the old ones at the *end* of their
    optimizer group, with the Adam state zero-padded (what ``ops`` does, in miniature)."""
    sites = [(model.connections["input_to_h1"], "weight", 0), (model.layers["h1"], "bias", 0),
             (model.connections["h1_to_output"], "weight", 1)]
    for module, attr, dim in sites:
        old = getattr(module, attr)
        pad = list(old.shape)
        pad[dim] = n_new
        new = nn.Parameter(torch.cat([old.detach(), torch.full(pad, 0.01)], dim))
        group = next(g for g in optimizer.param_groups if any(p is old for p in g["params"]))
        group["params"] = [p for p in group["params"] if p is not old] + [new]
        state = optimizer.state.pop(old)
        optimizer.state[new] = {k: v if v.dim() == 0 else torch.cat([v, v.new_zeros(pad)], dim)
                                for k, v in state.items()}
        setattr(module, attr, new)
    model.invalidate()


def _assert_same_params(a: nn.Module, b: nn.Module) -> None:
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert pa.keys() == pb.keys()
    for name in pa:
        assert pa[name].dtype == pb[name].dtype, name
        assert torch.equal(pa[name], pb[name]), name


def _rich_net(seed: int, dtype=torch.float32) -> GrowableNet:
    """An MLP plus a masked, indexed skip connection and a gated hidden layer."""
    net = GrowableNet.mlp([20, 16, 3], seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    mask = (torch.rand(2, 5, generator=gen) > 0.3).float()
    net.add_connection("input", "output", torch.randn(2, 5, generator=gen) * mask,
                       in_index=torch.tensor([0, 3, 7, 11, 19]), out_index=torch.tensor([2, 0]), mask=mask)
    net.layers["h1"].modulator = GateModulator(16)
    net.invalidate()
    return net.to(dtype)


# ------------------------------------------------------------------------------------ exact resume
@pytest.mark.parametrize("opt_name, seed", [("SGD", 11), ("Adam", 12), ("AdamW", 13), ("RMSprop", 14)])
def test_resume_is_bit_identical(tmp_path, opt_name, seed):
    x, y = _data(seed)
    k, m = 3, 4
    reference = GrowableNet.mlp([20, 16, 3], seed=seed)
    ref_opt = OPTIMIZERS[opt_name](reference)
    _train(reference, ref_opt, x, y, k + m)

    model = GrowableNet.mlp([20, 16, 3], seed=seed)
    opt = OPTIMIZERS[opt_name](model)
    _train(model, opt, x, y, k)
    path = save_checkpoint(tmp_path / "run.safetensors", model, opt, extra={"step": k})
    del model, opt

    loaded = load_checkpoint(path)
    assert isinstance(loaded, Checkpoint) and type(loaded.optimizer) is type(ref_opt)
    assert loaded.extra == {"step": k}
    _train(loaded.model, loaded.optimizer, x, y, m, start=k)
    _assert_same_params(loaded.model, reference)


@pytest.mark.parametrize("opt_name", ["Adam", "RMSprop"])
def test_step_tensor_and_hyperparameters_kept(tmp_path, opt_name):
    seed = 21
    x, y = _data(seed)
    model = GrowableNet.mlp([20, 16, 3], seed=seed)
    opt = OPTIMIZERS[opt_name](model)
    _train(model, opt, x, y, 2)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "c.safetensors", model, opt)).optimizer
    named_old = {id(p): n for n, p in model.named_parameters()}
    assert len(loaded.param_groups) == len(opt.param_groups)
    for g_old, g_new in zip(opt.param_groups, loaded.param_groups):
        assert {k: v for k, v in g_old.items() if k != "params"} == \
            {k: v for k, v in g_new.items() if k != "params"}
        assert len(g_old["params"]) == len(g_new["params"])
        for p_old, p_new in zip(g_old["params"], g_new["params"]):
            assert torch.equal(p_old, p_new), named_old[id(p_old)]
            s_old, s_new = opt.state[p_old], loaded.state[p_new]
            assert s_old.keys() == s_new.keys()
            for key in s_old:
                assert isinstance(s_new[key], torch.Tensor) and s_new[key].dtype == s_old[key].dtype
                assert torch.equal(s_old[key], s_new[key])
    assert loaded.defaults == opt.defaults


def test_python_float_step_and_tensor_lr(tmp_path):
    seed = 22
    x, y = _data(seed)
    model = GrowableNet.mlp([20, 16, 3], seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01))
    _train(model, opt, x, y, 2)
    for state in opt.state.values():  # an older torch stored step as a python float
        state["step"] = float(state["step"])
    path = save_checkpoint(tmp_path / "c.safetensors", model, opt)
    with safe_open(str(path), framework="pt") as fh:
        stored = json.loads(fh.metadata()["optimizer"])["state"]
        assert not any(k.endswith(".step") for k in fh.keys())
    assert all(entry["values"] == {"step": 2.0} for entry in stored.values())
    loaded = load_checkpoint(path).optimizer
    for p in loaded.param_groups[0]["params"]:  # torch's Adam.load_state_dict upgrades a float step
        assert float(loaded.state[p]["step"]) == 2.0
    assert isinstance(loaded.param_groups[0]["lr"], torch.Tensor)
    assert torch.equal(loaded.param_groups[0]["lr"], torch.tensor(0.01))


@pytest.mark.parametrize("dtype, seed", [(torch.float32, 31), (torch.float64, 32)])
def test_rich_graph_round_trip(tmp_path, dtype, seed):
    x, y = _data(seed)
    x = x.to(dtype)
    reference = _rich_net(seed, dtype)
    ref_opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
    _train(reference, ref_opt, x, y, 5)

    model = _rich_net(seed, dtype)
    opt = torch.optim.Adam(list(model.parameters())[::-1], lr=1e-2)
    _train(model, opt, x, y, 2)
    path = save_checkpoint(tmp_path / "rich.safetensors", model, opt)
    loaded = load_checkpoint(path)
    assert loaded.model.spec() == model.spec()
    for name, value in model.state_dict().items():
        got = loaded.model.state_dict()[name]
        assert got.dtype == value.dtype and torch.equal(got, value), name
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    _train(loaded.model, loaded.optimizer, x, y, 3, start=2)
    _assert_same_params(loaded.model, reference)


def test_model_only_and_frozen_parameters(tmp_path):
    model = GrowableNet.mlp([20, 16, 3], seed=41)
    model.layers["h1"].bias.requires_grad_(False)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", model))
    assert loaded.optimizer is None and loaded.extra == {} and loaded.tensors == {}
    assert not loaded.model.layers["h1"].bias.requires_grad
    assert loaded.model.layers["output"].bias.requires_grad
    _assert_same_params(loaded.model, model)
    assert loaded.library["torch"] == torch.__version__


def test_map_front_builds_an_unregistered_front(tmp_path):
    torch.manual_seed(42)
    front_spec = {"type": "test_checkpoint_unregistered", "n_in": 20, "n_out": 8}
    model = GrowableNet.mlp([8, 16, 3], seed=42, front=nn.Linear(20, 8), front_spec=front_spec)
    path = save_checkpoint(tmp_path / "front.safetensors", model)
    with pytest.raises(CheckpointError, match="front"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, map_front=lambda s: nn.Linear(s["n_in"], s["n_out"]))
    x, _ = _data(42)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    assert loaded.model.front_spec == front_spec
    _assert_same_params(loaded.model, model)


def test_resume_after_growth_maps_state_by_name(tmp_path):
    seed = 43
    x, y = _data(seed)
    runs = []
    for interrupted in (False, True):
        model = GrowableNet.mlp([20, 16, 3], seed=seed)
        opt = OPTIMIZERS["Adam"](model)
        _train(model, opt, x, y, 2)
        _widen_h1(model, opt, 3)
        _train(model, opt, x, y, 2, start=2)
        if interrupted:
            loaded = load_checkpoint(save_checkpoint(tmp_path / "g.safetensors", model, opt))
            assert loaded.model.widths() == [20, 19, 3]
            model, opt = loaded.model, loaded.optimizer
        _train(model, opt, x, y, 3, start=4)
        runs.append(model)
    _assert_same_params(*runs)


# ------------------------------------------------------------------------------------ extras and RNG
def test_extra_and_rng_round_trip(tmp_path):
    torch.manual_seed(51)
    torch.rand(3)
    state = rng_state()
    assert all(t.dtype == torch.uint8 for t in state.values())
    expected = torch.rand(5)
    extra = {"epoch": 3, "history": [{"loss": 0.5, "grew": True}], "name": "run", "none": None}
    user = {**state, "ema": torch.arange(6.0, dtype=torch.float64).reshape(2, 3),
            "flags": torch.tensor([True, False])}
    path = save_checkpoint(tmp_path / "x.safetensors", GrowableNet.mlp([4, 2], seed=51), extra=extra,
                           tensors=user)
    torch.rand(7)  # move the global RNG on
    loaded = load_checkpoint(path)
    assert loaded.extra == extra
    assert loaded.tensors.keys() == user.keys()
    for key, value in user.items():
        assert loaded.tensors[key].dtype == value.dtype and torch.equal(loaded.tensors[key], value)
    restore_rng_state(loaded.tensors)
    assert torch.equal(torch.rand(5), expected)


def test_restore_rng_state_needs_a_state():
    with pytest.raises(CheckpointError, match="RNG"):
        restore_rng_state({"ema": torch.zeros(2)})


# ------------------------------------------------------------------------------------ bad files
def _saved(tmp_path, seed: int = 61):
    x, y = _data(seed)
    model = GrowableNet.mlp([20, 16, 3], seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    _train(model, opt, x, y, 2)
    return save_checkpoint(tmp_path / "bad.safetensors", model, opt, extra={"epoch": 1}), model, opt


def _rewrite(path, edit) -> None:
    """Apply ``edit(tensors, meta)`` and write a well-formed, correctly digested file."""
    tensors = load_file(path)
    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata())
    edit(tensors, meta)
    ck._write_atomic(path, tensors, ck._seal(tensors, meta))


def _edit_json(key, fn):
    def edit(tensors, meta):
        value = json.loads(meta[key])
        fn(value)
        meta[key] = json.dumps(value)
    return edit


def _patch_bytes(path, fn) -> None:
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(fn(data)))


def _flip_last(data):
    data[-1] ^= 0xFF
    return data


def _break_header(data):
    data[8] = ord("X")  # the header's opening brace
    return data


def _edit_lr_in_place(data):
    old, new = b'\\"lr\\": 0.01', b'\\"lr\\": 0.02'  # inside the JSON-encoded optimizer metadata
    i = data.find(old)
    assert i > 0
    data[i:i + len(old)] = new
    return data


def _weight_name(meta):
    return next(n for n in json.loads(meta["optimizer"])["param_groups"][0]["params"] if n.endswith("weight"))


def _rename_param(value):
    value["param_groups"][0]["params"][0] = "connections.nowhere.weight"


def _rename_class(value):
    value["class"] = "Adagrad"


def _wrong_state_shape(tensors, meta):
    name = _weight_name(meta)
    tensors[f"optim.{name}.exp_avg"] = torch.zeros(2, 2)


def _wrong_model_shape(tensors, meta):
    tensors["model.layers.output.bias"] = torch.zeros(4)


BAD_FILES = {
    "missing": (lambda p: p.unlink(), "not found"),
    "not safetensors": (lambda p: p.write_bytes(b"hello, this is not a checkpoint at all"), "safetensors"),
    "empty": (lambda p: p.write_bytes(b""), "truncated"),
    "cut to half": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated"),
    "cut by one byte": (lambda p: p.write_bytes(p.read_bytes()[:-1]), "truncated"),
    "header not JSON": (lambda p: _patch_bytes(p, _break_header), "json"),
    "metadata tampered": (lambda p: _patch_bytes(p, _edit_lr_in_place), "digest"),
    "tensor byte flipped": (lambda p: _patch_bytes(p, _flip_last), "digest"),
    "wrong format": (lambda p: _rewrite(p, lambda t, m: m.update(format="someone.else/3")), "format"),
    "metadata field not JSON": (lambda p: _rewrite(p, lambda t, m: m.update(extra="{oops")), "json"),
    "metadata field missing": (lambda p: _rewrite(p, lambda t, m: m.pop("spec")), "missing"),
    "spec missing key": (lambda p: _rewrite(p, lambda t, m: t.pop("model.layers.output.bias")), "missing"),
    "spec extra key": (lambda p: _rewrite(p, lambda t, m: t.update({"model.layers.output.s": torch.ones(3)})),
                       "unexpected"),
    "spec wrong shape": (lambda p: _rewrite(p, _wrong_model_shape), "shape"),
    "spec malformed": (lambda p: _rewrite(p, _edit_json("spec", lambda s: s.pop("order"))), "spec"),
    "stray tensor": (lambda p: _rewrite(p, lambda t, m: t.update({"junk.x": torch.ones(1)})), "unexpected"),
    "optimizer unknown parameter": (lambda p: _rewrite(p, _edit_json("optimizer", _rename_param)),
                                    "does not have"),
    "optimizer unknown class": (lambda p: _rewrite(p, _edit_json("optimizer", _rename_class)),
                                "unknown optimizer"),
    "optimizer state shape": (lambda p: _rewrite(p, _wrong_state_shape), "shape"),
    "optimizer state missing": (lambda p: _rewrite(p, lambda t, m: t.pop(f"optim.{_weight_name(m)}.exp_avg")),
                                "missing"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_raise_checkpoint_error(tmp_path, case):
    path, _, _ = _saved(tmp_path)
    mutate, word = BAD_FILES[case]
    mutate(path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert path.name in message
    assert word.lower() in message.lower(), message


def test_spec_mismatch_wraps_the_underlying_error(tmp_path):
    path, _, _ = _saved(tmp_path)
    _rewrite(path, _wrong_model_shape)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "spec does not match" in str(info.value)


def test_rewrite_helper_keeps_a_valid_file(tmp_path):
    path, model, _ = _saved(tmp_path)
    _rewrite(path, lambda t, m: None)
    _assert_same_params(load_checkpoint(path).model, model)


# ------------------------------------------------------------------------------------ failed saves
def _only_file(folder):
    return sorted(os.listdir(folder))


def test_save_rejects_non_json_extra_and_keeps_previous(tmp_path):
    path, model, opt = _saved(tmp_path)
    before = path.read_bytes()
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, model, opt, extra={"epoch": 2, "callback": object()})
    assert "'callback'" in str(info.value) and path.name in str(info.value)
    assert path.read_bytes() == before and _only_file(tmp_path) == [path.name]
    with pytest.raises(CheckpointError, match="fresh.safetensors"):
        save_checkpoint(tmp_path / "fresh.safetensors", model, extra={"t": torch.zeros(1)})
    assert _only_file(tmp_path) == [path.name]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch, failing):
    path, model, opt = _saved(tmp_path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ck.os, failing, boom)
    with pytest.raises(CheckpointError, match="disk full"):
        save_checkpoint(path, model, opt, extra={"epoch": 2})
    monkeypatch.undo()
    assert _only_file(tmp_path) == [path.name]
    assert path.read_bytes() == before
    assert load_checkpoint(path).extra == {"epoch": 1}


def test_save_rejects_unsupported_optimizer(tmp_path):
    model = GrowableNet.mlp([20, 16, 3], seed=71)
    with pytest.raises(CheckpointError, match="Adagrad"):
        save_checkpoint(tmp_path / "o.safetensors", model, torch.optim.Adagrad(model.parameters()))

    class MyAdam(torch.optim.Adam):
        pass

    with pytest.raises(CheckpointError, match="MyAdam"):
        save_checkpoint(tmp_path / "o.safetensors", model, MyAdam(model.parameters()))
    assert _only_file(tmp_path) == []


def test_save_rejects_optimizer_over_a_stale_parameter(tmp_path):
    model = GrowableNet.mlp([20, 16, 3], seed=72)
    stale = nn.Parameter(torch.zeros(5))
    opt = torch.optim.SGD([*model.parameters(), stale], lr=0.1)
    with pytest.raises(CheckpointError, match="not in the model"):
        save_checkpoint(tmp_path / "s.safetensors", model, opt)
    assert _only_file(tmp_path) == []


def test_save_overwrites_atomically_and_returns_path(tmp_path):
    path, model, opt = _saved(tmp_path)
    assert save_checkpoint(str(path), model, opt, extra={"epoch": 9}) == path
    assert load_checkpoint(path).extra == {"epoch": 9}
    assert _only_file(tmp_path) == [path.name]

"""Growth-aware learning rates (``selfexpand.train.growth_lr``).

Planted runs on a tiny MLP that grows by ``ops.add_units`` at chosen epochs:
- ``new_lr_scale``: one step after growth, old entries are bit-identical to a run without it and new
  entries moved ``s`` times as far; over the span the scale decays as documented (exact ratios with gd);
- ``growth_warmup``: the rate of every step follows ``min(1, k / K)`` times the (cosine) schedule;
- both off: the run equals a hand-written training loop bit for bit (no marker ever left behind);
- resume: the hook's state (ramp position, new entries and their steps left) survives a checkpoint.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from edgekit import toy_dataset
from selfexpand import ops
from selfexpand.checkpoint import load_checkpoint, save_checkpoint
from selfexpand.errors import CheckpointError, ConfigError
from selfexpand.graph import GrowableNet
from selfexpand.presets import resolve_config
from selfexpand.strategies import GrowthMethod, GrowthPart
from selfexpand.train import Callback, Trainer
from selfexpand.train.growth_lr import MARKER
from selfexpand.train.trainer import make_optimizer

N_NEW = 3


def new_values(net, epoch: int) -> dict:
    g = torch.Generator().manual_seed(100 + epoch)
    return {"incoming": {"input_to_h1": torch.randn(N_NEW, net.connections["input_to_h1"].shape[1], generator=g).abs()},
            "outgoing": {"h1_to_output": 0.3 * torch.randn(net.connections["h1_to_output"].shape[0], N_NEW,
                                                           generator=g)},
            "bias": 0.1 * torch.randn(N_NEW, generator=g)}


@dataclass(eq=False)
class AddUnitsAt(GrowthPart):
    """Grows ``N_NEW`` units into ``h1`` after the epochs listed (as a pruning part returns its events)."""

    at: tuple = (1,)

    def on_validation_end(self, ctx, record: dict, **kwargs):
        if ctx.epoch not in self.at:
            return None
        return [ops.add_units(ctx.model, "h1", N_NEW, **new_values(ctx.model, ctx.epoch), optimizer=ctx.optimizer)]


class Snapshots(Callback):
    """Parameters at the start of every epoch and at the end of the run, by name."""

    def __init__(self):
        self.at_begin = {}

    def on_epoch_begin(self, ctx, **kwargs):
        self.at_begin[ctx.epoch] = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}


def run(*, epochs=2, n=16, batch=16, optimizer="adam", at=(1,), callbacks=(), lr=1e-2, **options):
    data = toy_dataset(n=n, d=5, k=3, seed=1)
    net = GrowableNet.mlp([5, 4, 3], seed=2)
    trainer = Trainer(GrowthMethod("planted", extras=[AddUnitsAt(at=at)]), epochs=epochs, batch_size=batch,
                      lr=lr, optimizer=optimizer, callbacks=list(callbacks), **options)
    result = trainer.fit(net, data)
    return trainer, result


def new_rows(name: str, shape) -> torch.Tensor:
    """Which entries of ``name`` the planted growth added (the last N_NEW units of h1)."""
    new = torch.zeros(shape, dtype=torch.bool)
    if name in ("connections.input_to_h1.weight", "layers.h1.bias"):
        new[-N_NEW:] = True
    elif name == "connections.h1_to_output.weight":
        new[:, -N_NEW:] = True
    return new


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_new_entries_scaled_old_entries_bit_identical(optimizer):
    s = 0.25
    snaps = {"base": Snapshots(), "scaled": Snapshots()}
    _, base = run(optimizer=optimizer, callbacks=[snaps["base"]])
    _, scaled = run(optimizer=optimizer, callbacks=[snaps["scaled"]], new_lr_scale=s, new_lr_span=0.5)
    before = snaps["base"].at_begin[1]  # after growth, before the one step of epoch 2
    assert all(torch.equal(before[k], v) for k, v in snaps["scaled"].at_begin[1].items())
    after_base = dict(base.model.named_parameters())
    after_scaled = dict(scaled.model.named_parameters())
    n_new = 0
    for name, p in after_scaled.items():
        p, q, b = p.detach(), after_base[name].detach(), before[name]
        new = new_rows(name, p.shape)
        n_new += int(new.sum())
        assert torch.equal(p[~new], q[~new]), name  # old entries: bit for bit
        if new.any():
            moved = (q - b)[new]
            assert moved.abs().min() > 0, name  # the planted step moves every new entry
            assert torch.equal(p[new], (b + s * (q - b))[new]), name  # the documented formula, exactly
            torch.testing.assert_close((p - b)[new], s * moved, rtol=0, atol=2e-7)  # s times the update
    assert n_new == N_NEW * (5 + 3 + 1)
    assert not any(MARKER in st for st in scaled.optimizer.state.values())  # no marker left behind


def test_scale_decays_linearly_over_the_span():
    """gd (update = -lr grad): the ratio update / (-lr grad) is the scale; 2 steps an epoch, growth
    after epoch 1, span 0.5 of 4 epochs x 2 steps = 4 steps: 0.2, 0.4, 0.6, 0.8 (s + (1-s)(k-1)/4), then 1."""
    s, lr, ratios = 0.2, 0.05, []

    class Ratio(Callback):
        def on_epoch_begin(self, ctx, **kwargs):
            self.before = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}

        def on_batch_end(self, ctx, **kwargs):
            w = ctx.model.connections["input_to_h1"].weight
            delta, grad = w.detach() - self.before["connections.input_to_h1.weight"], w.grad
            if w.shape[0] > 4:
                new = torch.zeros(w.shape, dtype=torch.bool)
                new[-N_NEW:] = True
                ok = new & (grad.abs() > 1e-3)  # float32: clear of rounding
                ratios.append(float((delta[ok] / (-lr * grad[ok])).mean()))
                torch.testing.assert_close(delta[~new], -lr * grad[~new], rtol=0, atol=2e-7)
            self.before = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}

    run(epochs=4, n=32, batch=16, optimizer="gd", lr=lr, callbacks=[Ratio()], new_lr_scale=s, new_lr_span=0.5)
    assert ratios == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0], rel=1e-3)


class RecordLR(Callback):
    """The learning rate of every optimizer step (a step pre-hook)."""

    def __init__(self):
        self.lrs = []

    def on_train_begin(self, ctx, **kwargs):
        ctx.optimizer.register_step_pre_hook(lambda opt, a, k: self.lrs.append(opt.param_groups[0]["lr"]))


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_warmup_ramp_follows_the_documented_factor(schedule):
    epochs, per_epoch, lr, w = 6, 4, 1e-2, 0.25  # K = round(0.25 * 6 * 4) = 6 steps
    on, off = RecordLR(), RecordLR()
    run(epochs=epochs, n=64, batch=16, at=(2,), lr=lr, lr_schedule=schedule, callbacks=[off])
    run(epochs=epochs, n=64, batch=16, at=(2,), lr=lr, lr_schedule=schedule, callbacks=[on], growth_warmup=w)

    def scheduled(t):
        return lr if schedule == "constant" else lr * (1 + math.cos(math.pi * t / epochs)) / 2

    expected_off = [scheduled(i // per_epoch) for i in range(epochs * per_epoch)]
    assert off.lrs == expected_off  # off: exactly the schedule
    k_steps = 6
    expected_on = []
    for i in range(epochs * per_epoch):
        k = i - 2 * per_epoch + 1  # k-th step after the growth at the end of epoch 2
        factor = 1.0 if k < 1 else min(1.0, k / k_steps)
        expected_on.append(scheduled(i // per_epoch) * factor)
    assert on.lrs == pytest.approx(expected_on, rel=1e-12)
    assert on.lrs[2 * per_epoch] == pytest.approx(scheduled(2) / k_steps)  # the ramp starts low
    assert on.lrs[:2 * per_epoch] == expected_off[:2 * per_epoch]


def test_warmup_restarts_at_each_growth_and_ignores_pruning_only_epochs():
    rec = RecordLR()
    run(epochs=4, n=16, batch=16, at=(1, 2), lr=1e-2, callbacks=[rec], growth_warmup=0.5)  # K = 2
    assert rec.lrs == pytest.approx([1e-2, 0.5e-2, 0.5e-2, 1e-2])


def test_both_off_equals_a_hand_written_loop():
    """The trainer with the options off trains exactly as the loop it always ran (bit for bit)."""
    data = toy_dataset(n=40, d=5, k=3, seed=1)
    trainer, result = run(epochs=3, n=40, batch=16, at=(1,), growth_warmup=0.0, new_lr_scale=1.0)
    assert not trainer.growth_lr.active

    net = GrowableNet.mlp([5, 4, 3], seed=2)
    opt = make_optimizer("adam", net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(3):
        order = torch.randperm(40, generator=gen)
        for start in range(0, 40, 16):
            idx = order[start:start + 16]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(data.x_train[idx]), data.y_train[idx]).backward()
            opt.step()
        if epoch + 1 == 1:
            ops.add_units(net, "h1", N_NEW, **new_values(net, 1), optimizer=opt)
    mine, ref = result.model.state_dict(), net.state_dict()
    assert mine.keys() == ref.keys()
    assert all(torch.equal(mine[k], ref[k]) for k in ref)
    # the comparison can fail: the scaled run differs
    _, scaled = run(epochs=3, n=40, batch=16, at=(1,), new_lr_scale=0.5)
    assert not all(torch.equal(v, ref[k]) for k, v in scaled.model.state_dict().items())


class StopAt(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, ctx, record, **kwargs):
        if ctx.epoch == self.epoch:
            ctx.request_stop("test")


def test_resume_keeps_the_hook_state(tmp_path):
    options = dict(epochs=5, batch_size=16, lr=1e-2, growth_warmup=0.6, new_lr_scale=3.0, new_lr_span=0.8)
    data = toy_dataset(n=32, d=5, k=3, seed=1)

    def trainer(callbacks=()):
        return Trainer(GrowthMethod("planted", extras=[AddUnitsAt(at=(1, 3))]), callbacks=list(callbacks),
                       **options)

    whole = trainer().fit(GrowableNet.mlp([5, 4, 3], seed=2), data)

    first = trainer([StopAt(2)])
    part = first.fit(GrowableNet.mlp([5, 4, 3], seed=2), data)
    state, tensors = first.state_dict()
    assert state["growth_lr"]["warm_step"] is not None and state["growth_lr"]["pending"]
    path = save_checkpoint(tmp_path / "ckpt.safetensors", part.model, part.optimizer,
                           extra={"trainer": json.loads(json.dumps(state))}, tensors=tensors)
    ckpt = load_checkpoint(path)
    loaded = dict(ckpt.extra["trainer"], generator=ckpt.tensors["generator"], tensors=ckpt.tensors)
    resumed = trainer().fit(ckpt.model, data, optimizer=ckpt.optimizer, state=loaded)

    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # without the hook's state the continuation differs (the test can fail)
    bare = dict(loaded, growth_lr=None)
    again = load_checkpoint(path)
    other = trainer().fit(again.model, data, optimizer=again.optimizer, state=bare)
    assert not all(torch.equal(a[k], v) for k, v in other.model.state_dict().items())
    # pending tensors missing from the checkpoint are refused, not silently dropped
    lost = dict(loaded, tensors={k: v for k, v in ckpt.tensors.items() if not k.startswith("growth_lr.")})
    with pytest.raises(CheckpointError, match="growth_lr"):
        trainer().fit(load_checkpoint(path).model, data, state=lost)


def test_settings_are_declared_checked_and_settable():
    config = resolve_config("static", overrides={"growth_warmup": "0.1", "new_lr_scale": "3",
                                                 "new_lr_span": "0.2"})
    assert (config["growth_warmup"], config["new_lr_scale"], config["new_lr_span"]) == (0.1, 3.0, 0.2)
    defaults = resolve_config("static")
    assert (defaults["growth_warmup"], defaults["new_lr_scale"]) == (0.0, 1.0)
    for bad in ({"growth_warmup": -0.1}, {"growth_warmup": 1.5}, {"new_lr_scale": 0}, {"new_lr_span": 2}):
        with pytest.raises(ConfigError):
            Trainer(**bad)


# ---------------------------------------------------------------- which entries are new, op by op
def grown(net, optimizer, op, *, span_steps=5, before=None):
    """Train a step, let the hook mark, apply ``op``, let the hook collect: its ``left`` by name."""
    from edgekit import make_ctx
    from selfexpand.train.growth_lr import GrowthLR

    data = toy_dataset(n=16, d=5, k=3, seed=1)
    ctx = make_ctx(net, data, batch_size=16)
    ctx.optimizer = optimizer
    ctx.train_epoch()
    hook = GrowthLR(epochs=1, scale=2.0, span=span_steps / 1.0)  # 1 epoch x 1 step: M = span_steps
    if before is not None:
        before(hook, ctx)
    hook.on_validation_end(ctx, record={})
    events = op(net, optimizer)
    hook.on_grow_end(ctx, events=events)
    assert not any(MARKER in st for st in optimizer.state.values())
    names = {p: n for n, p in net.named_parameters()}
    return {names[p]: left for p, left in hook.left.items()}


@pytest.mark.parametrize("name", ["adam", "sgd", "gd"])
def test_add_units_new_entries_found(name):
    net = GrowableNet.mlp([5, 4, 3], seed=2)
    left = grown(net, make_optimizer(name, net.parameters(), lr=1e-2),
                 lambda n, o: [ops.add_units(n, "h1", N_NEW, **new_values(n, 1), optimizer=o)], span_steps=1)
    assert set(left) == {"connections.input_to_h1.weight", "layers.h1.bias", "connections.h1_to_output.weight"}
    for key, value in left.items():
        assert torch.equal(value > 0, new_rows(key, value.shape)), key


def test_split_units_copies_are_new_and_halved_originals_old():
    net = GrowableNet.mlp([5, 4, 3], seed=2)
    opt = make_optimizer("adam", net.parameters(), lr=1e-2)
    left = grown(net, opt, lambda n, o: [ops.split_units(n, "h1", [1, 1, 3], optimizer=o)], span_steps=1)
    new_in = torch.zeros(7, 5, dtype=torch.bool)
    new_in[4:] = True  # the three copies' incoming rows (unit 1 copied twice: both copies new)
    assert torch.equal(left["connections.input_to_h1.weight"] > 0, new_in)
    assert torch.equal(left["layers.h1.bias"] > 0, torch.tensor([False] * 4 + [True] * 3))
    new_out = torch.zeros(3, 7, dtype=torch.bool)
    new_out[:, 4:] = True
    assert torch.equal(left["connections.h1_to_output.weight"] > 0, new_out)


def test_split_edges_new_layer_is_new_masked_entries_are_not():
    net = GrowableNet.mlp([5, 3], seed=2)
    opt = make_optimizer("adam", net.parameters(), lr=1e-2)
    left = grown(net, opt, lambda n, o: [ops.split_edges(n, {"input_to_output": ([0, 2], [1, 4])}, eps=1e-3,
                                                         optimizer=o)], span_steps=1)
    assert "connections.input_to_output.weight" not in left  # old, and its split edges are masked
    layer = [n for n in net.layers if n not in ("input", "output")][0]
    expected = {f"layers.{layer}.bias", *(f"connections.{c}.weight" for c in net.connections
                                          if c != "input_to_output")}
    assert set(left) == expected
    assert all(bool((v > 0).all()) for v in left.values())


def test_pending_entries_follow_a_removal():
    """Entries still in their span keep their steps left when an op moves them (remove unit 0: rows shift)."""
    net = GrowableNet.mlp([5, 4, 3], seed=2)
    opt = make_optimizer("adam", net.parameters(), lr=1e-2)

    def pending(hook, ctx):  # entries of unit 3 had 2 steps left from an earlier growth step
        w = net.connections["input_to_h1"].weight
        left = torch.zeros(w.shape, dtype=torch.int32)
        left[3] = 2
        hook.left = {w: left}

    left = grown(net, opt, lambda n, o: [ops.remove_units(n, "h1", [0], optimizer=o)], before=pending)
    expected = torch.zeros(3, 5, dtype=torch.int32)
    expected[2] = 2  # unit 3 is now unit 2
    assert set(left) == {"connections.input_to_h1.weight"}
    assert torch.equal(left["connections.input_to_h1.weight"], expected)


def test_a_run_passes_the_settings_to_its_trainer(tmp_path):
    from selfexpand.runs import RunConfig, _trainer

    settings = resolve_config("static", overrides={"growth_warmup": 0.1, "new_lr_scale": 3.0, "new_lr_span": 0.2})
    trainer = _trainer(None, settings, RunConfig(method="static"), [], tmp_path)
    assert (trainer.growth_lr.warmup, trainer.growth_lr.scale, trainer.growth_lr.span) == (0.1, 3.0, 0.2)
    old = {k: v for k, v in settings.items() if k not in ("growth_warmup", "new_lr_scale", "new_lr_span")}
    assert not _trainer(None, old, RunConfig(method="static"), [], tmp_path).growth_lr.active  # stored before: off

"""Compute accounting (``selfexpand.train.flops``): training FLOPs counted from the structure equal a
hand computation on small graphs and ``FlopCounterMode``'s count of the same training step; growth
FLOPs are measured around growth steps (integration epochs excluded); per-epoch values and run totals
reach ``history.jsonl``, ``summary.json`` and ``inspect``, and survive a resume."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from edgekit import toy_dataset
from selfexpand import ops
from selfexpand.data import load_dataset
from selfexpand.graph import GrowableNet
from selfexpand.graph.fronts import ConvFront
from selfexpand.graph.parts import Layer
from selfexpand.graph.size_nets import controller_mask_net, size_weight_net
from selfexpand.presets import build_start, method_names, resolve_config
from selfexpand.report.describe import describe_run
from selfexpand.runs import RunConfig, resume_run, train_run
from selfexpand.train.callbacks import Callback
from selfexpand.train.context import GrowthContext
from selfexpand.train.flops import (FlopMeter, epoch_train_flops, flop_breakdown, natural_step_flops,
                                    train_flops_per_example)
from selfexpand.train.metrics import task_loss, task_metric
from selfexpand.train.natural_gradient import NaturalGradient
from selfexpand.train.trainer import make_optimizer


def measured(net, x, y, loss=F.cross_entropy) -> float:
    """FlopCounterMode's count of one forward + backward, per example."""
    with FlopCounterMode(display=False) as counter:
        loss(net(x), y).backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops() / x.shape[0]


def context(net, data, optimizer=None, batch_size=None) -> GrowthContext:
    optimizer = optimizer or torch.optim.Adam(net.parameters(), lr=1e-3)
    return GrowthContext(model=net, optimizer=optimizer, loss_fn=task_loss(data.task), data=data,
                         batch_size=batch_size or data.x_train.shape[0], generator=torch.Generator().manual_seed(0),
                         metric_name=task_metric(data.task))


def edge_split_net() -> GrowableNet:
    """4-3-2, the edges (0, 0) and (1, 2) of ``h1 -> output`` split through a new layer ``h2``."""
    net = GrowableNet.mlp([4, 3, 2], seed=0)
    ops.split_edges(net, {"h1_to_output": ([0, 1], [0, 2])}, eps=1e-2, generator=torch.Generator().manual_seed(0))
    return net


# ---------------------------------------------------------------- hand computations
def test_chain_matches_the_hand_count_and_the_flop_counter():
    net = GrowableNet.mlp([5, 4, 3], seed=0)
    x, y = torch.randn(7, 5), torch.randint(0, 3, (7,))
    # forward 2 (5*4 + 4*3) = 64; backward: weight gradients 40 + 24, the input gradient of h1 -> output 24
    assert train_flops_per_example(net) == (152, 152)  # dense: live == stored
    assert measured(net, x, y) == 152
    assert epoch_train_flops(net, 10) == (1520, 1520)
    # frozen first layer (weight and bias): h1 needs no gradient, so no input-gradient product into it
    for p in [net.connections["input_to_h1"].weight, net.layers["h1"].bias]:
        p.requires_grad_(False)
    assert train_flops_per_example(net) == (64 + 24, 64 + 24) and measured(net, x, y) == 88
    # the bias of h1 trains again: the gradient reaches h1, through the product h1 -> output
    net.layers["h1"].bias.requires_grad_(True)
    assert train_flops_per_example(net)[0] == 64 + 48 and measured(net, x, y) == 112


def test_a_layer_that_does_not_reach_the_output_has_no_backward():
    net = GrowableNet.mlp([5, 4, 3], seed=0)
    net.add_layer("dangling", Layer(2), before="output")
    net.add_connection("h1", "dangling", torch.randn(2, 4))
    x, y = torch.randn(3, 5), torch.randint(0, 3, (3,))
    assert train_flops_per_example(net)[0] == 152 + 2 * 2 * 4  # its forward only
    assert measured(net, x, y) == 168


def test_edge_split_network_with_masks_and_eps_edges():
    net = edge_split_net()
    c = net.connections
    # the structure the hand count assumes
    assert net.order == ["input", "h1", "h2", "output"]
    assert c["input_to_h1"].shape == (3, 4) and c["h1_to_output"].shape == (2, 3)
    assert int(c["h1_to_output"].mask.sum()) == 4  # the two split edges masked
    assert c["h1_to_h2"].shape == (2, 2) and c["h1_to_h2"].in_index.tolist() == [0, 2]
    assert c["h2_to_output"].shape == (2, 2) and int(c["h2_to_output"].provisional.sum()) == 2  # eps edges
    # per connection (stored / live): forward 2 m k, backward 2 m k per weight / input gradient
    # input -> h1   3x4: 24 + 24 (no input gradient)          = 48 / 48
    # h1 -> output  2x3, 4 live: 12 + 24 / 8 + 16             = 36 / 24
    # h1 -> h2      2x2: 8 + 16                               = 24 / 24
    # h2 -> output  2x2: 8 + 16                               = 24 / 24
    assert train_flops_per_example(net) == (132, 120)
    x, y = torch.rand(9, 4), torch.randint(0, 2, (9,))
    assert measured(net, x, y) == 132  # the kernels multiply the masked entries too
    # pruning an eps edge of h1 -> h2 (weight and input gradient) takes 2 + 4 live FLOPs, none stored
    rows, cols = torch.nonzero(c["h1_to_h2"].provisional, as_tuple=True)
    ops.prune_edges(net, [("h1_to_h2", int(rows[0]), int(cols[0]))])
    assert train_flops_per_example(net) == (132, 114)
    assert measured(net, x, y) == 132


def test_conv_front_matches_the_hand_count():
    front = ConvFront([1, 8, 8], plan=(2, "pool", 3))
    net = GrowableNet.mlp([front.out_features, 5, 3], seed=0, front=front)
    assert front.out_features == 48
    # conv 1->2 on 8x8: 2 * 128 outputs * 9 = 2304, weight gradient only (the input needs none)
    # conv 2->3 on 4x4: 2 * 48 outputs * 18 = 1728, weight and input gradients
    # 48 -> 5 -> 3: forward 2 (240 + 15) = 510; backward 480 + 480 (the front trains) + 30 + 30
    hand = 2304 * 2 + 1728 * 3 + 510 + 960 + 60
    assert train_flops_per_example(net) == (hand, hand) == (11322, 11322)
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 3, (6,))
    assert measured(net, x, y) == hand
    for p in front.parameters():  # a frozen front: no product behind it, no input gradient out of it
        p.requires_grad_(False)
    assert train_flops_per_example(net)[0] == 2304 + 1728 + 510 + 480 + 60
    assert measured(net, x, y) == 2304 + 1728 + 510 + 480 + 60


def test_size_modulators_make_live_smaller_and_a_detached_factor_passes_no_gradient():
    net = size_weight_net(3, 2, n_max=6, n_start=2.5)  # theta(N - m + 1): units 1..3 live of 6
    live_units = int((net.layers["h1"].modulator() != 0).sum())
    assert 0 < live_units < 6
    stored, live = train_flops_per_example(net)
    # 3 -> 6 -> 2: forward 2 (18 + 12); backward 36 (weight) + 24 + 24 (weight, input)
    assert stored == 60 + 84
    assert live == 2 * (3 * live_units + 2 * live_units) + 2 * 3 * live_units + 4 * 2 * live_units
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    assert measured(net, x, y, F.mse_loss) == stored
    # the reference controller's factor is detached: with the layer's own weights and bias frozen,
    # nothing before h1 -> output needs a gradient, though the controller itself trains
    net = controller_mask_net(3, 2, n_max=4, reference_defects=True, c_start=0.5)
    for p in [net.connections["input_to_h1"].weight, net.layers["h1"].bias]:
        p.requires_grad_(False)
    assert train_flops_per_example(net)[0] == 2 * (12 + 8) + 16
    assert measured(net, x, y, F.mse_loss) == 2 * (12 + 8) + 16


def front_net() -> GrowableNet:
    front = ConvFront([1, 8, 8], plan=(2, "pool", 3))
    return GrowableNet.mlp([front.out_features, 5, 3], seed=0, front=front)


@pytest.mark.parametrize("make", [lambda: GrowableNet.mlp([5, 4, 3], seed=0), edge_split_net, front_net],
                         ids=["chain", "edge-split", "conv-front"])
def test_natural_gradient_products_are_counted(make):
    net = make()
    n_in = 64 if net.front is not None else net.layers["input"].size
    data = toy_dataset(n=24, d=n_in, k=net.layers["output"].size, seed=1)
    optimizer = NaturalGradient(net.parameters(), lr=0.1, max_iter=5)
    x, y = data.x_train[:8], data.y_train[:8]
    out = net(x)
    F.cross_entropy(out, y).backward(retain_graph=True)
    optimizer.set_outputs(out)
    with FlopCounterMode(display=False) as counter:
        optimizer.step()
    iterations = optimizer.last_info["iterations"]
    assert iterations > 0
    formula = natural_step_flops(flop_breakdown(net), 8, iterations)[0]
    if net.front is None:
        assert formula == counter.get_total_flops()
    else:  # the convolutions' double backward costs more than a backward pass: measured instead
        assert formula < counter.get_total_flops()
    # a whole training epoch with it, as the context counts it
    ctx = context(net, data, optimizer, batch_size=8)
    with FlopCounterMode(display=False) as counter:
        ctx.train_epoch()
    assert ctx._train_flops[0] == counter.get_total_flops() > 0


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.mark.parametrize("method", method_names())
def test_every_start_network_one_real_training_step(method, digits):
    """The analytic count of one training step (``train_epoch`` over one batch, auxiliary size losses
    included) equals FlopCounterMode's, for every registered method's start network on digits."""
    settings = resolve_config(method, "digits")
    data = dataclasses.replace(digits, x_train=digits.x_train[:40], y_train=digits.y_train[:40])
    net = build_start(method, settings, data, 0)
    optimizer = make_optimizer(settings["optimizer"], net.parameters(), settings["lr"], task=data.task)
    ctx = context(net, data, optimizer, batch_size=40)
    with FlopCounterMode(display=False) as counter:
        ctx.train_epoch()
    stored, live = ctx._train_flops
    assert stored == counter.get_total_flops() > 0
    assert 0 <= live <= stored  # the size methods start with no live unit: live 0
    assert stored == 40 * train_flops_per_example(net)[0] or getattr(optimizer, "needs_outputs", False)


# ---------------------------------------------------------------- what counts as what
def test_context_helpers_count_growth_work_and_leave_the_model_epochs_out():
    data = toy_dataset(n=40, d=5, k=3, seed=0)
    net = GrowableNet.mlp([5, 4, 3], seed=0)
    ctx = context(net, data, batch_size=16)
    per_example = train_flops_per_example(net)[0]
    forward = flop_breakdown(net).forward
    copy = GrowableNet.mlp([5, 6, 3], seed=1)
    with FlopMeter() as meter:
        ctx.growth_meter = meter
        ctx.model_epoch(phase="integration")  # an epoch of the run: training, not growth
        assert meter.total == 0
        ctx.train_epoch(copy, torch.optim.SGD(copy.parameters(), lr=0.1))  # a copy: growth
        assert meter.total == 40 * train_flops_per_example(copy)[0]
        ctx.evaluate("val")  # asked for by growth: forward only
        assert meter.total == 40 * train_flops_per_example(copy)[0] + 10 * forward
        before = meter.total
        ctx.gradient_pass(lambda: None, n_batches=2, model=copy)  # 2 batches of 16
        assert meter.total == before + 32 * train_flops_per_example(copy)[0]
        before = meter.total
        with torch.no_grad():
            copy(data.x_train)  # anything else is measured
        assert meter.running
    ctx.growth_meter = None
    assert meter.total == before + 40 * flop_breakdown(copy).forward
    record = ctx.history.records[-1]
    assert (record["train_flops"], record["live_train_flops"]) == (40 * per_example, 40 * per_example)


def test_the_meter_counts_what_flop_counter_mode_counts():
    """The growth meter uses FlopCounterMode's formulas without its module tracker (whose hooks break
    ``autograd.grad`` on leaf tensors, as SENN's chain sample takes it)."""
    front = ConvFront([1, 8, 8], plan=(2, "pool", 3))
    nets = [GrowableNet.mlp([front.out_features, 5, 3], seed=0, front=front), edge_split_net()]
    inputs = [torch.randn(6, 1, 8, 8), torch.rand(6, 4)]
    for net, x in zip(nets, inputs):
        y = torch.randint(0, net.layers["output"].size, (6,))
        optimizer = NaturalGradient(net.parameters(), lr=0.1, max_iter=3)

        def step():
            out = net(x)
            F.cross_entropy(out, y).backward(retain_graph=True)
            optimizer.set_outputs(out)
            optimizer.step()
            net.zero_grad(set_to_none=True)

        with FlopCounterMode(display=False) as counter:
            step()
        with FlopMeter() as meter:
            step()
        assert meter.total == counter.get_total_flops() > 0
    net = GrowableNet.mlp([4, 3, 2], seed=0)
    leaf = torch.rand(5, 4, requires_grad=True)
    with FlopMeter() as meter:
        torch.autograd.grad(net(leaf).sum(), [leaf])
    # forward 2 * 5 (12 + 6); backward: the input gradients of both products (no weight gradient asked)
    assert meter.total == 2 * 5 * (12 + 6) * 2


def test_flop_meter_pauses():
    a, b = torch.randn(4, 5), torch.randn(5, 3)
    with FlopMeter() as meter:
        a @ b
        with meter.paused():
            a @ b
            meter.add(7)
        a @ b
    assert meter.total == 2 * (2 * 4 * 5 * 3) + 7 and not meter.running
    a @ b  # after the block: nothing is measured
    assert meter.total == 2 * (2 * 4 * 5 * 3) + 7


def test_a_repeated_search_is_counted_as_if_every_step_were_measured():
    """``FlopMeter.repeats``: SENN's ascent measured on its first step only counts what measuring every
    step counts; outside a running meter it measures nothing."""
    from selfexpand.strategies.senn.proposals import gradient_ascent, mala

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=gen, dtype=torch.float64)

    def objective(theta):  # (P, 7) -> (P,): products with x forward and backward
        return torch.tanh(x @ theta[:, :-1].T + theta[:, -1]).square().mean(0)

    init = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    for search in (lambda **kw: gradient_ascent(objective, init, steps=6, lr=0.1, **kw),
                   lambda **kw: mala(objective, init, bursts=2, steps=3, generator=torch.Generator().manual_seed(1),
                                     **kw)):
        with FlopMeter() as every:
            plain = search()
        with FlopMeter() as sampled:
            ticked = search(step_context=sampled.repeats())
        assert sampled.total == every.total > 0
        torch.testing.assert_close(ticked[0], plain[0], rtol=0, atol=0)  # the search itself unchanged
    idle = FlopMeter()
    tick = idle.repeats()
    with tick():
        x @ x.T  # no meter running: nothing is measured
    assert idle.total == 0
    counted = FlopMeter()
    with counted:
        tick = counted.repeats()
        for size in (3, 3, 3):
            with tick():
                torch.randn(size, 4) @ torch.randn(4, 2)
    assert counted.total == 3 * (2 * 3 * 4 * 2)


# ---------------------------------------------------------------- runs
# tiny SVoD rounds on digits: 64-8-8-10, growth after epoch 1 and 2
ROUNDS = {"hidden": [8, 8], "rounds": 3, "schedule": [4, 6], "max_round_epochs": 1, "patience": 10,
          "final_patience": 10}


def history(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def test_static_run_counts_training_and_no_growth(tmp_path):
    run_dir, summary = train_run(RunConfig(method="static", dataset="digits", epochs=2, seed=0,
                                           out=str(tmp_path / "static"), settings={"hidden": [8]}))
    epochs = [r for r in history(run_dir) if r["type"] == "epoch"]
    n_train = load_dataset("digits", seed=0).x_train.shape[0]
    net = GrowableNet.mlp([64, 8, 10])
    per_epoch = n_train * train_flops_per_example(net)[0]
    assert [r["train_flops"] for r in epochs] == [per_epoch, per_epoch]
    assert [r["live_train_flops"] for r in epochs] == [per_epoch, per_epoch]
    assert [r["growth_flops"] for r in epochs] == [0, 0]
    assert (summary["train_flops"], summary["live_train_flops"], summary["growth_flops"]) == (2 * per_epoch,
                                                                                              2 * per_epoch, 0)
    assert "compute (run totals): train" in describe_run(run_dir)


def test_growth_flops_are_measured_after_a_growth_step(tmp_path):
    run_dir, summary = train_run(RunConfig(method="svod-random", dataset="digits", epochs=3, seed=0,
                                           out=str(tmp_path / "svod"), settings=dict(ROUNDS)))
    records = history(run_dir)
    epochs = [r for r in records if r["type"] == "epoch"]
    grown = {r["epoch"] for r in records if r["type"] == "growth" and r["kind"] == "add_units"}
    assert grown
    for r in epochs:
        if r["epoch"] in grown:
            # a copy with candidates trained for an epoch, then a gate-gradient pass: more than the epoch
            assert r["growth_flops"] > r["train_flops"] > 0
        else:
            assert r["growth_flops"] == 0
    for key in ("train_flops", "live_train_flops", "growth_flops"):
        assert summary[key] == sum(r[key] for r in epochs)


class StopAfter(Callback):
    """Interrupts a run after the epoch count reaches ``epoch`` (the checkpoint is saved at the end)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, ctx, **kwargs) -> None:
        if ctx.epoch >= self.epoch:
            ctx.request_stop("interrupted by the test")


def test_integration_epochs_are_training_and_a_resume_continues_the_totals(tmp_path):
    def config(out):
        return RunConfig(method="swe", dataset="digits", epochs=5, seed=0, out=str(tmp_path / out),
                         settings=dict(ROUNDS))

    straight, summary = train_run(config("straight"))
    records = history(straight)
    integration = [r for r in records if r["type"] == "epoch" and r.get("phase") == "integration"]
    assert integration and all(r["train_flops"] > 0 and "growth_flops" not in r for r in integration)
    epochs = [r for r in records if r["type"] == "epoch"]
    assert summary["train_flops"] == sum(r["train_flops"] for r in epochs)
    assert summary["growth_flops"] == sum(r.get("growth_flops", 0) for r in epochs) > 0

    # interrupted after epoch 1 and its integration epoch 2, resumed to the end
    first, partial = train_run(config("resumed"), callbacks=[StopAfter(2)])
    assert partial["epochs"] == 2 and partial["train_flops"] < summary["train_flops"]
    _, resumed = resume_run(first)
    keys = ("train_flops", "live_train_flops", "growth_flops")
    assert [tuple(r.get(k) for k in keys) for r in history(first) if r["type"] == "epoch"] == \
        [tuple(r.get(k) for k in keys) for r in epochs]
    assert {k: resumed[k] for k in keys} == {k: summary[k] for k in keys}

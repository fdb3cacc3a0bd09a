"""SWE keeps its new units alive (issue #22): the planted case where the paper's donation rate kills
them in integration, the bounded rate and ``revive`` that keep them, and the unintegrated fallback."""

from __future__ import annotations

import pytest
import torch

from edgekit import toy_dataset
from selfexpand.graph import GrowableNet
from selfexpand.strategies.base import Site
from selfexpand.strategies.initializers.shared_weights import SharedWeightsExtender, revive_dead_units
from selfexpand.train.trainer import Trainer


def trained(seed: int, widths=(8, 24, 5), lr: float = 1e-2):
    """A net trained 2 epochs with Adam (weight decay 1e-4); its context has budget for more epochs."""
    data = toy_dataset(n=512, d=widths[0], k=widths[-1], seed=seed, signed=True)
    net = GrowableNet.mlp(list(widths), seed=seed)
    trainer = Trainer(None, epochs=2, batch_size=16, lr=lr, optimizer="adam", weight_decay=1e-4, seed=seed)
    trainer.fit(net, data)
    trainer.ctx.epochs_total = 100
    return net, trainer.ctx, data


def new_unit_active_fraction(net, x, layer: str, n: int) -> torch.Tensor:
    with torch.no_grad():
        return (net.eval().layer_outputs(x)[layer][:, -n:] > 0).float().mean(0)


OLD = dict(donation_lr="per_sqrt_unit", revive=False)  # the defaults before issue #22
FIXED = dict(donation_lr="bounded", revive=True)


def test_planted_a_single_new_unit_dies_with_the_old_defaults_and_lives_with_the_fix():
    # one new unit beside 24 existing ones (lr 3e-2, seed 2: a case found dead with the old defaults):
    # its weights are the sum of 24 donations, which all take the mirror image of the existing units'
    # steps while its outgoing weights are 0, so at lr / sqrt(1) it moves up to 24 times faster than an
    # ordinary weight, in a direction unrelated to it
    active = {}
    for name, settings in (("old", OLD), ("fixed", FIXED)):
        net, ctx, data = trained(2, lr=3e-2)
        SharedWeightsExtender(**settings).grow(ctx, [Site("h1", 1)])
        active[name] = float(new_unit_active_fraction(net, data.x_val, "h1", 1)[0])
    assert active["old"] < 0.01 and active["fixed"] > 0.2, active


def test_bounded_rate_is_lr_over_the_larger_side():
    net, ctx, data = trained(0)
    seen = []
    real = ctx.model_epoch

    def watch(**kwargs):
        seen.append([g["lr"] for g in ctx.optimizer.param_groups if g.get("donations")])
        return real(**kwargs)

    ctx.model_epoch = watch
    SharedWeightsExtender(donation_lr="bounded").grow(ctx, [Site("h1", 3)])
    assert seen == [[pytest.approx(1e-2 / 24)]]


def test_revive_gives_a_dead_new_unit_the_median_bias_and_leaves_live_ones():
    net, ctx, data = trained(0)
    SharedWeightsExtender(integration_epochs=0, revive=False).grow(ctx, [Site("h1", 3)])
    bias = net.layers["h1"].bias
    with torch.no_grad():
        bias[-1] = -1e3  # plant a dead unit
    kept = bias[-3:-1].detach().clone()
    assert revive_dead_units(ctx, "h1", 3) == 1
    assert torch.equal(bias[-3:-1], kept)
    active = new_unit_active_fraction(net, data.x_train[:1024], "h1", 3)
    assert abs(float(active[-1]) - 0.5) <= 1.5 / 512 + 1e-6


def test_units_that_cannot_be_integrated_join_with_random_outgoing_weights():
    net, ctx, data = trained(0)
    ctx.epochs_total = ctx.epoch  # the budget is spent
    events = SharedWeightsExtender().grow(ctx, [Site("h1", 2)])
    assert [e.kind for e in events] == ["add_units"]
    assert events[-1].details["integration_epochs"] == 0 and events[-1].details["outgoing"] == "random"
    outgoing = net.connections["h1_to_output"].weight[:, -2:]
    assert bool((outgoing.norm(dim=0) > 0).all())  # not silent

"""SWE (``SharedWeightsExtender``, ``ops.donations``): during a real integration epoch with Adam and
weight decay 1e-4 the stored weights of the grown layer stay bit for bit (and under the reference
option they do not); the layer's total incoming weight is conserved; baking reproduces the integrated
network; a donation request over the memory bound fails with the graph unchanged."""

from __future__ import annotations

import copy

import pytest
import torch

from edgekit import toy_dataset
from selfexpand.errors import ConfigError, GrowthError
from selfexpand.graph import GrowableNet
from selfexpand.ops import add_units
from selfexpand.ops.donations import attach_donations, bake_donations
from selfexpand.strategies.base import Site
from selfexpand.strategies.initializers.shared_weights import SharedWeightsExtender
from selfexpand.train.trainer import Trainer


def trained(seed: int = 0, widths=(8, 12, 10, 5)):
    """A net trained 2 epochs with Adam, weight decay 1e-4; its context has budget for more epochs."""
    data = toy_dataset(n=256, d=widths[0], k=widths[-1], seed=seed, signed=True)
    net = GrowableNet.mlp(list(widths), seed=seed)
    trainer = Trainer(None, epochs=2, batch_size=32, lr=1e-2, optimizer="adam", weight_decay=1e-4, seed=seed)
    trainer.fit(net, data)
    ctx = trainer.ctx
    ctx.epochs_total = 100
    return net, ctx, data


class Watch:
    """Wraps ``ctx.model_epoch`` to snapshot the grown layer around each integration epoch."""

    def __init__(self, ctx, layer: str, x: torch.Tensor):
        self.ctx, self.layer, self.x = ctx, layer, x
        self.real, self.seen = ctx.model_epoch, []
        ctx.model_epoch = self

    def state(self):
        net = self.ctx.model
        conn = next(c for c in net.incoming(self.layer))
        bias = net.layers[self.layer]
        with torch.no_grad():
            return {
                "original": conn.parametrizations.weight.original.detach().clone(),
                "bias_original": bias.parametrizations.bias.original.detach().clone(),
                "effective": conn.weight.detach().clone(),
                "bias_effective": bias.bias.detach().clone(),
                "outputs": net.eval()(self.x).detach().clone(),
                "lrs": [(g["lr"], bool(g.get("donations"))) for g in self.ctx.optimizer.param_groups],
            }

    def __call__(self, **kwargs):
        before = self.state()
        record = self.real(**kwargs)
        self.seen.append((before, self.state(), record))
        return record


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_integration_keeps_stored_rows_bit_identical_and_conserves_the_layer(seed):
    net, ctx, data = trained(seed)
    old_rows = net.connections["input_to_h1"].weight.detach().clone()
    old_bias = net.layers["h1"].bias.detach().clone()
    watch = Watch(ctx, "h1", data.x_val)
    events = SharedWeightsExtender().grow(ctx, [Site("h1", 4)])
    assert [e.kind for e in events] == ["add_units", "bake_donations"]
    (before, after, record), = watch.seen
    assert record["phase"] == "integration"
    assert before["lrs"] == [(1e-2, False), (1e-2 / 2, True)]  # donations train at lr / sqrt(n_new)
    assert len(ctx.optimizer.param_groups) == 1  # ... in a group removed after baking
    # the stored weights (existing rows and the new units' own rows) took no update at all
    assert torch.equal(before["original"], after["original"])
    assert torch.equal(before["bias_original"], after["bias_original"])
    assert torch.equal(after["original"][:12], old_rows)
    assert torch.equal(after["bias_original"][:12], old_bias)
    # ... while the donations did move the effective weights
    assert not torch.equal(before["effective"], after["effective"])
    # total incoming weight conserved, per input column and for the bias
    for key, orig in (("effective", "original"), ("bias_effective", "bias_original")):
        total, stored = after[key].double().sum(0), after[orig].double().sum(0)
        scale = after[key].double().abs().sum(0) + after[orig].double().abs().sum(0)
        assert bool(((total - stored).abs() <= 1e-5 * scale).all())
    # baking reproduces the integrated network
    assert torch.allclose(net.eval()(data.x_val), after["outputs"], atol=1e-5, rtol=0)
    w = net.connections["input_to_h1"].weight
    assert not hasattr(net.connections["input_to_h1"], "parametrizations")
    assert torch.equal(w.detach(), after["effective"])


def test_reference_option_lets_weight_decay_move_the_stored_rows():
    net, ctx, data = trained(0)
    watch = Watch(ctx, "h1", data.x_val)
    SharedWeightsExtender(existing_rows="reference").grow(ctx, [Site("h1", 4)])
    (before, after, _), = watch.seen
    assert not torch.equal(before["original"][:12], after["original"][:12])
    assert not torch.equal(before["bias_original"], after["bias_original"])
    # the defect: decay shrinks the rows (by about lr per step, whatever their size)
    assert after["original"][:12].norm() < before["original"][:12].norm()


def test_integration_trains_only_donations_and_the_reading_connections():
    net, ctx, data = trained(0, widths=(8, 12, 10, 5))
    frozen = {k: v.detach().clone() for k, v in net.state_dict().items()
              if not k.startswith("connections.h1_to_h2") and "h1" not in k.split(".")[1]}
    state = copy.deepcopy(ctx.optimizer.state_dict()["state"])
    SharedWeightsExtender().grow(ctx, [Site("h1", 3)])
    for key, value in frozen.items():
        assert torch.equal(net.state_dict()[key], value), key
    # the untouched parameters' optimizer state did not move either (same step count)
    steps = {int(s["step"]) for s in ctx.optimizer.state_dict()["state"].values()}
    assert len(steps) == 2 and min(steps) == min(int(s["step"]) for s in state.values())
    # the connection reading h1 trained, including the new units' columns
    assert net.connections["h1_to_h2"].weight[:, 12:].abs().sum() > 0


def test_last_layer_first_and_one_integration_epoch_per_layer():
    net, ctx, data = trained(0, widths=(8, 12, 10, 5))
    epoch = ctx.epoch
    events = SharedWeightsExtender().grow(ctx, [Site("h1", 2), Site("h2", 3)])
    assert [(e.kind, e.site) for e in events] == [("add_units", "h2"), ("bake_donations", "h2"),
                                                  ("add_units", "h1"), ("bake_donations", "h1")]
    assert ctx.epoch == epoch + 2
    assert [r.get("site") for r in ctx.history.epochs()[-2:]] == ["h2", "h1"]
    assert net.widths() == [8, 14, 13, 5]
    assert "val_metric_after" in events[-1].details
    assert not any(g["params"] for g in ctx.optimizer.param_groups[1:])  # donations left the optimizer


def test_no_integration_epoch_when_the_budget_is_spent():
    net, ctx, data = trained(0)
    ctx.epochs_total = ctx.epoch
    events = SharedWeightsExtender().grow(ctx, [Site("h1", 2)])
    assert events[-1].details["integration_epochs"] == 0 and ctx.epoch == ctx.epochs_total


def test_donation_request_over_the_bound_fails_with_the_graph_unchanged():
    net, ctx, data = trained(0)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    spec, opt = net.spec(), copy.deepcopy(ctx.optimizer.state_dict())
    # 4 new x 12 old x (8 + 1) = 432 entries
    with pytest.raises(GrowthError, match=r"432 entries.*bound of 431.*max_donation_entries"):
        SharedWeightsExtender(max_donation_entries=431).grow(ctx, [Site("h2", 1), Site("h1", 4)])
    assert net.spec() == spec
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    assert repr(ctx.optimizer.state_dict()) == repr(opt)
    SharedWeightsExtender(max_donation_entries=432).grow(ctx, [Site("h1", 4)])  # at the bound: fine


def test_attach_donations_refuses_cleanly():
    net = GrowableNet.mlp([4, 6, 3], seed=0)
    add_units(net, "h1", 2, incoming={"input_to_h1": torch.zeros(2, 4)},
              outgoing={"h1_to_output": torch.zeros(3, 2)})
    spec = net.spec()
    with pytest.raises(GrowthError, match="max_donation_entries"):
        attach_donations(net, "h1", 2, max_entries=10)
    with pytest.raises(GrowthError, match="n_new must be smaller"):
        attach_donations(net, "h1", 8)
    with pytest.raises(GrowthError, match="hidden layer"):
        attach_donations(net, "output", 1)
    with pytest.raises(GrowthError, match="no donations to bake"):
        bake_donations(net, "h1")
    assert net.spec() == spec
    attach_donations(net, "h1", 2)
    with pytest.raises(GrowthError, match="already carries donations"):
        attach_donations(net, "h1", 2)


def test_donations_at_zero_are_function_preserving_and_bake_is_exact():
    net = GrowableNet.mlp([5, 7, 3], seed=1)
    x = torch.randn(20, 5)
    add_units(net, "h1", 3, incoming={"input_to_h1": torch.randn(3, 5)},
              outgoing={"h1_to_output": torch.zeros(3, 3)})
    reference = net(x)
    attach_donations(net, "h1", 3, std=0.0)
    assert torch.equal(net(x), reference)
    with torch.no_grad():
        net.connections["input_to_h1"].parametrizations.weight[0].donation.normal_()
    integrated = net(x)
    bake_donations(net, "h1")
    assert torch.allclose(net(x), integrated, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"donation_std": -1.0}, "donation_std"), ({"integration_epochs": -1}, "integration_epochs"),
    ({"existing_rows": "fixed"}, "existing_rows"), ({"max_donation_entries": 0}, "max_donation_entries"),
    ({"donation_lr": "fast"}, "donation_lr"), ({"new_bias": "zero"}, "new_bias"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SharedWeightsExtender(**kwargs)


def test_median_bias_starts_every_new_unit_active_on_half_the_training_rows(monkeypatch):
    net, ctx, data = trained(0)
    captured = {}
    import selfexpand.strategies.initializers.shared_weights as sw

    real = sw.add_units

    def spy(net, layer, n, **values):
        captured.update(values)
        return real(net, layer, n, **values)

    monkeypatch.setattr(sw, "add_units", spy)
    SharedWeightsExtender(new_bias="median", integration_epochs=0).grow(ctx, [Site("h2", 5)])
    with torch.no_grad():
        h1 = net.layers["h1"].activation(data.x_train[:1024] @ net.connections["input_to_h1"].weight.T
                                         + net.layers["h1"].bias)
        pre = h1[:, :12] @ captured["incoming"]["h1_to_h2"].T + captured["bias"]
    active = (pre > 0).float().mean(0)
    assert bool(((active - 0.5).abs() <= 1.5 / h1.shape[0] + 1e-6).all()), active
    # the Kaiming bias would not do that: it is drawn independently of the data
    assert not torch.allclose(captured["bias"], torch.zeros(5))

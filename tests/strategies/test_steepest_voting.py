"""SVoD (``SteepestVotingSelector``): a planted bottleneck gets the most votes; the model and its
optimizer never see the copy; votes follow the pooled ranking, sum to B and respect the budget."""

from __future__ import annotations

import copy

import pytest
import torch

from edgekit import make_ctx
from selfexpand.data import Dataset
from selfexpand.errors import ConfigError
from selfexpand.graph import GrowableNet
from selfexpand.strategies.base import Decision
from selfexpand.strategies.selectors.steepest_voting import SteepestVotingSelector
from selfexpand.strategies.topology import unit_cost
from selfexpand.train.trainer import Trainer


def bottleneck_task(seed: int) -> Dataset:
    """8 Gaussian inputs, 6 classes by the argmax of a random linear map: needs ~6 dimensions."""
    g = torch.Generator().manual_seed(100 + seed)
    teacher = torch.randn(8, 6, generator=g)

    def split(n):
        x = torch.randn(n, 8, generator=g)
        return x, (x @ teacher).argmax(1)

    (x, y), (xv, yv), (xt, yt) = split(1024), split(256), split(256)
    return Dataset("bottleneck", "classification", x, y, xv, yv, xt, yt, (8,), 6, {})


def trained_bottleneck(seed: int, widths=(8, 64, 2, 64, 6)):
    data = bottleneck_task(seed)
    net = GrowableNet.mlp(list(widths), seed=seed)
    trainer = Trainer(None, epochs=5, batch_size=64, lr=3e-3, seed=seed)
    trainer.fit(net, data)
    return net, trainer.ctx


def test_the_bottleneck_layer_gets_the_most_votes_in_at_least_4_of_5_seeds():
    wins = []
    for seed in range(5):
        net, ctx = trained_bottleneck(seed)
        ctx.decision = Decision(True, amount=12)
        votes = {s.layer: s.n_units for s in SteepestVotingSelector().select(ctx)}
        assert sum(votes.values()) == 12
        wins.append(votes.get("h2", 0) > max(votes.get("h1", 0), votes.get("h3", 0)))
    assert sum(wins) >= 4, wins


def test_the_copy_never_leaks_into_the_model_or_its_optimizer():
    net, ctx = trained_bottleneck(0)
    params = {k: v.detach().clone() for k, v in net.state_dict().items()}
    opt_state = copy.deepcopy(ctx.optimizer.state_dict())
    spec = net.spec()
    grads = [None if p.grad is None else p.grad.clone() for p in net.parameters()]
    ctx.decision = Decision(True, amount=6)
    assert SteepestVotingSelector().select(ctx)
    assert net.spec() == spec
    assert net.state_dict().keys() == params.keys()
    assert all(torch.equal(net.state_dict()[k], v) for k, v in params.items())
    after = ctx.optimizer.state_dict()
    assert after["param_groups"] == opt_state["param_groups"]
    for key, state in opt_state["state"].items():
        for name, value in state.items():
            assert torch.equal(after["state"][key][name], value)
    assert all(p.requires_grad for p in net.parameters())
    for p, g in zip(net.parameters(), grads):
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    assert all(layer.modulator is None for layer in net.layers.values())


def test_votes_follow_the_pooled_gate_gradient_ranking(monkeypatch):
    net = GrowableNet.mlp([4, 5, 5, 3], seed=0)
    ctx = make_ctx(net, bottleneck_task(0).__class__("t", "classification", *[torch.randn(16, 4), torch.randint(0, 3, (16,))] * 3, (4,), 3, {}))
    planted = [torch.tensor([0.5, -3.0, -1.0, 0.2, 0.0, 0.1]), torch.tensor([-2.0, -0.5, 0.3, -4.0, 1.0, 0.0])]
    monkeypatch.setattr(SteepestVotingSelector, "_gate_gradients", lambda self, ctx, trial, layers, n: planted)
    ctx.decision = Decision(True, amount=3)
    votes = {s.layer: s.n_units for s in SteepestVotingSelector(candidates_per_unit=2).select(ctx)}
    # pooled ascending: -4.0 (h2), -3.0 (h1), -2.0 (h2)
    assert votes == {"h1": 1, "h2": 2}
    ctx.decision = Decision(True, amount=5)
    votes = {s.layer: s.n_units for s in SteepestVotingSelector(candidates_per_unit=1).select(ctx)}
    assert votes == {"h1": 2, "h2": 3}  # -4 -3 -2 -1 -0.5


def test_the_parameter_budget_is_respected_in_rank_order(monkeypatch):
    net = GrowableNet.mlp([4, 5, 5, 3], seed=0)
    data = Dataset("t", "classification", *[torch.randn(16, 4), torch.randint(0, 3, (16,))] * 3, (4,), 3, {})
    cost_h1, cost_h2 = unit_cost(net, "h1"), unit_cost(net, "h2")
    assert (cost_h1, cost_h2) == (4 + 1 + 5, 5 + 1 + 3)
    planted = [torch.tensor([-5.0, -4.0, 0.0, 0.0]), torch.tensor([-3.0, -2.0, 0.0, 0.0])]
    monkeypatch.setattr(SteepestVotingSelector, "_gate_gradients", lambda self, ctx, trial, layers, n: planted)
    # room for two h1 units (20) and one h2 unit (9) plus its weight to each new h1 unit (2)
    ctx = make_ctx(net, data, max_params=net.params + 20 + 9 + 2)
    ctx.decision = Decision(True, amount=4)
    votes = {s.layer: s.n_units for s in SteepestVotingSelector().select(ctx)}
    assert votes == {"h1": 2, "h2": 1}
    # without room for the cross weights both h2 candidates are passed over; the next h1 one fits
    ctx = make_ctx(net, data, max_params=net.params + 20 + 9 + 1)
    ctx.decision = Decision(True, amount=4)
    assert {s.layer: s.n_units for s in SteepestVotingSelector().select(ctx)} == {"h1": 3}


def test_same_seed_same_votes_and_amount_defaults_to_units():
    results = []
    for _ in range(2):
        net, ctx = trained_bottleneck(1, widths=(8, 16, 4, 16, 6))
        ctx.decision = None
        sites = SteepestVotingSelector(units=5).select(ctx)
        results.append([(s.layer, s.n_units, s.score) for s in sites])
    assert results[0] == results[1]
    assert sum(n for _, n, _ in results[0]) == 5


@pytest.mark.parametrize("kwargs, match", [
    ({"units": 0}, "units"), ({"candidates_per_unit": 0}, "candidates_per_unit"),
    ({"init_scale": 0.0}, "init_scale"), ({"copy_lr": -1.0}, "copy_lr"), ({"copy_epochs": -1}, "copy_epochs"),
    ({"gate_batch_size": 0}, "gate_batch_size"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SteepestVotingSelector(**kwargs)

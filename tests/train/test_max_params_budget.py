"""``max_params`` is never exceeded on a real digits run of the ``edge`` method, and growth still
happens when the budget allows it. The same runs check, epoch by epoch, that pruning only ever
removes provisional (eps-born) edges.
"""

from __future__ import annotations

import pytest

from edgekit import digits, live_edges, provisional_edges
from selfexpand.graph import GrowableNet
from selfexpand.presets import build_method, resolve_config
from selfexpand.train.callbacks import Callback
from selfexpand.train.trainer import Trainer

FAST = {"min_gap": 2, "window": 2, "plateau_threshold": 1.0, "prune_after": 1}


class Watch(Callback):
    """After every epoch (growth and pruning included): params within the budget, and the edges
    that pruning removed were all provisional before."""

    def __init__(self, budget: int):
        self.budget = budget
        self.params: list[int] = []
        self.live = self.provisional = None
        self.pruned_epochs = 0

    def on_train_begin(self, ctx, **kwargs):
        self.live, self.provisional = live_edges(ctx.model), provisional_edges(ctx.model)

    def on_epoch_end(self, ctx, record, **kwargs):
        params = ctx.model.counts()["params"]
        assert params <= self.budget and record["params"] <= self.budget  # after / before growth
        self.params.append(params)
        kinds = {r["kind"] for r in ctx.history.growth() if r["epoch"] == ctx.epoch}
        live = live_edges(ctx.model)
        if "prune_edges" in kinds:
            assert "split_edges" not in kinds  # the trigger's gap keeps them apart
            removed = self.live - live
            assert removed and removed <= self.provisional
            assert live <= self.live  # pruning adds nothing
            self.pruned_epochs += 1
        self.live, self.provisional = live, provisional_edges(ctx.model)


def run(budget: int | None, epochs: int = 6):
    data = digits()
    cfg = resolve_config("edge", "digits", FAST)
    net = GrowableNet.mlp([data.n_features, data.n_outputs], seed=0)
    watch = Watch(budget if budget is not None else 10**9)
    trainer = Trainer(build_method("edge", cfg), epochs=epochs, batch_size=cfg["batch_size"],
                      lr=cfg["lr"], seed=0, max_params=budget, callbacks=[watch])
    result = trainer.fit(net, data)
    return net, result.history, watch


@pytest.mark.parametrize("extra", [40, 400])
def test_params_stay_within_the_budget_and_growth_happens(extra):
    start = GrowableNet.mlp([64, 10], seed=0).counts()["params"]
    budget = start + extra
    net, history, watch = run(budget)
    splits = [r for r in history.growth() if r["kind"] == "split_edges"]
    assert splits, "the budget allows growth; some must happen"
    for record in history.growth():
        assert record["params_before"] <= budget and record["params_after"] <= budget
    assert all(r["params"] <= budget for r in history.epochs())
    assert len(watch.params) == 6 and max(watch.params) > start
    assert net.counts()["params"] <= budget
    # every split edge costs at least a bias, one parent edge and 10 output edges, less the edge
    # itself: 11 params; params never fall below the start (only eps edges are pruned), so a budget
    # of 40 admits at most 3 edges per split
    if extra == 40:
        assert all(r["details"]["edges_split"] <= 3 for r in splits)
        assert min(watch.params) >= start
    assert watch.pruned_epochs >= 1


def test_no_room_no_growth():
    start = GrowableNet.mlp([64, 10], seed=0).counts()["params"]
    net, history, watch = run(start, epochs=4)
    assert [r for r in history.growth() if r["kind"] == "split_edges"] == []
    assert watch.params == [start] * 4


def test_without_a_budget_the_same_run_grows_past_it():
    """The budget is what held the runs above back (they are not small by accident)."""
    net, history, _ = run(None, epochs=3)
    (split,) = [r for r in history.growth() if r["kind"] == "split_edges"]
    assert split["params_after"] > 650 + 400

"""``RoundsTrigger``: rounds end by patience or by their epoch cap, the round's best weights come back,
the amounts follow the schedule (or the ratio), the last round stops the run; state round trip."""

from __future__ import annotations

import json

import pytest
import torch

from selfexpand.errors import ConfigError
from selfexpand.graph import GrowableNet
from selfexpand.strategies.triggers.rounds import REFERENCE_SCHEDULE, RoundsTrigger
from selfexpand.train.history import History


class World:
    """Just what the trigger reads: epoch, history, model, the metric's direction, the stop request."""

    higher_is_better = True

    def __init__(self):
        self.epoch, self.history, self.stop_training = 0, History(), False
        self.model = GrowableNet.mlp([3, 4, 2], seed=0)

    def request_stop(self, reason: str) -> None:
        self.stop_training = True

    def step(self, trigger, val_loss: float):
        self.epoch += 1
        with torch.no_grad():  # the weights carry the epoch number, so restores are visible
            self.model.layers["h1"].bias.fill_(self.epoch)
        self.history.append({"type": "epoch", "epoch": self.epoch, "val_loss": val_loss, "val_metric": -val_loss})
        return trigger.should_grow(self)


def test_patience_ends_a_round_restores_the_best_and_asks_for_the_scheduled_amount():
    world, trigger = World(), RoundsTrigger(3, schedule=[5, 7], patience=2, final_patience=3, max_round_epochs=50)
    losses = [1.0, 0.8, 0.9, 0.85]  # best at epoch 2, then 2 epochs without improvement
    decisions = [world.step(trigger, v) for v in losses]
    assert [d.grow for d in decisions] == [False, False, False, True]
    assert decisions[-1].amount == 5 and "epoch 2 restored" in decisions[-1].reason
    assert float(world.model.layers["h1"].bias.detach()[0]) == 2.0
    trigger.on_grow_end(world, ["event"])
    decisions = [world.step(trigger, v) for v in [0.9, 0.7, 0.75, 0.71]]
    assert [d.grow for d in decisions] == [False, False, False, True] and decisions[-1].amount == 7
    assert float(world.model.layers["h1"].bias.detach()[0]) == 6.0
    trigger.on_grow_end(world, ["event"])
    decisions = [world.step(trigger, v) for v in [0.6, 0.65, 0.66, 0.64]]  # last round: patience 3
    assert not any(d.grow for d in decisions)
    assert world.stop_training and "run stops" in decisions[-1].reason
    assert float(world.model.layers["h1"].bias.detach()[0]) == 9.0


def test_the_epoch_cap_ends_a_round_even_while_improving():
    world, trigger = World(), RoundsTrigger(2, schedule=[4], patience=100, max_round_epochs=3)
    decisions = [world.step(trigger, v) for v in [3.0, 2.0, 1.0]]
    assert [d.grow for d in decisions] == [False, False, True]
    assert "3 epochs" in decisions[-1].reason
    world.epoch += 2  # two integration epochs belong to no round
    trigger.on_grow_end(world, ["event"])
    decisions = [world.step(trigger, v) for v in [0.9, 0.8, 0.7]]
    assert [d.grow for d in decisions] == [False, False, False] and world.stop_training


def test_monitoring_the_metric_follows_its_direction():
    world = World()
    trigger = RoundsTrigger(2, schedule=[1], patience=1, monitor="val_metric")
    # val_metric = -val_loss: the metric improves when the loss falls
    decisions = [world.step(trigger, v) for v in [1.0, 0.5, 0.6]]
    assert [d.grow for d in decisions] == [False, False, True]
    assert float(world.model.layers["h1"].bias.detach()[0]) == 2.0


def test_ratio_schedule_and_the_reference_schedule():
    assert RoundsTrigger(4, schedule=[10], ratio=1.3).amounts == [10, 13, 17]
    assert RoundsTrigger(8).amounts == list(REFERENCE_SCHEDULE)
    assert RoundsTrigger(1).amounts == []


def test_state_round_trip_through_json_and_tensors_continues_identically():
    losses = [1.0, 0.8, 0.9, 0.7, 0.75, 0.8, 0.6, 0.61, 0.62, 0.63]
    world, trigger = World(), RoundsTrigger(3, schedule=[2, 3], patience=2, final_patience=2)
    full = []
    for v in losses:
        d = world.step(trigger, v)
        full.append((d.grow, d.amount))
        if d.grow:
            trigger.on_grow_end(world, ["event"])
    world2, first = World(), RoundsTrigger(3, schedule=[2, 3], patience=2, final_patience=2)
    split = []
    for v in losses[:5]:
        d = world2.step(first, v)
        split.append((d.grow, d.amount))
        if d.grow:
            first.on_grow_end(world2, ["event"])
    state, tensors = json.loads(json.dumps(first.state_dict())), first.state_tensors()
    assert tensors and all(k.startswith("best.") for k in tensors)
    second = RoundsTrigger(3, schedule=[2, 3], patience=2, final_patience=2)
    second.load_state_dict(state)
    second.load_state_tensors(tensors)
    for v in losses[5:]:
        d = world2.step(second, v)
        split.append((d.grow, d.amount))
        if d.grow:
            second.on_grow_end(world2, ["event"])
    assert split == full
    assert torch.equal(world.model.layers["h1"].bias, world2.model.layers["h1"].bias)


@pytest.mark.parametrize("kwargs, match", [
    ({"rounds": 0}, "rounds"), ({"patience": 0}, "patience"), ({"max_round_epochs": 0}, "max_round_epochs"),
    ({"monitor": "loss"}, "monitor"), ({"schedule": [3]}, "schedule"), ({"schedule": [3, 0]}, "schedule"),
    ({"ratio": -0.5}, "ratio"), ({"schedule": []}, "schedule"),
])
def test_bad_settings(kwargs, match):
    kwargs = {"rounds": 3, **kwargs}
    with pytest.raises(ConfigError, match=match):
        RoundsTrigger(**kwargs)

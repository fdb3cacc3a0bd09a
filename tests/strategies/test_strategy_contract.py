"""The contract every strategy part of the edge method keeps (DESIGN.md, "Strategies"):
``state_dict`` -> JSON -> ``load_state_dict`` round trip that continues identically, determinism
under a seed, and bad constructor arguments rejected with a ``ConfigError`` that echoes the value.

Parts: ``EdgeStatistics``, ``PlateauTrigger``, ``EdgeSignificanceSelector``, ``EdgeSplitInitializer``,
``EpsEdgePruner``: every part class that ``methods.build_method`` puts into a method.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from edgekit import live_edges, make_ctx, toy_dataset
from selfexpand.errors import ConfigError
from selfexpand.graph import GrowableNet
from selfexpand.presets import build_method, method_names, resolve_config
from selfexpand.strategies.base import Site
from selfexpand.strategies.helpers.edge_pruning import EpsEdgePruner
from selfexpand.strategies.helpers.edge_statistics import EdgeStatistics
from selfexpand.strategies.initializers.edge_split import EdgeSplitInitializer
from selfexpand.strategies.selectors.edge_significance import EdgeSignificanceSelector
from selfexpand.strategies.triggers.plateau import PlateauTrigger
from selfexpand.train.history import History
from selfexpand.strategies import GrowthMethod
from selfexpand.train.trainer import Trainer

PART_CLASSES = (EdgeStatistics, PlateauTrigger, EdgeSignificanceSelector, EdgeSplitInitializer, EpsEdgePruner)


def same(a, b) -> bool:
    """Deep equality with ``torch.equal`` for tensors."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype \
            and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def _selector(statistics: EdgeStatistics, **settings) -> EdgeSignificanceSelector:
    """A selector scoring with ``statistics`` (accumulated by the caller's training) instead of its own."""
    selector = EdgeSignificanceSelector(**settings)
    selector.statistics = statistics
    return selector


def trained_world(seed: int, statistics: EdgeStatistics | None = None):
    """A 6 -> 4 net trained one epoch on toy data (statistics accumulated), and its context."""
    data = toy_dataset(n=64, d=6, k=4, seed=seed)
    net = GrowableNet.mlp([6, 4], seed=seed)
    stats = statistics or EdgeStatistics("abs_grad", "mean")
    trainer = Trainer(GrowthMethod("stats", extras=[stats]), epochs=1, batch_size=16, lr=1e-2, seed=seed)
    trainer.fit(net, data)
    return net, trainer.ctx, stats


# ------------------------------------------------------------------ scenarios: (part, result)
def run_statistics(seed):
    net, ctx, stats = trained_world(seed, EdgeStatistics("grad", "variance"))
    return stats, stats.scores(ctx, EdgeStatistics.tracked(net))


def run_trigger(seed):
    gen = torch.Generator().manual_seed(seed)
    trigger = PlateauTrigger(0.02, min_gap=2, window=2, prune_after=1)
    losses = (1.0 / torch.arange(1, 25) + 0.01 * torch.rand(24, generator=gen)).tolist()
    decisions = []
    for t in range(1, 25):
        history = History([{"type": "epoch", "val_loss": v} for v in losses[:t]])
        decisions.append(trigger.should_grow(type("Ctx", (), {"epoch": t, "history": history})()).grow)
    return trigger, decisions


def run_selector(seed):
    net, ctx, stats = trained_world(seed)
    selector = _selector(stats, tau=0.3, max_new=6)
    return selector, [(s.layer, s.edges, s.score) for s in selector.select(ctx)]


def run_initializer(seed):
    data = toy_dataset(n=32, d=6, k=4, seed=seed)
    net = GrowableNet.mlp([6, 4], seed=seed)
    ctx = make_ctx(net, data, seed=seed)
    init = EdgeSplitInitializer(eps=1e-2)
    events = init.grow(ctx, [Site(layer="output", edges={"input_to_output": ([0, 1, 3], [2, 2, 5])})])
    return init, (net.state_dict(), [e.details for e in events])


def run_pruner(seed):
    net, ctx, stats = trained_world(seed)
    pruner = EpsEdgePruner(stats, tau_prune=0.3, prune_after=1)
    sites = _selector(stats, tau=0.5, max_new=4).select(ctx)
    events = EdgeSplitInitializer(eps=1e-2).grow(ctx, sites)
    pruner.on_grow_end(ctx, events)
    state_after_grow = pruner.state_dict()
    ctx.epoch += 1
    pruned = pruner.on_validation_end(ctx, record={})
    # grow again (scores from a fallback pass now): the pruner ends with a pending prune
    sites = _selector(stats, tau=0.5, max_new=4).select(ctx)
    pruner.on_grow_end(ctx, EdgeSplitInitializer(eps=1e-2).grow(ctx, sites))
    assert len(pruner.pending) == 1
    return pruner, (state_after_grow, sorted(live_edges(net)), [e.edges_removed for e in pruned],
                    net.state_dict())


SCENARIOS = {
    EdgeStatistics: run_statistics, PlateauTrigger: run_trigger, EdgeSignificanceSelector: run_selector,
    EdgeSplitInitializer: run_initializer, EpsEdgePruner: run_pruner,
}

FRESH = {
    EdgeStatistics: lambda: EdgeStatistics("grad", "variance"),
    PlateauTrigger: lambda: PlateauTrigger(0.02, min_gap=2, window=2, prune_after=1),
    EdgeSignificanceSelector: lambda: EdgeSignificanceSelector(tau=0.3, max_new=6),
    EdgeSplitInitializer: lambda: EdgeSplitInitializer(eps=1e-2),
    EpsEdgePruner: lambda: EpsEdgePruner(EdgeStatistics(), tau_prune=0.3, prune_after=1),
}


def test_every_part_of_the_edge_methods_is_covered():
    # the other methods' parts have their own suites (test_rounds_trigger.py, test_steepest_voting.py, ...)
    for name in [n for n in method_names() if n.startswith("edge")]:
        method = build_method(name, resolve_config(name, "digits"))
        assert {type(p) for p in method.parts()} <= set(SCENARIOS), name
    assert set(SCENARIOS) == set(PART_CLASSES)


@pytest.mark.parametrize("cls", PART_CLASSES, ids=lambda c: c.__name__)
def test_deterministic_under_a_seed(cls):
    _, first = SCENARIOS[cls](3)
    _, second = SCENARIOS[cls](3)
    assert same(first, second)


def test_the_seed_matters_where_randomness_is_used():
    assert not same(run_initializer(3)[1][0], run_initializer(4)[1][0])  # eps draws
    assert not same(run_statistics(3)[1], run_statistics(4)[1])  # data order and data


@pytest.mark.parametrize("cls", PART_CLASSES, ids=lambda c: c.__name__)
def test_state_dict_round_trip_through_json(cls):
    part, _ = SCENARIOS[cls](1)
    state = part.state_dict()
    restored = json.loads(json.dumps(state))
    fresh = FRESH[cls]()  # as constructed, before any training
    if cls in (PlateauTrigger, EpsEdgePruner):
        assert fresh.state_dict() != state
    fresh.load_state_dict(restored)
    assert fresh.state_dict() == state
    fresh.load_state_dict(json.loads(json.dumps(fresh.state_dict())))
    assert fresh.state_dict() == state


def test_pruner_state_round_trip_continues_identically():
    """A pending prune survives a state round trip: the restored pruner prunes the same edges."""
    results = []
    for restore in (False, True):
        net, ctx, stats = trained_world(5)
        pruner = EpsEdgePruner(stats, tau_prune=0.3, prune_after=2)
        sites = _selector(stats, tau=0.5, max_new=4).select(ctx)
        pruner.on_grow_end(ctx, EdgeSplitInitializer(eps=1e-2).grow(ctx, sites))
        if restore:
            state = json.loads(json.dumps(pruner.state_dict()))
            pruner = EpsEdgePruner(stats, tau_prune=0.3, prune_after=2)
            assert pruner.on_validation_end(ctx, record={}) == []  # nothing pending before the load
            pruner.load_state_dict(state)
        ctx.epoch += 1
        assert pruner.on_validation_end(ctx, record={}) == []  # not due yet
        ctx.epoch += 1
        events = pruner.on_validation_end(ctx, record={})
        assert events and events[0].kind == "prune_edges"
        results.append((sorted(live_edges(net)), net.state_dict()))
    assert same(results[0], results[1])


def test_method_state_round_trip():
    cfg = resolve_config("edge", "digits")
    method = build_method("edge", cfg)
    method.trigger.t_last = 7
    method.selector.pruner.pending = [[9, ["input_to_h3", "h3_to_output"]]]
    state = json.loads(json.dumps(method.state_dict()))
    fresh = build_method("edge", cfg)
    fresh.load_state_dict(state)
    assert fresh.state_dict() == method.state_dict()
    assert fresh.trigger.t_last == 7 and fresh.selector.pruner.pending == [[9, ["input_to_h3", "h3_to_output"]]]


# ------------------------------------------------------------------ bad constructor arguments
STATS = EdgeStatistics()
BAD = [
    (EdgeStatistics, {"metric": "abs"}, "abs"),
    (EdgeStatistics, {"metric": None}, None),
    (EdgeStatistics, {"aggregation": "median"}, "median"),
    (PlateauTrigger, {"plateau_threshold": 0.0}, 0.0),
    (PlateauTrigger, {"plateau_threshold": -0.5}, -0.5),
    (PlateauTrigger, {"plateau_threshold": math.nan}, math.nan),
    (PlateauTrigger, {"plateau_threshold": "0.1"}, "0.1"),
    (PlateauTrigger, {"min_gap": -1}, -1),
    (PlateauTrigger, {"min_gap": 2.5}, 2.5),
    (PlateauTrigger, {"window": 0}, 0),
    (PlateauTrigger, {"window": True}, True),
    (PlateauTrigger, {"prune_after": -2}, -2),
    (EdgeSignificanceSelector, {"tau": 1.0}, 1.0),
    (EdgeSignificanceSelector, {"tau": -0.1}, -0.1),
    (EdgeSignificanceSelector, {"tau": math.nan}, math.nan),
    (EdgeSignificanceSelector, {"tau": "0.5"}, "0.5"),
    (EdgeSignificanceSelector, {"max_new": 0}, 0),
    (EdgeSignificanceSelector, {"max_new": 3.0}, 3.0),
    (EdgeSignificanceSelector, {"signed": "yes"}, "yes"),
    (EdgeSplitInitializer, {"eps": -1e-8}, -1e-8),
    (EdgeSplitInitializer, {"eps": math.inf}, math.inf),
    (EdgeSplitInitializer, {"eps": "1e-8"}, "1e-8"),
    (EdgeSplitInitializer, {"signed": "maybe"}, "maybe"),
    (EpsEdgePruner, {"statistics": STATS, "tau_prune": 1.5}, 1.5),
    (EpsEdgePruner, {"statistics": STATS, "tau_prune": -0.1}, -0.1),
    (EpsEdgePruner, {"statistics": STATS, "tau_prune": "x"}, "x"),
    (EpsEdgePruner, {"statistics": STATS, "prune_after": -1}, -1),
    (EpsEdgePruner, {"statistics": STATS, "prune_after": 1.0}, 1.0),
]


@pytest.mark.parametrize("cls,kwargs,value", BAD, ids=[f"{c.__name__}-{sorted(k)[-1]}-{v!r}" for c, k, v in BAD])
def test_bad_arguments_raise_config_error_echoing_the_value(cls, kwargs, value):
    with pytest.raises(ConfigError) as info:
        cls(**kwargs)
    message = str(info.value)
    name = next(k for k in kwargs if k != "statistics")
    assert f"{name}={value!r}" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("cls,kwargs", [
    (EdgeStatistics, {"metric": "weight_sq", "aggregation": "variance"}),
    (PlateauTrigger, {"plateau_threshold": 1, "min_gap": 0, "window": 1, "prune_after": 0}),
    (EdgeSignificanceSelector, {"tau": 0, "max_new": 1, "signed": True}),
    (EdgeSplitInitializer, {"eps": 0, "signed": False}),
    (EpsEdgePruner, {"statistics": STATS, "tau_prune": 1, "prune_after": 0}),
])
def test_boundary_arguments_are_accepted(cls, kwargs):
    part = cls(**kwargs)
    for name, value in kwargs.items():  # kept as given, not clamped
        stored = getattr(part, name)
        assert stored is value or stored == value

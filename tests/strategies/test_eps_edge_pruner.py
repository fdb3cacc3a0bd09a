"""``EpsEdgePruner``: the eps edges that did not become useful go, the useful ones stay
(ALGORITHMS.md §1, "Prune": delete those whose normalised score is **below** ``tau_prune``; the
reference code inverts this). Only provisional (eps-born) edges may ever be pruned; survivors stop
being provisional; the graph is compacted afterwards.
"""

from __future__ import annotations

import copy

import pytest
import torch

from edgekit import dataset_from, live_edges, make_ctx, provisional_edges, toy_dataset
from selfexpand import ops
from selfexpand.graph import GrowableNet
from selfexpand.strategies.base import Site
from selfexpand.strategies.helpers.edge_pruning import EpsEdgePruner
from selfexpand.strategies.helpers.edge_statistics import EdgeStatistics
from selfexpand.strategies.initializers.edge_split import EdgeSplitInitializer


def assert_compact(net) -> None:
    """No stored row or column without a live edge, no all-live mask left behind."""
    for name, c in net.connections.items():
        live = c.live()
        assert bool(live.any(1).all()) and bool(live.any(0).all()), name
        assert c.mask is None or not bool(c.mask.bool().all()), name


def planted_regression():
    """Two inputs that are never both non-zero, three outputs: ``y0 = x0 + x1`` (already exact),
    ``y1 = 0`` (exact), ``y2 = 2 x0`` (missing). The net starts at ``W = [[1, 1], [0, 0], [0, 0]]``,
    biases 0, and both edges into output 0 are split (units ``v0 = relu(x0)``, ``v1 = relu(x1)``).

    The loss gradient of an eps edge is (up to eps-sized terms) the correlation of its source with
    the residual at its target: only ``v0 -> output 2`` meets a residual (``-2 x0``) it can explain.
    ``v1 -> output 2`` sees ``E[x1 * x0] = 0``, output 1 has no residual, and the eps edges into the
    new units only pass on the residual of output 0, which is ~0."""
    g = torch.Generator().manual_seed(0)
    n = 64
    a = 0.5 + torch.rand(n, generator=g)
    which = torch.arange(n) % 2 == 0
    x = torch.stack([torch.where(which, a, 0.0), torch.where(which, 0.0, a)], 1)
    y = torch.stack([x[:, 0] + x[:, 1], torch.zeros(n), 2 * x[:, 0]], 1)
    net = GrowableNet.mlp([2, 3], seed=0)
    with torch.no_grad():
        net.connections["input_to_output"].weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]))
        net.layers["output"].bias.zero_()
    return net, dataset_from(x, y)


@pytest.mark.parametrize("prune_after", [1, 2])
def test_useful_eps_edge_survives_useless_ones_are_pruned(prune_after):
    net, data = planted_regression()
    ctx = make_ctx(net, data, batch_size=16, epoch=5)
    stats = EdgeStatistics("abs_grad", "mean")
    pruner = EpsEdgePruner(stats, tau_prune=0.1, prune_after=prune_after)
    events = EdgeSplitInitializer(eps=1e-8).grow(
        ctx, [Site(layer="output", edges={"input_to_output": ([0, 0], [0, 1])})])
    assert [e.kind for e in events] == ["split_edges"] and events[0].details["signed"] is False
    pruner.on_grow_end(ctx, events)
    key = lambda s, t, i, j: (s, t, i, j)  # noqa: E731
    useful = key("h1", "output", 0, 2)
    useless = {key("input", "h1", 1, 0), key("input", "h1", 0, 1),
               key("h1", "output", 0, 1), key("h1", "output", 1, 1), key("h1", "output", 1, 2)}
    assert provisional_edges(net) == useless | {useful}
    before = live_edges(net)
    weight_one = {key("input", "h1", 0, 0), key("input", "h1", 1, 1)}
    old_direct = {key("input", "output", i, j) for i in range(2) for j in (1, 2)}
    assert weight_one | old_direct <= before

    for early in range(5, 5 + prune_after):  # not due yet: nothing happens
        ctx.epoch = early
        assert pruner.on_validation_end(ctx, record={}) == []
        assert live_edges(net) == before and provisional_edges(net) == useless | {useful}

    ctx.epoch = 5 + prune_after
    events = pruner.on_validation_end(ctx, record={})
    assert [e.kind for e in events] == ["prune_edges", "compact"]
    assert events[0].edges_removed == len(useless)
    after = live_edges(net)
    assert after == before - useless
    assert useful in after
    # the old direct edges (zero weights, and into output 1 a zero gradient too) and the weight-1
    # split edges are not eps-born: they stay whatever their score
    assert weight_one | old_direct <= after
    assert all(c.provisional is None for c in net.connections.values())
    assert_compact(net)
    # output 1 lost every edge from h1: compaction dropped that stored row
    assert net.connections["h1_to_output"].out_index.tolist() == [0, 2]
    assert pruner.pending == [] and pruner.on_validation_end(ctx, record={}) == []


def test_weight_metric_direction():
    """With ``abs_weight`` a grown eps edge (planted weight 0.5) survives, the 1e-8 ones go."""
    net = GrowableNet.mlp([4, 3], seed=1)
    data = toy_dataset(d=4, k=3)
    ctx = make_ctx(net, data, epoch=2)
    event = ops.split_edges(net, {"input_to_output": ([0, 1, 2], [0, 1, 3])}, eps=1e-8,
                            generator=ctx.generator)
    pruner = EpsEdgePruner(EdgeStatistics("abs_weight", "mean"), tau_prune=0.1, prune_after=2)
    pruner.on_grow_end(ctx, [event])
    c = net.connections["h1_to_output"]
    with torch.no_grad():
        c.weight[2, 0] = -0.5  # unit 0 (parent 0) -> output 2: a grown eps edge
        net.connections["input_to_h1"].weight[1, 2] = 0.25  # unit 1 <- input 3
    before, eps_born = live_edges(net), provisional_edges(net)
    grown = {("h1", "output", 0, 2), ("input", "h1", 3, 1)}
    assert grown <= eps_born
    ctx.epoch = 4
    pruner.on_validation_end(ctx, record={})
    assert live_edges(net) == before - (eps_born - grown)
    assert_compact(net)


class PlantedScores:
    def __init__(self, scores):
        self.planted = scores

    def scores(self, ctx, names):
        return {n: self.planted[n].clone() for n in names}


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("tau_prune", [0.0, 0.1, 0.5])
def test_pruned_set_matches_brute_force(seed, tau_prune):
    gen = torch.Generator().manual_seed(seed)
    net = GrowableNet.mlp([6, 4], seed=seed)
    data = toy_dataset(d=6, k=4)
    ctx = make_ctx(net, data, epoch=3)
    event = ops.split_edges(net, {"input_to_output": ([0, 0, 1, 1], [1, 4, 1, 2])}, eps=1e-8,
                            generator=gen)
    names = event.details["connections"]
    # scores: eps edges random, except every eps edge into output 3 (no split child) lowest;
    # non-provisional edges lower still, masked edges far lower (they must not enter the min)
    scores = {}
    for n in names:
        c = net.connections[n]
        s = torch.rand(c.shape, generator=gen) + 1.0
        s[~c.provisional] = 0.0
        scores[n] = s
    scores[names[-1]][3, :] = 1.0
    scores[names[0]][0, 0] = -1000.0  # weight-1 edge
    prov = {n: net.connections[n].provisional.clone() for n in names}
    pruner = EpsEdgePruner(PlantedScores(scores), tau_prune=tau_prune, prune_after=1)
    pruner.on_grow_end(ctx, [event])
    values = torch.cat([scores[n][prov[n]] for n in names])
    low, high = float(values.min()), float(values.max())
    doomed = set()
    for n in names:
        c = net.connections[n]
        src = c.source_units(net.layers[c.source].size)
        tgt = c.target_units(net.layers[c.target].size)
        for r in range(c.shape[0]):
            for col in range(c.shape[1]):
                if prov[n][r, col] and (float(scores[n][r, col]) - low) / (high - low) < tau_prune:
                    doomed.add((c.source, c.target, int(src[col]), int(tgt[r])))
    before = live_edges(net)
    masked_only = copy.deepcopy(net)
    x = data.x_val
    ctx.epoch = 4
    events = pruner.on_validation_end(ctx, record={})
    assert live_edges(net) == before - doomed
    assert all(c.provisional is None for c in net.connections.values())
    assert_compact(net)
    if tau_prune > 0:
        assert events[-1].kind == "compact"
        assert events[-1].details["stored_params_after"] == net.counts()["stored_params"]
        assert events[-1].details["stored_params_before"] > events[-1].details["stored_params_after"]
        assert ("h1", "output", 0, 3) in doomed  # the lowest eps edges go
        ops.prune_edges(masked_only, [(k_n, r, c) for k_n in names
                                      for r, c in torch.nonzero(prov[k_n]).tolist()
                                      if _key(masked_only, k_n, r, c) in doomed])
        # compaction changes storage, not the function
        torch.testing.assert_close(net(x), masked_only(x), rtol=1e-6, atol=1e-7)
        assert net.counts()["params"] == masked_only.counts()["params"]
        assert net.counts()["stored_params"] < masked_only.counts()["stored_params"]
    else:
        assert doomed == set() and events == []  # nothing pruned, nothing compacted: no empty event


def _key(net, name, r, col):
    c = net.connections[name]
    return (c.source, c.target, int(c.source_units(net.layers[c.source].size)[col]),
            int(c.target_units(net.layers[c.target].size)[r]))


def test_only_the_due_layers_are_pruned():
    """Two splits pending at different epochs: each prune touches its own layer's eps edges only."""
    net = GrowableNet.mlp([5, 3], seed=2)
    data = toy_dataset(d=5, k=3)
    ctx = make_ctx(net, data, epoch=1)
    first = ops.split_edges(net, {"input_to_output": ([0], [1])}, eps=1e-8, generator=ctx.generator)
    pruner = EpsEdgePruner(EdgeStatistics("abs_grad"), tau_prune=1.0, prune_after=3)
    pruner.on_grow_end(ctx, [first])
    ctx.epoch = 2
    second = ops.split_edges(net, {"input_to_output": ([1, 2], [3, 4])}, eps=1e-8,
                             generator=ctx.generator)
    pruner.on_grow_end(ctx, [second])
    assert pruner.pending == [[4, first.details["connections"]], [5, second.details["connections"]]]
    h2_eps = {e for e in provisional_edges(net) if "h2" in e[:2]}
    ctx.epoch = 4
    pruner.on_validation_end(ctx, record={})
    assert provisional_edges(net) == h2_eps  # h1's gone (tau_prune 1 prunes all but the best)
    assert pruner.pending == [[5, second.details["connections"]]]

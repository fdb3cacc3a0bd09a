"""``EdgeSignificanceSelector`` against a brute-force selection, and its ``max_params`` trimming against
the params that ``ops.split_edges`` really adds (ALGORITHMS.md §1, "Where").

Scores are planted through a stub statistics object, so each rule can be checked on its own: min-max
normalisation over all candidate edges into the output jointly, ``> tau`` strictly, highest first, at
most ``max_new``; masked and provisional edges are never candidates (they get the highest planted
scores, so that including them would change both the selection and the normalisation).
"""

from __future__ import annotations

import copy

import pytest
import torch

from edgekit import make_ctx, toy_dataset
from selfexpand import ops
from selfexpand.graph import GrowableNet
from selfexpand.strategies.selectors.edge_significance import EdgeSignificanceSelector, split_cost


class PlantedScores:
    """Stands in for ``EdgeStatistics``: fixed scores per connection."""

    def __init__(self, scores: dict[str, torch.Tensor]):
        self.planted = scores
        self.asked: list[list[str]] = []

    def scores(self, ctx, names):
        self.asked.append(list(names))
        return {n: self.planted[n].clone() for n in names}


def grown_net(seed: int = 0, n_in: int = 6, n_out: int = 4) -> GrowableNet:
    """input -> output plus one split: masked direct edges, a new layer ``h1`` whose eps edges are
    provisional except one survivor; one eps edge pruned (masked)."""
    net = GrowableNet.mlp([n_in, n_out], seed=seed)
    ops.split_edges(net, {"input_to_output": ([0, 1, 3], [2, 2, 5])}, eps=1e-3,
                    generator=torch.Generator().manual_seed(seed))
    c = net.connections["h1_to_output"]
    survivor = torch.nonzero(c.provisional)[0]
    c.provisional[survivor[0], survivor[1]] = False
    pruned = torch.nonzero(c.provisional)[0]
    ops.prune_edges(net, {"h1_to_output": ([int(pruned[0])], [int(pruned[1])])})
    return net


def candidates(net) -> list[tuple[str, int, int]]:
    """Live, non-provisional edges into the output, by a plain loop."""
    out = []
    for name, c in net.connections.items():
        if c.target != net.output_name:
            continue
        for r in range(c.shape[0]):
            for col in range(c.shape[1]):
                live = c.mask is None or c.mask[r, col] != 0
                provisional = c.provisional is not None and bool(c.provisional[r, col])
                if live and not provisional:
                    out.append((name, r, col))
    return out


def plant(net, gen: torch.Generator, spread: bool = True) -> dict[str, torch.Tensor]:
    """Distinct random scores, on a different scale per connection (``spread``); excluded edges
    score highest."""
    scores = {}
    for i, name in enumerate(net.connection_names(target=net.output_name)):
        c = net.connections[name]
        s = torch.rand(c.shape, generator=gen) * (1 + 3 * i * spread) + 2 * i * spread
        excluded = ~c.live()
        if c.provisional is not None:
            excluded |= c.provisional
        s[excluded] = 100.0 + torch.rand(int(excluded.sum()), generator=gen)
        scores[name] = s
    return scores


def brute_selection(net, scores, tau, max_new) -> list[tuple[str, int, int]]:
    cands = candidates(net)
    values = [float(scores[n][r, c]) for n, r, c in cands]
    low, high = min(values), max(values)
    if not high > low:
        return []
    normalised = [(v - low) / (high - low) for v in values]
    chosen = [(x, e) for x, e in zip(normalised, cands) if x > tau]
    chosen.sort(key=lambda t: -t[0])
    return [e for _, e in chosen[:max_new]]


def as_list(site) -> dict[str, list[tuple[int, int]]]:
    return {n: list(zip(r.tolist(), c.tolist())) for n, (r, c) in site.edges.items()}


def selector(statistics, **settings) -> EdgeSignificanceSelector:
    """A selector scoring with ``statistics`` (planted scores) instead of its own."""
    part = EdgeSignificanceSelector(**settings)
    part.statistics = statistics
    return part


def by_connection(edges) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list] = {}
    for n, r, c in edges:
        out.setdefault(n, []).append((r, c))
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tau,max_new", [(0.0, 1000), (0.3, 1000), (0.3, 5), (0.7, 2), (0.95, 50)])
def test_selection_matches_brute_force(seed, tau, max_new):
    net = grown_net(seed)
    scores = plant(net, torch.Generator().manual_seed(100 + seed))
    stats = PlantedScores(scores)
    ctx = make_ctx(net, toy_dataset(d=6, k=4))
    sites = selector(stats, tau=tau, max_new=max_new).select(ctx)
    expected = brute_selection(net, scores, tau, max_new)
    assert stats.asked == [net.connection_names(target="output")]
    if not expected:
        assert sites == []
        return
    (site,) = sites
    assert site.layer == "output"
    # per connection in selection order (highest first); the set of all edges equal
    assert as_list(site) == by_connection(expected)
    assert site.info["n_edges"] == len(expected)
    low = min(float(scores[n][r, c]) for n, r, c in candidates(net))
    high = max(float(scores[n][r, c]) for n, r, c in candidates(net))
    mean = sum((float(scores[n][r, c]) - low) / (high - low) for n, r, c in expected) / len(expected)
    assert site.score == pytest.approx(mean, rel=1e-5)


def test_threshold_is_strict_and_normalisation_is_joint():
    net = GrowableNet.mlp([3, 2], seed=0)
    ops.split_edges(net, {"input_to_output": ([0], [1])}, eps=0.0)
    # input -> output scores 0 .. 1 (normalised: 0, 0.25, 0.5, ...), h1 -> output scores up to 2
    scores = {"input_to_output": torch.tensor([[0.0, 9.0, 0.5], [1.0, 1.5, 0.25]]),
              "h1_to_output": torch.tensor([[2.0], [7.0]])}
    net.connections["h1_to_output"].provisional[1, 0] = True  # h1 -> output 1 is eps: scores 7, excluded
    ctx = make_ctx(net, toy_dataset(d=3, k=2))
    # candidates 0, .5, 1, 1.5, .25, 2 -> normalised 0, .25, .5, .75, .125, 1
    site, = selector(PlantedScores(scores), tau=0.5, max_new=10).select(ctx)
    assert as_list(site) == {"h1_to_output": [(0, 0)], "input_to_output": [(1, 1)]}  # .5 itself is out
    site, = selector(PlantedScores(scores), tau=0.49, max_new=10).select(ctx)
    assert as_list(site) == {"h1_to_output": [(0, 0)], "input_to_output": [(1, 1), (1, 0)]}
    # equal scores: nothing stands out, nothing is selected
    flat = {n: torch.ones_like(s) for n, s in scores.items()}
    assert selector(PlantedScores(flat), tau=0.0, max_new=10).select(ctx) == []


# ---------------------------------------------------------------- budget
def params_added(net, edges: list[tuple[str, int, int]], signed: bool) -> int:
    trial = copy.deepcopy(net)
    before = trial.counts()["params"]
    ops.split_edges(trial, edges, eps=1e-8, signed=signed, generator=torch.Generator().manual_seed(0))
    return trial.counts()["params"] - before


def deeper_net(seed: int) -> GrowableNet:
    """Two splits: three connections into the output (input, h1, h2), masks, provisional edges."""
    net = GrowableNet.mlp([5, 3], seed=seed)
    ops.split_edges(net, {"input_to_output": ([0, 2], [1, 3])}, eps=1e-8)
    ops.split_edges(net, {"input_to_output": ([1], [0]), "h1_to_output": ([2], [1])}, eps=1e-8)
    return net


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_split_cost_equals_the_actual_params_increase(signed, seed):
    gen = torch.Generator().manual_seed(seed)
    net = deeper_net(seed)
    cands = candidates(net)
    order = torch.randperm(len(cands), generator=gen)[:7].tolist()
    chosen = [cands[i] for i in order]
    position = {name: i for i, name in enumerate(net.order)}
    keys = []
    for n, _, col in chosen:
        c = net.connections[n]
        keys.append(position[c.source] * 1000 + int(c.source_units(net.layers[c.source].size)[col]))
    cost = split_cost(torch.tensor(keys), net.layers["output"].size, signed)
    assert cost.shape == (len(chosen),)
    for k in range(1, len(chosen) + 1):
        assert int(cost[k - 1]) == params_added(net, chosen[:k], signed), k


@pytest.mark.parametrize("signed_data", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_budget_keeps_the_longest_prefix_that_fits(signed_data, seed):
    net = deeper_net(seed)
    scores = plant(net, torch.Generator().manual_seed(seed), spread=False)
    data = toy_dataset(d=5, k=3, signed=signed_data)
    full = brute_selection(net, scores, 0.2, 12)
    assert len(full) >= 6
    params = net.counts()["params"]
    adds = [params_added(net, full[:k], signed_data) for k in range(1, len(full) + 1)]
    assert adds == sorted(adds)
    budgets = sorted({adds[0] - 1, adds[0], adds[2], adds[2] + 1, adds[4] + 3, adds[-1], adds[-1] + 50})
    for extra in budgets:
        ctx = make_ctx(net, data, max_params=params + extra)
        sites = selector(PlantedScores(scores), tau=0.2, max_new=12).select(ctx)
        fits = max([k for k in range(1, len(full) + 1) if adds[k - 1] <= extra], default=0)
        if fits == 0:
            assert sites == []
            continue
        (site,) = sites
        assert as_list(site) == by_connection(full[:fits]), extra
        # the real split through the selected site stays within the budget
        trial = copy.deepcopy(net)
        edges = {n: (r, c) for n, (r, c) in site.edges.items()}
        ops.split_edges(trial, edges, eps=1e-8, signed=signed_data)
        assert trial.counts()["params"] <= params + extra


def test_no_budget_left_selects_nothing():
    net = deeper_net(0)
    scores = plant(net, torch.Generator().manual_seed(0))
    ctx = make_ctx(net, toy_dataset(d=5, k=3), max_params=net.counts()["params"])
    assert selector(PlantedScores(scores), tau=0.0, max_new=10).select(ctx) == []

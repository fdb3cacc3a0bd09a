"""Edge expansion past the budget (``past_budget``, a departure from ALGORITHMS.md §1): at
``max_params`` a split is paid for by pruning the least significant live edges in the same step.

On a real digits run: ``params`` never exceeds the budget and growth goes on at it (live, non-eps
edges pruned and edges split in one step). Off (the default, and ``edge-reference``): bit-identical to
a run that does not name the setting. Against a brute-force ranking on planted scores: the pruned
edges are the least significant live ones that the rule allows, and no unit is ever disconnected.
The optimizer state of pruned entries is zeroed (masked) or gone (compacted) with them.
"""

from __future__ import annotations

import pytest
import torch

from edgekit import digits, live_edges, make_ctx, provisional_edges, toy_dataset
from selfexpand import ops
from selfexpand.graph import GrowableNet
from selfexpand.presets import build_method, method_names, resolve_config
from selfexpand.strategies.base import Site
from selfexpand.strategies.initializers.edge_split import EdgeSplitInitializer
from selfexpand.strategies.selectors.edge_significance import EdgeSignificanceSelector
from selfexpand.train.callbacks import Callback
from selfexpand.train.trainer import Trainer

FAST = {"min_gap": 2, "window": 2, "plateau_threshold": 1.0, "prune_after": 1}
START = 650  # digits' linear start: 64 x 10 weights + 10 biases


class Watch(Callback):
    """Per epoch: ``params`` within the budget; the live edges a growth step removed, and whether
    any of them was not provisional (not eps-born) before the step."""

    def __init__(self, budget: int):
        self.budget = budget
        self.swaps = []  # (epoch, non-provisional live edges removed, edges split)
        self.live = self.provisional = None

    def on_train_begin(self, ctx, **kwargs):
        self.live, self.provisional = live_edges(ctx.model), provisional_edges(ctx.model)

    def on_epoch_end(self, ctx, record, **kwargs):
        assert ctx.model.counts()["params"] <= self.budget and record["params"] <= self.budget
        records = [r for r in ctx.history.growth() if r["epoch"] == ctx.epoch]
        live = live_edges(ctx.model)
        splits = [r for r in records if r["kind"] == "split_edges"]
        if splits and any(r["kind"] == "prune_edges" for r in records):
            removed = (self.live - live) - self.provisional
            self.swaps.append((ctx.epoch, removed, sum(r["details"]["edges_split"] for r in splits)))
        self.live, self.provisional = live, provisional_edges(ctx.model)


def run(budget: int | None, epochs: int = 9, **settings):
    data = digits()
    cfg = resolve_config("edge", "digits", {**FAST, **settings})
    net = GrowableNet.mlp([data.n_features, data.n_outputs], seed=0)
    watch = Watch(budget if budget is not None else 10**9)
    trainer = Trainer(build_method("edge", cfg), epochs=epochs, batch_size=cfg["batch_size"],
                      lr=cfg["lr"], seed=0, max_params=budget, callbacks=[watch])
    result = trainer.fit(net, data)
    return net, result, watch


@pytest.mark.parametrize("score", ["magnitude", "taylor"])
def test_growth_goes_on_at_the_budget_and_never_exceeds_it(score):
    budget = START + 150
    net, result, watch = run(budget, past_budget=score, swap_fraction=0.2)
    for record in result.history.growth():
        assert record["params_before"] <= budget and record["params_after"] <= budget
    # at least two growth steps each split edges and pruned live, non-eps edges to pay for them
    assert len(watch.swaps) >= 2, watch.swaps
    for epoch, removed, n_split in watch.swaps:
        assert removed and n_split >= 1
    # with the setting off the same run stops at the budget: far fewer edges ever split
    _, off, _ = run(budget)
    split_on = sum(r["details"]["edges_split"] for r in result.history.growth() if r["kind"] == "split_edges")
    split_off = sum(r["details"]["edges_split"] for r in off.history.growth() if r["kind"] == "split_edges")
    assert split_on > split_off
    assert net.counts()["params"] <= budget


def _fingerprint(net, result):
    state = {k: v.clone() for k, v in net.state_dict().items()}
    return net.spec(), state, [{k: v for k, v in r.items() if "seconds" not in k} for r in result.history.growth()]


def _same(a, b) -> bool:
    spec_a, state_a, growth_a = a
    spec_b, state_b, growth_b = b
    return (spec_a == spec_b and growth_a == growth_b and state_a.keys() == state_b.keys()
            and all(torch.equal(state_a[k], state_b[k]) for k in state_a))


def test_off_is_bit_identical_to_a_run_without_the_setting():
    budget = START + 150
    absent = _fingerprint(*run(budget)[:2])
    assert not _same(absent, _fingerprint(*run(budget, lr=0.011)[:2]))  # the comparison can fail
    assert _same(absent, _fingerprint(*run(budget, past_budget=False)[:2]))
    # on, with a budget that no split reaches: nothing is pruned to pay, the run is the same
    free = _fingerprint(*run(None)[:2])
    assert _same(free, _fingerprint(*run(None, past_budget="taylor")[:2]))


class PlantedScores:
    """Stands in for ``EdgeStatistics``: fixed scores for every connection."""

    def __init__(self, scores):
        self.planted = scores

    def scores(self, ctx, names):
        return {n: self.planted[n].clone() for n in names}


def planted_world():
    """input(6) -> output(4) with one split of three edges; the new units' eps input edges pruned, so
    each new unit has exactly one live input edge (its path edge); random distinct scores, except
    the lowest ones on those single input edges (pruning them would disconnect a unit)."""
    net = GrowableNet.mlp([6, 4], seed=0)
    ops.split_edges(net, {"input_to_output": ([0, 1, 3], [2, 2, 5])}, eps=1e-3,
                    generator=torch.Generator().manual_seed(0))
    into = net.connections["input_to_h1"]
    ops.prune_edges(net, {"input_to_h1": torch.nonzero(into.provisional, as_tuple=True)})
    for c in net.connections.values():
        c.provisional = None
    g = torch.Generator().manual_seed(1)
    scores = {n: 1 + torch.rand(c.shape, generator=g) for n, c in net.connections.items()}
    scores["input_to_h1"] = torch.full(into.shape, 1e-3)  # the single input edges: lowest of all
    return net, PlantedScores(scores)


def brute_force_pruned(net, scores, exclude, need):
    """The rule, by plain loops: live edges not excluded, lowest score first; of a unit's ``d`` live
    input edges (and of a hidden unit's ``d`` live output edges) only the ``d - 1`` lowest-ranked
    candidates may go; the first ``need`` that qualify."""
    cands = []
    in_deg, out_deg = {}, {}
    for name, c in net.connections.items():
        src = c.source_units(net.layers[c.source].size).tolist()
        tgt = c.target_units(net.layers[c.target].size).tolist()
        for r in range(c.shape[0]):
            for col in range(c.shape[1]):
                if not bool(c.live()[r, col]):
                    continue
                t, s = (c.target, tgt[r]), (c.source, src[col])
                in_deg[t] = in_deg.get(t, 0) + 1
                out_deg[s] = out_deg.get(s, 0) + 1
                if (name, r, col) not in exclude:
                    cands.append((float(scores[name][r, col]), len(cands), name, r, col, t, s))
    cands.sort()
    chosen = []
    for i, (_, _, name, r, col, t, s) in enumerate(cands):
        earlier = cands[:i]
        ok = sum(1 for e in earlier if e[5] == t) < in_deg[t] - 1
        if not net.layers[s[0]].is_input:
            ok = ok and sum(1 for e in earlier if e[6] == s) < out_deg[s] - 1
        if ok:
            chosen.append((name, r, col))
    return set(chosen[:need])


@pytest.mark.parametrize("score", ["significance", "taylor", "magnitude"])
def test_pruned_edges_are_the_least_significant_live_ones(score):
    net, planted = planted_world()
    data = toy_dataset(48, 6, 4)
    ctx = make_ctx(net, data, max_params=net.counts()["params"])  # at the budget: no room left
    sel = EdgeSignificanceSelector(tau=0.5, max_new=3, past_budget=score, swap_fraction=0.5)
    sel.statistics = planted
    (site,) = sel.select(ctx)
    chosen = {(n, int(r), int(c)) for n, (rows, cols) in site.edges.items() for r, c in zip(rows, cols)}
    assert 1 <= len(chosen) <= 3
    pruned = {(n, int(r), int(c)) for n, (rows, cols) in site.info["prune"].items() for r, c in zip(rows, cols)}
    assert site.info["n_pruned"] == len(pruned)
    magnitude = {n: c.effective_weight().detach().abs() for n, c in net.connections.items()}
    scores = {"significance": planted.planted, "magnitude": magnitude,
              "taylor": {n: magnitude[n] * planted.planted[n] for n in net.connections}}[score]
    # the split set excluded: every tau-passing candidate (here the chosen ones, max_new bounds both)
    assert pruned == brute_force_pruned(net, scores, chosen, len(pruned))
    assert not pruned & chosen
    # no single input edge of a new unit is ever pruned: every unit stays connected
    assert all(name != "input_to_h1" for name, _, _ in pruned)
    units_before = {n: layer.size for n, layer in net.layers.items()}
    before = net.counts()["params"]
    events = EdgeSplitInitializer(eps=1e-8).grow(ctx, [site])
    assert [e.kind for e in events] == ["prune_edges", "split_edges", "compact"]
    assert events[0].details["pays_for_split"] is True
    assert net.counts()["params"] <= ctx.max_params == before
    # the split's cost, all paid by pruning (no params were left)
    assert events[0].edges_removed == len(pruned) == events[1].params_after - events[1].params_before
    assert all(net.layers[n].size == size for n, size in units_before.items())  # no unit removed


def test_split_paid_exactly_and_cost_matches_split_cost():
    net, planted = planted_world()
    ctx = make_ctx(net, toy_dataset(48, 6, 4), max_params=net.counts()["params"] + 5)
    sel = EdgeSignificanceSelector(tau=0.5, max_new=3, past_budget="significance", swap_fraction=0.5)
    sel.statistics = planted
    (site,) = sel.select(ctx)
    prune, split, _ = EdgeSplitInitializer(eps=1e-8).grow(ctx, [site])
    cost = split.params_after - split.params_before  # what the split really added
    assert cost > 5 and site.info["n_pruned"] == prune.edges_removed == cost - 5
    assert net.counts()["params"] == ctx.max_params


def test_swap_fraction_bounds_the_split():
    net, planted = planted_world()
    ctx = make_ctx(net, toy_dataset(48, 6, 4), max_params=net.counts()["params"])
    sel = EdgeSignificanceSelector(tau=0.0, max_new=30, past_budget="significance", swap_fraction=0.1)
    sel.statistics = planted
    sites = sel.select(ctx)
    limit = int(0.1 * net.counts()["weights_active"])
    assert sum(s.info.get("n_pruned", 0) for s in sites) <= limit
    off = EdgeSignificanceSelector(tau=0.0, max_new=30, swap_fraction=0.1)
    off.statistics = planted
    assert off.select(ctx) == []  # off: no room, no growth (ALGORITHMS.md §1)


def test_optimizer_state_of_pruned_entries_is_zero_or_gone():
    data = toy_dataset(96, 6, 3)
    net = GrowableNet.mlp([6, 4, 3], seed=0)
    ctx = make_ctx(net, data, lr=1e-2, max_params=net.counts()["params"])
    ctx.train_epoch()  # Adam state everywhere
    sel = EdgeSignificanceSelector(tau=0.2, max_new=2, past_budget="magnitude", swap_fraction=0.3)
    (site,) = sel.select(ctx)
    pruned = site.info["prune"]
    assert site.info["n_pruned"] > 0
    # edges pruned, keyed by units so they can be found after compaction renumbers rows and cols
    gone = set()
    for name, (rows, cols) in pruned.items():
        c = net.connections[name]
        src, tgt = c.source_units(net.layers[c.source].size), c.target_units(net.layers[c.target].size)
        gone |= {(c.source, c.target, int(src[col]), int(tgt[r])) for r, col in zip(rows.tolist(), cols.tolist())}
    EdgeSplitInitializer(eps=1e-8).grow(ctx, [site])
    assert not gone & live_edges(net)
    tracked = {id(p) for group in ctx.optimizer.param_groups for p in group["params"]}
    for name, c in net.connections.items():
        assert id(c.weight) in tracked, name
        state = ctx.optimizer.state.get(c.weight, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                assert state[key].shape == c.weight.shape, (name, key)
        if c.mask is not None:
            masked = c.mask == 0
            assert bool((c.weight.detach()[masked] == 0).all()), name
            if "exp_avg" in state:
                assert bool((state["exp_avg"][masked] == 0).all()), name
    ctx.train_epoch()  # masked entries do not move
    for c in net.connections.values():
        if c.mask is not None:
            assert bool((c.weight.detach()[c.mask == 0] == 0).all())
    assert not gone & live_edges(net)


def test_edge_reference_keeps_it_off():
    for dataset in ("*", "mnist", "fashion-mnist", "digits"):
        cfg = resolve_config("edge-reference", dataset)
        assert cfg["past_budget"] is False, dataset
        assert build_method("edge-reference", cfg).selector.past_budget is False
    assert "edge-reference" in method_names()


def test_site_without_prune_grows_as_before():
    net, _ = planted_world()
    twin, _ = planted_world()
    ctx, ctx2 = make_ctx(net, toy_dataset(48, 6, 4)), make_ctx(twin, toy_dataset(48, 6, 4))
    edges = {"input_to_output": (torch.tensor([0]), torch.tensor([0]))}
    plain = EdgeSplitInitializer(eps=0.0).grow(ctx, [Site(layer="output", edges=edges)])
    empty = EdgeSplitInitializer(eps=0.0).grow(ctx2, [Site(layer="output", edges=edges, info={"prune": {}})])
    assert [e.kind for e in plain] == [e.kind for e in empty] == ["split_edges"]
    assert net.spec() == twin.spec()

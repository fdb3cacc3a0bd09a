"""``EdgeStatistics`` against a brute-force per-edge computation (ALGORITHMS.md §1, "edge significance").

The reference is a plain Python loop over the very batches the trainer (or the fallback gradient
pass) used: per batch one ``torch.autograd.grad`` call, the metric's per-edge quantity, then the mean
or the population variance across batches, in float64. The trainer's run is replicated step for step
(same generator seed, same Adam), and the replication is checked to be exact before the scores are
compared.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgekit import make_ctx, toy_dataset
from selfexpand import ops
from selfexpand.graph import GrowableNet
from selfexpand.strategies.helpers.edge_statistics import AGGREGATIONS, METRICS, EdgeStatistics
from selfexpand.strategies import GrowthMethod
from selfexpand.train.trainer import Trainer, make_optimizer

CASES = [(m, a) for m in METRICS for a in AGGREGATIONS]


def quantity(metric: str, grad: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The metric's per-edge quantity of one batch, written out independently of the library."""
    return {"abs_grad": grad.abs(), "grad": grad, "weight_sq": weight * weight,
            "abs_weight": weight.abs()}[metric]


def aggregate(per_batch: list[torch.Tensor], aggregation: str) -> torch.Tensor:
    q = torch.stack([t.double() for t in per_batch])
    return q.mean(0) if aggregation == "mean" else q.var(0, unbiased=False)


def assert_scores(got: torch.Tensor, ref: torch.Tensor) -> None:
    """Relative tolerance 1e-5; an all-zero reference must be matched exactly."""
    assert got.shape == ref.shape
    atol = 1e-6 * float(ref.abs().max())
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=atol)


# ---------------------------------------------------------------- accumulated during Trainer epochs
@pytest.mark.parametrize("lr", [1e-3, 5e-2])
@pytest.mark.parametrize("metric,aggregation", CASES)
def test_trainer_epoch_scores_equal_brute_force(metric, aggregation, lr):
    data = toy_dataset(n=90, d=5, k=3, seed=1)
    net = GrowableNet.mlp([5, 4, 3], seed=3)
    w1 = net.connections["input_to_h1"].weight.detach().clone()
    b1 = net.layers["h1"].bias.detach().clone()
    w2 = net.connections["h1_to_output"].weight.detach().clone()
    b2 = net.layers["output"].bias.detach().clone()
    stats = EdgeStatistics(metric, aggregation)
    epochs, batch, seed = 2, 16, 7
    trainer = Trainer(GrowthMethod("stats-only", extras=[stats]), epochs=epochs, batch_size=batch,
                      lr=lr, seed=seed)
    trainer.fit(net, data)

    # Brute force: the same epochs by hand; only the last epoch's batches count (reset per epoch).
    params = [p.requires_grad_() for p in (w1, b1, w2, b2)]
    opt = make_optimizer("adam", params, lr)  # the trainer's own optimizer settings
    gen = torch.Generator().manual_seed(seed)
    n = data.x_train.shape[0]
    for _ in range(epochs):
        per_batch = []
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            hidden = torch.relu(F.linear(data.x_train[idx], w1, b1))
            loss = F.cross_entropy(F.linear(hidden, w2, b2), data.y_train[idx])
            grads = torch.autograd.grad(loss, params)
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
            per_batch.append(quantity(metric, grads[2], w2.detach().clone()))
    assert len(per_batch) == -(-n // batch)
    # the replication is exact, so the scores must agree to rounding of the aggregation only
    assert torch.equal(net.connections["h1_to_output"].weight.detach(), w2.detach())
    assert torch.equal(net.connections["input_to_h1"].weight.detach(), w1.detach())

    assert EdgeStatistics.tracked(net) == ["h1_to_output"]
    ctx = trainer.ctx
    generator_state = ctx.generator.get_state()
    scores = stats.scores(ctx, ["h1_to_output"])
    assert torch.equal(ctx.generator.get_state(), generator_state)  # no fallback pass ran
    assert_scores(scores["h1_to_output"], aggregate(per_batch, aggregation))


# ---------------------------------------------------------------- the fallback gradient pass
def _grow(net, signed: bool):
    """Split three edges of ``h1 -> output`` (masks, a new layer, provisional eps edges) and give the
    eps edges weights that matter, so that their gradients are not negligible."""
    ops.split_edges(net, {"h1_to_output": ([0, 2, 2], [1, 1, 4])}, eps=1e-3, signed=signed,
                    generator=torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for c in net.connections.values():
            if c.provisional is not None:
                c.weight.add_(c.provisional * torch.randn(c.shape, generator=gen) * 0.3)
    return net


def _brute_fallback(net, data, batch, metric, aggregation, names):
    """Unshuffled batches, no update: per-batch autograd gradients of the tracked weights."""
    per = {n: [] for n in names}
    weights = [net.connections[n].weight for n in names]
    for start in range(0, data.x_train.shape[0], batch):
        xb, yb = data.x_train[start:start + batch], data.y_train[start:start + batch]
        grads = torch.autograd.grad(F.cross_entropy(net(xb), yb), weights)
        for n, g in zip(names, grads):
            c = net.connections[n]
            w = c.weight.detach() * (1 if c.mask is None else c.mask)
            per[n].append(quantity(metric, g, w))
    return {n: aggregate(v, aggregation) for n, v in per.items()}


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("metric,aggregation", CASES)
def test_fallback_pass_after_structural_change_equals_brute_force(metric, aggregation, signed):
    data = toy_dataset(n=70, d=6, k=3, seed=4, signed=signed)
    net = GrowableNet.mlp([6, 5, 3], seed=11)
    stats = EdgeStatistics(metric, aggregation)
    # accumulate during one epoch first: these sums become stale with the split below
    Trainer(GrowthMethod("stats-only", extras=[stats]), epochs=1, batch_size=16, seed=0).fit(net, data)
    grown = _grow(net, signed)  # same weight object for h1 -> output, new connections
    ctx = make_ctx(grown, data, batch_size=16, seed=9)
    names = EdgeStatistics.tracked(grown)
    assert names == ["h1_to_output", "h1_to_h2", "h2_to_output"]
    before = {k: v.clone() for k, v in grown.state_dict().items()}
    generator_state = ctx.generator.get_state()

    scores = stats.scores(ctx, names)
    reference = _brute_fallback(grown, data, 16, metric, aggregation, names)
    for n in names:
        assert_scores(scores[n], reference[n])
    # masked (split) edges score as dead edges: zero gradient / zero effective weight
    masked = grown.connections["h1_to_output"].mask == 0
    assert bool(masked.any())
    assert bool((scores["h1_to_output"][masked] == 0).all())
    # the pass updated nothing, consumed no shuffling randomness and left no gradients
    assert all(torch.equal(v, grown.state_dict()[k]) for k, v in before.items())
    assert torch.equal(ctx.generator.get_state(), generator_state)
    assert all(p.grad is None for p in grown.parameters())


def test_weight_variance_of_unchanged_weights_is_exactly_zero():
    """With the weights fixed (fallback pass) the spread of ``|w|`` and ``w^2`` across batches is 0;
    rounding noise there would be min-max normalised into an arbitrary selection."""
    data = toy_dataset(n=64, d=6, k=3, seed=0)
    net = _grow(GrowableNet.mlp([6, 5, 3], seed=11), False)
    ctx = make_ctx(net, data, batch_size=8)
    for metric in ("abs_weight", "weight_sq"):
        scores = EdgeStatistics(metric, "variance").scores(ctx, EdgeStatistics.tracked(net))
        assert all(bool((s == 0).all()) for s in scores.values())


def test_scores_use_only_the_current_epochs_batches_and_count_them():
    """A constant per-batch quantity planted through ``on_batch_end``: mean = value, variance = 0,
    and a new epoch starts from zero."""
    data = toy_dataset(n=32, d=4, k=2, seed=0)
    net = GrowableNet.mlp([4, 2], seed=0)
    ctx = make_ctx(net, data)
    stats = EdgeStatistics("grad", "variance")
    weight = net.connections["input_to_output"].weight
    stats.on_epoch_begin(ctx)
    values = [torch.full(weight.shape, v) for v in (1.0, 2.0, 6.0)]
    for v in values:
        weight.grad = v.clone()
        stats.on_batch_end(ctx)
    var = stats.scores(ctx, ["input_to_output"])["input_to_output"]
    torch.testing.assert_close(var, torch.full(weight.shape, 14 / 3))  # var of {1, 2, 6}
    stats.on_epoch_begin(ctx)
    weight.grad = torch.full(weight.shape, 5.0)
    stats.on_batch_end(ctx)
    assert bool((stats.scores(ctx, ["input_to_output"])["input_to_output"] == 0).all())
    mean_stats = EdgeStatistics("abs_grad", "mean")
    mean_stats.on_epoch_begin(ctx)
    for v in values:
        weight.grad = -v
        mean_stats.on_batch_end(ctx)
    torch.testing.assert_close(mean_stats.scores(ctx, ["input_to_output"])["input_to_output"],
                               torch.full(weight.shape, 3.0))

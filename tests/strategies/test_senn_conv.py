"""SENN on conv layers (issue #24): the K-FAC quantities and width scores of ``senn.conv_scores`` equal the
ones formed explicitly from patches taken with loops; normalisation per (example, position) pair:
``A = E_p[a a^T]``, ``G = E_p[d_hat d_hat^T]``, ``grad_W = E_n[sum_t d a^T]``, ``eta = Tr[grad_W (L A)^-1
grad_W^T G^-1]``; a candidate channel's score is ``eta`` with its patches appended minus ``eta``."""

from __future__ import annotations

import copy
import math
import random

import pytest
import torch
import torch.nn.functional as F
from edgekit import digits, make_ctx

from selfexpand.data.base import Dataset
from selfexpand.errors import GrowthError
from selfexpand.graph import GrowableNet
from selfexpand.ops import add_channels
from selfexpand.strategies.base import Site
from selfexpand.strategies.initializers.natural_expansion import (
    NaturalExpansionInitializer,
)
from selfexpand.strategies.selectors.natural_expansion import NaturalExpansionSelector
from selfexpand.strategies.senn.chain_sample import chain_sample
from selfexpand.strategies.senn.conv_scores import (
    candidate_maps,
    channel_features,
    conv_expansion_scores,
    conv_factors,
    conv_natural_score,
    patch_rows,
    position_rows,
)
from selfexpand.strategies.senn.natural_scores import damp, layer_stats

D = torch.float64


def _explicit_patches(x, k, s, p):
    """{(n, i, j): patch with the 1}, by loops over the padded input."""
    n_, c_, h_, w_ = x.shape
    xp = torch.zeros(n_, c_, h_ + 2 * p, w_ + 2 * p, dtype=D)
    xp[:, :, p:p + h_, p:p + w_] = x
    ho, wo = (h_ + 2 * p - k) // s + 1, (w_ + 2 * p - k) // s + 1
    out = []
    for n in range(n_):
        for i in range(ho):
            for j in range(wo):
                vec = [xp[n, c, i * s + u, j * s + v] for c in range(c_) for u in range(k) for v in range(k)]
                out.append((n, i, j, torch.stack(vec + [torch.ones((), dtype=D)])))
    return out, ho * wo


def _explicit(x, d, k, s, p, damping=None):
    """A, G, grad, eta from loops (G normalised per pair; damped when ``damping``)."""
    patches, positions = _explicit_patches(x, k, s, p)
    n_a, n_out, N = patches[0][3].numel(), d.shape[1], x.shape[0]
    A, G, grad = torch.zeros(n_a, n_a, dtype=D), torch.zeros(n_out, n_out, dtype=D), torch.zeros(n_out, n_a, dtype=D)
    for n, i, j, a in patches:
        dv = d[n, :, i, j]
        A += torch.outer(a, a)
        norm = dv.norm()
        dh = dv / norm if norm > 0 else dv
        G += torch.outer(dh, dh)
        grad += torch.outer(dv, a)
    A, G, grad = A / len(patches), G / len(patches), grad / N
    Gs = G if damping is None else G + damping * G.diagonal().mean() * torch.eye(n_out, dtype=D)
    eta = torch.trace(grad @ torch.linalg.inv(positions * A) @ grad.T @ torch.linalg.inv(Gs))
    return A, G, grad, eta, positions


def _case(rng):
    k, s = rng.randint(1, 3), rng.randint(1, 2)
    p = rng.randint(0, k - 1) if k > 1 else rng.randint(0, 1)
    c_in, c_out = rng.randint(1, 3), rng.randint(1, 3)
    h = rng.randint(max(k, 3), 6)
    positions = ((h + 2 * p - k) // s + 1) ** 2
    n = math.ceil(3 * ((c_in + 1) * k * k + 2) / positions) + 2
    return k, s, p, c_in, c_out, h, n


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


CASES = list(range(60))


@pytest.mark.parametrize("case", CASES)
def test_conv_factors_score_and_channel_score_equal_the_explicit_ones(case):
    rng = random.Random(case)
    k, s, p, c_in, c_out, h, n = _case(rng)
    g = torch.Generator().manual_seed(case)
    x = torch.randn(n, c_in, h, h, generator=g, dtype=D)
    ho = (h + 2 * p - k) // s + 1
    d = torch.randn(n, c_out, ho, ho, generator=g, dtype=D)
    d[0, :, 0, 0] = 0  # a zero pair stays zero in G
    a_rows, d_rows = patch_rows(x, k, s, p), position_rows(d)
    A, G, grad = conv_factors(a_rows, d_rows, ho * ho)
    A0, G0, grad0, eta0, positions = _explicit(x, d, k, s, p)
    assert positions == ho * ho
    for got, want in ((A, A0), (G, G0), (grad, grad0)):
        assert _rel(got, want) <= 1e-10
    assert _rel(conv_natural_score(grad, A, G, positions), eta0) <= 1e-6
    # the gradient is the gradient of the mean loss sum_n <conv(x_n, W) + b, d_n> / N
    w = torch.zeros(c_out, c_in, k, k, dtype=D, requires_grad=True)
    b = torch.zeros(c_out, dtype=D, requires_grad=True)
    (F.conv2d(x, w, b, s, p) * d).sum().div(n).backward()
    assert _rel(grad[:, :-1], w.grad.reshape(c_out, -1)) <= 1e-10 and _rel(grad[:, -1], b.grad) <= 1e-10

    # a candidate channel of the layer the connection reads: its map's patches join a
    cand = torch.randn(n, 1, h, h, generator=g, dtype=D)
    Gd = damp(G, 0.1)
    stats = layer_stats(a_rows, d_rows, Gd)
    conn = type("Conn", (), {"kernel_size": (k, k), "stride": s, "padding": p})()
    f = channel_features(cand.reshape(1, n, h, h), conn)
    exact, bound = conv_expansion_scores(stats, f, positions)
    x_new = torch.cat([x[:, :, :, :], cand], 1)
    _, _, _, eta_with, _ = _explicit(x_new, d, k, s, p, damping=0.1)
    _, _, _, eta_without, _ = _explicit(x, d, k, s, p, damping=0.1)
    # the new channel's columns come after the old channels' (unfold order), before the 1: the same matrix
    # permuted, so the score is the same
    want = eta_with - eta_without
    assert abs(float(exact[0]) - float(want)) <= 1e-4 * abs(float(want)) + 1e-12
    assert float(bound[0]) <= float(exact[0]) * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize("case", range(6))
def test_a_candidate_across_the_flatten_boundary_is_the_dense_score(case):
    g = torch.Generator().manual_seed(100 + case)
    n, c, h, n_out = 40, 2, 3, 3
    maps = torch.randn(n, c, h, h, generator=g, dtype=D)
    d = torch.randn(n, n_out, generator=g, dtype=D)
    a = torch.cat([maps.flatten(1), torch.ones(n, 1, dtype=D)], 1)
    G = damp(d.T @ d / n, 0.1)  # any PSD G
    cand = torch.randn(1, n, h, h, generator=g, dtype=D)
    exact, _ = conv_expansion_scores(layer_stats(a, d, G), channel_features(cand), 1)
    a2 = torch.cat([maps.flatten(1), cand[0].flatten(1), torch.ones(n, 1, dtype=D)], 1)

    def eta(a):
        grad = d.T @ a / n
        return torch.trace(grad @ torch.linalg.inv(a.T @ a / n) @ grad.T @ torch.linalg.inv(G))

    assert _rel(exact[0], eta(a2) - eta(a)) <= 1e-6


@pytest.mark.parametrize("batch_norm,pool", [(True, "max"), (False, "avg"), (False, None)])
def test_candidate_maps_are_the_channel_add_channels_makes(batch_norm, pool):
    net = GrowableNet.cnn((1, 8, 8), [3, 4], [], 3, seed=0, batch_norm=batch_norm, pool=pool)
    net.eval()
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    conn = net.incoming("h2")[0]
    with torch.no_grad():
        h1 = net.layer_outputs(x)["h1"]
    patches = F.unfold(h1, conn.kernel_size, padding=conn.padding, stride=conn.stride)
    w = torch.randn(2, 3 * 9, generator=torch.Generator().manual_seed(2))
    b = torch.randn(2, generator=torch.Generator().manual_seed(3))
    pre_hw = (h1.shape[2], h1.shape[3])  # 3x3, stride 1, padding 1
    maps = candidate_maps(net.layers["h2"], patches, w, b, pre_hw)
    add_channels(net, "h2", 2, incoming={net.connection_names(target="h2")[0]: w.reshape(2, 3, 3, 3)}, bias=b)
    with torch.no_grad():
        out = net.layer_outputs(x)["h2"][:, 4:]
    assert torch.allclose(maps.transpose(0, 1), out, atol=1e-5)


def test_the_conv_chain_sample_gives_pair_rows_and_the_loss_gradient():
    net = GrowableNet.cnn((1, 8, 8), [2, 3], [4], 3, seed=0)
    net.double()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 8, 8, generator=g, dtype=D)
    y = torch.randint(0, 3, (6,), generator=g)
    sample = chain_sample(net, x, y, F.cross_entropy)
    assert sample.positions == {"h1": 64, "h2": 16, "h3": 1, "output": 1}
    assert sample.maps["h1"].shape == (6, 2, 4, 4) and sample.outputs["h2"].shape == (6, 3 * 2 * 2)
    net.eval()
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    for name in ("h1", "h2"):
        conn = net.incoming(name)[0]
        grad = sample.grads[name].T @ sample.inputs[name] / 6
        assert _rel(grad[:, :-1], conn.weight.grad.reshape(conn.shape[0], -1)) <= 1e-10
        assert _rel(grad[:, -1], net.layers[name].bias.grad) <= 1e-10


# ---------------------------------------------------------------------- growth (selector + initializer)

FAST = {"tau": 0.0, "alpha": 0.0, "proposals": 8, "search": "ascent", "ascent_steps": 5, "sample_size": 48,
        "prior_scale": "fan_in"}


def _images(n=160):
    """sklearn's digits viewed as 1x8x8 images (the first ``n`` training, 40 validation and test)."""
    data = digits()
    xs = [t.reshape(-1, 1, 8, 8) for t in (data.x_train[:n], data.x_val[:40], data.x_test[:40])]
    return Dataset("digits-img", "classification", xs[0], data.y_train[:n], xs[1], data.y_val[:40], xs[2],
                   data.y_test[:40], (1, 8, 8), data.n_outputs, {"input_shape": [1, 8, 8]})


@pytest.mark.parametrize("hidden,batch_norm,pool,search_size", [
    ((), True, "max", 0), ((5,), False, "avg", 0), ((5,), True, None, 16)])
def test_conv_width_growth_adds_channels_and_keeps_the_function(hidden, batch_norm, pool, search_size):
    data = _images()
    net = GrowableNet.cnn((1, 8, 8), [2, 3], list(hidden), data.n_outputs, seed=0, activation="tanh",
                          batch_norm=batch_norm, pool=pool)
    ctx = make_ctx(net, data, seed=0)
    x = data.x_train[:64]
    net.eval()
    before_eval = net(x).detach()
    before_train = copy.deepcopy(net).train()(x).detach()  # a copy: training mode moves the running statistics
    selector = NaturalExpansionSelector(capacity=[5, 6, 8], search_size=search_size, **FAST)
    sites = selector.select(ctx)
    grown = {s.layer: s for s in sites if s.layer in ("h1", "h2")}
    assert grown, sites
    sizes = {name: net.layers[name].size for name in ("h1", "h2")}
    events = NaturalExpansionInitializer().grow(ctx, sites)
    assert len(events) == len(sites)
    for name, site in grown.items():
        assert net.layers[name].size == sizes[name] + site.n_units <= [5, 6][name == "h2"] - 1
        conn = net.incoming(name)[0]
        w, c_in = conn.weight[-site.n_units:].detach(), site.proposal["weight"].shape[1]
        assert torch.equal(w[:, :c_in], site.proposal["weight"]) and not w[:, c_in:].any()  # h1's new: 0
        assert site.info["scores"][0] > 0
    net.eval()
    assert torch.allclose(net(x), before_eval, atol=1e-5)
    net.train()
    assert torch.allclose(net(x), before_train, atol=1e-5)  # zero outgoing kernels: training mode too
    # the optimizer carries over: a step trains the new channels' (zero) outgoing kernels
    net.train()
    ctx.optimizer.zero_grad()
    ctx.loss_fn(net(x), data.y_train[:64]).backward()
    assert all(any(p is q for g in ctx.optimizer.param_groups for q in g["params"]) for p in net.parameters())
    name = next(iter(grown))
    out = net.outgoing(name)[0].weight
    assert not out.detach()[:, -1].any()  # the last column (kernel) belongs to a new channel
    ctx.optimizer.step()
    assert out.detach()[:, -1].any()


def test_the_conv_width_score_is_the_increase_of_the_conv_eta():
    """The selector's delta for the chosen channel is eta(with the channel) - eta(without) of the reader,
    both from the chain sample after growth (outgoing kernels zero: the sample's d is unchanged)."""
    data = _images()
    net = GrowableNet.cnn((1, 8, 8), [2, 3], [], data.n_outputs, seed=1, activation="tanh", batch_norm=False,
                          pool="avg")
    ctx = make_ctx(net, data, seed=1)
    selector = NaturalExpansionSelector(capacity=[4, 2], choice="best", width=True, depth=False,
                                        **{**FAST, "sample_size": 10_000})
    sites = selector.select(ctx)
    (site,) = [s for s in sites if s.layer == "h1"]
    assert site.n_units == 1
    sample = chain_sample(net, data.x_train, data.y_train, ctx.loss_fn)
    eta_before = selector._stats(sample.inputs["h2"], sample.grads["h2"], sample.positions["h2"])
    NaturalExpansionInitializer().grow(ctx, [site])
    sample = chain_sample(net, data.x_train, data.y_train, ctx.loss_fn)
    a, d, positions = sample.inputs["h2"], sample.grads["h2"], sample.positions["h2"]
    G = damp(conv_factors(a, d, positions)[1], 0.1)
    _, _, grad = conv_factors(a, d, positions)
    with_channel = conv_natural_score(grad, a.T @ a / a.shape[0], G, positions)
    n_old = a.shape[1] - 1 - 9  # the new channel's 3x3 patch columns come last before the 1
    keep = list(range(n_old)) + [a.shape[1] - 1]
    without = conv_natural_score(grad[:, keep], (a.T @ a / a.shape[0])[keep][:, keep], G, positions)
    assert eta_before[0].n == a.shape[0]
    assert abs(site.info["scores"][0] - float(with_channel - without)) <= 1e-3 * float(with_channel - without)


def test_depth_is_not_tried_on_conv_layers():
    data = _images()
    net = GrowableNet.cnn((1, 8, 8), [2], [], data.n_outputs, seed=0, activation="tanh")
    ctx = make_ctx(net, data, seed=0)
    assert NaturalExpansionSelector(capacity=[8, 8], width=False, **FAST).select(ctx) == []
    conn = net.connection_names(target="h1")[0]
    site = Site(layer=conn, n_units=1, score=1.0, proposal={"weight": torch.ones(1, 1), "bias": torch.zeros(1)},
                info={"kind": "depth"})
    with pytest.raises(GrowthError, match="conv"):
        NaturalExpansionInitializer().grow(ctx, [site])

"""GradMax on conv layers (``strategies.initializers.gradmax_conv``): ``M`` and the new outgoing kernels
against a brute force built by hand from ``F.unfold`` of the layer input and the next layer's
output gradient (explicit loops over kernel offsets and positions), over random small geometries
(kernels 1-3, strides 1-2, paddings, pooling max / avg / none, batch norm on / off, a conv or a dense
reader); the function is preserved; the new incoming kernels' gradient is ``M^T V`` and beats random
outgoing directions; determinism; the flatten boundary on the dense side."""

from __future__ import annotations

import copy
import random

import pytest
import torch
import torch.nn.functional as F

from edgekit import make_ctx
from selfexpand.data import Dataset
from selfexpand.errors import GrowthError
from selfexpand.graph import GrowableNet
from selfexpand.graph.conv import ConvLayer, spatial_sizes
from selfexpand.graph.parts import Layer
from selfexpand.strategies.base import Site
from selfexpand.strategies.initializers.gradmax import GradMaxInitializer, gradient_cross_moment

N_EXAMPLES, N_CLASSES = 12, 3


def _draw(rng: random.Random, g: torch.Generator, shape):
    return torch.randn(shape, generator=g, dtype=torch.float64) * 0.5


def world(seed: int, *, reader=None, pool="draw", bn=None, act=None, first=None):
    """A random small graph ``input -> [h0] -> L -> reader`` (float64) and its context.

    ``reader``: ``"conv"`` (conv layer then dense output), ``"output"`` (L flattened straight into the
    output) or ``"hidden"`` (L flattened into a dense hidden layer). Returns ``(net, ctx, spec)``.
    """
    rng, g = random.Random(seed), torch.Generator().manual_seed(seed)
    reader = reader or rng.choice(["conv", "conv", "output", "hidden"])
    pool = rng.choice([None, "max", "avg"]) if pool == "draw" else pool
    bn = rng.random() < 0.5 if bn is None else bn
    act = act or rng.choice(["relu", "tanh"])
    first = rng.random() < 0.4 if first is None else first
    c_in, size = rng.randint(1, 3), rng.randint(6, 9)
    k1, s1 = rng.randint(1, 3), rng.randint(1, 2)
    p1 = rng.randint(0, k1 // 2 + (1 if k1 > 1 else 0))
    k2, s2 = rng.randint(1, 3), rng.randint(1, 2)
    p2 = rng.randint(0, k2 // 2 + (1 if k2 > 1 else 0))
    net = GrowableNet(c_in, N_CLASSES, input_shape=(c_in, size, size))
    source = net.input_name
    if first:
        net.add_layer("h0", ConvLayer(2, act), before="output")
        net.add_connection(source, "h0", _draw(rng, g, (2, c_in, 3, 3)), padding=1)
        source = "h0"
    n_src = net.layers[source].size
    net.add_layer("L", ConvLayer(3, act, batch_norm=bn, pool=pool), before="output")
    net.add_connection(source, "L", _draw(rng, g, (3, n_src, k1, k1)), stride=s1, padding=p1)
    l_hw = spatial_sizes(net)["L"][1]
    l_pos = l_hw[0] * l_hw[1]
    if reader == "conv":
        p2 = max(p2, (k2 - l_hw[0] + 1) // 2)  # L's maps may be 1x1 after pooling
        net.add_layer("N", ConvLayer(4, act, batch_norm=rng.random() < 0.5), before="output")
        net.add_connection("L", "N", _draw(rng, g, (4, 3, k2, k2)), stride=s2, padding=p2)
        hw = spatial_sizes(net, strict=True)["N"][1]
        net.add_connection("N", "output", _draw(rng, g, (N_CLASSES, 4 * hw[0] * hw[1])))
    elif reader == "hidden":
        net.add_layer("D", Layer(5, act), before="output")
        net.add_connection("L", "D", _draw(rng, g, (5, 3 * l_pos)))
        net.add_connection("D", "output", _draw(rng, g, (N_CLASSES, 5)))
    else:
        net.add_connection("L", "output", _draw(rng, g, (N_CLASSES, 3 * l_pos)))
    spatial_sizes(net, strict=True)
    net = net.double()
    with torch.no_grad():
        for layer in net.layers.values():
            if layer.bias is not None:
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=g, dtype=torch.float64) * 0.1)
            if getattr(layer, "norm", None) is not None:
                n = layer.size
                layer.norm.weight.copy_(1 + 0.2 * torch.randn(n, generator=g, dtype=torch.float64))
                layer.norm.bias.copy_(0.2 * torch.randn(n, generator=g, dtype=torch.float64))
                layer.norm.running_mean.copy_(0.3 * torch.randn(n, generator=g, dtype=torch.float64))
                layer.norm.running_var.copy_(0.5 + torch.rand(n, generator=g, dtype=torch.float64))
    x = torch.randn(N_EXAMPLES, c_in, size, size, generator=g, dtype=torch.float64)
    y = torch.randint(0, N_CLASSES, (N_EXAMPLES,), generator=g)
    data = Dataset("img", "classification", x, y, x, y, x, y, (c_in, size, size), N_CLASSES, {})
    spec = {"reader": reader, "pool": pool, "bn": bn, "act": act, "source": source,
            "k1": k1, "s1": s1, "p1": p1, "k2": k2, "s2": s2, "p2": p2}
    return net, make_ctx(net, data, seed=seed, batch_size=4), spec


def hand_moment(net, x, y, spec) -> torch.Tensor:
    """``M[(o, u', v') or (o, p), (c, u, v)]`` by hand, on a copy in training mode (the gradient pass's)."""
    ref = copy.deepcopy(net).train()
    acts = ref.layer_outputs(x)
    a, h_l = acts[spec["source"]].detach(), acts["L"].detach()
    layer = ref.layers["L"]
    # the next layer's pre-activation as a leaf, and the rest of the forward written out
    if spec["reader"] == "conv":
        c = ref.connections[ref.connection_names(source="L")[0]]
        pre = F.conv2d(h_l, c.weight, ref.layers["N"].bias, spec["s2"], spec["p2"]).requires_grad_()
        h_n = ref.layers["N"].finish(pre)
        out_conn = ref.connections[ref.connection_names(source="N")[0]]
        logits = F.linear(h_n.flatten(1), out_conn.weight, ref.layers["output"].bias)
    else:
        target = "D" if spec["reader"] == "hidden" else "output"
        c = ref.connections[ref.connection_names(source="L")[0]]
        pre = F.linear(h_l.flatten(1), c.weight, ref.layers[target].bias).requires_grad_()
        logits = pre
        if target == "D":
            out_conn = ref.connections[ref.connection_names(source="D")[0]]
            logits = F.linear(ref.layers["D"].activation(pre), out_conn.weight, ref.layers["output"].bias)
    assert torch.allclose(logits, copy.deepcopy(net).train()(x), atol=1e-12)  # the hand forward is the net's
    g = torch.autograd.grad(F.cross_entropy(logits, y), pre)[0].detach()  # mean loss: 1/N per example

    k1, s1, p1 = spec["k1"], spec["s1"], spec["p1"]
    patches = F.unfold(a, k1, padding=p1, stride=s1)  # (N, C k1 k1, L1), rows (c, u, v)
    h1 = (a.shape[2] + 2 * p1 - k1) // s1 + 1
    w1 = (a.shape[3] + 2 * p1 - k1) // s1 + 1
    tx = patches.view(a.shape[0], -1, h1, w1)
    if spec["bn"]:  # training-mode batch norm at a constant channel: centring over examples and positions
        tx = tx - tx.mean(dim=(0, 2, 3), keepdim=True)
    if spec["pool"] is not None:  # max and avg both taken as the window mean
        ps = layer.pool_size
        hp, wp = h1 // ps, w1 // ps
        tx = tx[:, :, :hp * ps, :wp * ps].reshape(a.shape[0], -1, hp, ps, wp, ps).mean(dim=(3, 5))
    n, d = tx.shape[:2]
    if spec["reader"] != "conv":  # flatten boundary: a channel's "patch" is its positions
        m = torch.einsum("no,ndp->opd", g, tx.reshape(n, d, -1))
        return m.reshape(-1, d)
    k2, s2, p2 = spec["k2"], spec["s2"], spec["p2"]
    n_out, h2, w2 = g.shape[1:]
    m = torch.zeros(n_out, k2, k2, d, dtype=torch.float64)
    for u in range(k2):
        for v in range(k2):
            for i in range(h2):
                for j in range(w2):
                    pi, pj = i * s2 + u - p2, j * s2 + v - p2
                    if 0 <= pi < tx.shape[2] and 0 <= pj < tx.shape[3]:
                        m[:, u, v] += torch.einsum("no,nd->od", g[:, :, i, j], tx[:, :, pi, pj])
    return m.reshape(-1, d)


def new_outgoing(net, k: int) -> torch.Tensor:
    """The ``k`` newest channels' outgoing kernels (or position columns) as ``(rows of M, k)``."""
    c = net.connections[net.connection_names(source="L")[0]]
    w = c.weight.detach()
    if w.dim() == 4:
        return w[:, -k:].transpose(0, 1).reshape(k, -1).T
    n_ch = net.layers["L"].size
    return w.view(w.shape[0], n_ch, -1)[:, -k:].permute(1, 0, 2).reshape(k, -1).T


@pytest.mark.parametrize("block", range(6))
def test_kernels_are_the_top_singular_vectors_of_the_hand_built_moment(block):
    compared = 0
    for seed in range(block * 10, block * 10 + 10):  # 60 random geometries in all
        net, ctx, spec = world(seed)
        x, y = ctx.data.x_train, ctx.data.y_train
        expected = hand_moment(net, x, y, spec)
        m = gradient_cross_moment(ctx, "L")
        assert m.shape == expected.shape, spec
        assert float((m - expected).norm()) <= 1e-10 * max(float(expected.norm()), 1e-30), spec
        k = 2
        GradMaxInitializer(epsilon=0.0).grow(ctx, [Site("L", k)])
        new = new_outgoing(net, k)
        u, s, _ = torch.linalg.svd(expected, full_matrices=False)
        for j in range(min(k, s.numel())):
            nxt = s[j + 1] if j + 1 < s.numel() else torch.tensor(0.0)
            gap = min(float(s[j] - nxt), float(s[j - 1] - s[j]) if j else float("inf"))
            if gap <= 1e-6 * float(s[0]):
                continue  # a (near) repeated singular value: the vector is not determined
            vec = new[:, j] / new[:, j].norm()
            err = min(float((vec - u[:, j]).norm()), float((vec + u[:, j]).norm()))
            assert err <= 1e-4, (spec, j, err)
            compared += 1
    assert compared >= 10


def test_scale_sign_and_rank_bound():
    net, ctx, _ = world(3, reader="conv")
    c = net.connections[net.connection_names(source="L")[0]]
    scale = c.weight.detach().transpose(0, 1).flatten(1).norm(dim=1).mean()
    rows = c.shape[0] * c.shape[2] * c.shape[3]
    cols = net.connections[net.connection_names(target="L")[0]].weight[0].numel()
    k = min(rows, cols) + 2
    GradMaxInitializer(epsilon=0.0).grow(ctx, [Site("L", k)])
    new = new_outgoing(net, k)
    live = min(rows, cols)
    assert torch.allclose(new[:, :live].norm(dim=0), scale.expand(live), rtol=1e-10)
    assert torch.equal(new[:, live:], torch.zeros(rows, k - live, dtype=torch.float64))
    top = new[:, :live].gather(0, new[:, :live].abs().argmax(0, keepdim=True))
    assert bool((top > 0).all())
    cin = net.connections[net.connection_names(target="L")[0]]
    assert torch.equal(cin.weight.detach()[-k:], torch.zeros(k, *cin.shape[1:], dtype=torch.float64))


@pytest.mark.parametrize("seed", range(20))
def test_function_preserved_at_epsilon_zero(seed):
    net, ctx, spec = world(100 + seed)
    x = ctx.data.x_train
    net.eval()
    before = net(x).detach()
    train_before = copy.deepcopy(net).train()(x).detach()
    GradMaxInitializer(epsilon=0.0).grow(ctx, [Site("L", 2)])
    net.eval()
    assert torch.allclose(net(x), before, atol=1e-6, rtol=0), spec
    assert torch.allclose(copy.deepcopy(net).train()(x), train_before, atol=1e-6, rtol=0), spec


def test_small_epsilon_changes_the_function_by_order_epsilon():
    changes = []
    for eps in (1e-2, 1e-3):
        net, ctx, _ = world(7, reader="conv", bn=False, act="tanh", pool="avg")
        x = ctx.data.x_train
        before = net(x).detach()
        GradMaxInitializer(epsilon=eps).grow(ctx, [Site("L", 2)])
        kernels = net.connections[net.connection_names(target="L")[0]].weight.detach()[-2:]
        assert torch.allclose(kernels.flatten(1).norm(dim=1), torch.full((2,), eps, dtype=torch.float64))
        changes.append(float((net(x).detach() - before).abs().max()))
    assert 0 < changes[1] < changes[0] / 5


@pytest.mark.parametrize("seed", range(6))
def test_behind_batch_norm_the_change_is_order_epsilon_in_both_modes(seed):
    """The new channels' batch-norm weight starts at epsilon: training-mode batch norm, which scales
    the epsilon-sized pre-activation to unit variance, changes the output by O(epsilon), not by the
    outgoing kernels' size."""
    changes = {"train": [], "eval": []}
    for eps in (1e-2, 1e-3):
        net, ctx, spec = world(40 + seed, bn=True, act="relu")
        x = ctx.data.x_train
        before = {mode: getattr(copy.deepcopy(net), mode)()(x).detach() for mode in changes}
        GradMaxInitializer(epsilon=eps).grow(ctx, [Site("L", 2)])
        assert torch.equal(net.layers["L"].norm.weight.detach()[-2:], torch.full((2,), eps, dtype=torch.float64))
        for mode in changes:
            after = getattr(copy.deepcopy(net), mode)()(x).detach()
            changes[mode].append(float((after - before[mode]).abs().max()))
    assert changes["train"][0] < 0.1 and changes["train"][1] < changes["train"][0] / 5, (changes, spec)
    assert changes["eval"][1] <= changes["eval"][0] / 5 + 1e-12, (changes, spec)


@pytest.mark.parametrize("seed", range(4))
def test_behind_batch_norm_and_relu_new_channels_train_only_with_epsilon_above_zero(seed):
    """At epsilon 0 the new channel's map is a constant that batch norm sends to 0, where relu'(0) = 0:
    no gradient reaches its kernel, bias or batch norm, and it stays dead; at epsilon 1e-3 all three
    get a gradient."""
    for eps, alive in ((0.0, False), (1e-3, True)):
        net, ctx, spec = world(60 + seed, bn=True, act="relu", pool=None)
        GradMaxInitializer(epsilon=eps).grow(ctx, [Site("L", 2)])
        ref = copy.deepcopy(net).train()
        layer, conn = ref.layers["L"], ref.connections[ref.connection_names(target="L")[0]]
        params = (conn.weight, layer.bias, layer.norm.weight, layer.norm.bias)
        grads = torch.autograd.grad(F.cross_entropy(ref(ctx.data.x_train), ctx.data.y_train), params)
        moved = [bool(g[-2:].abs().sum() > 0) for g in grads]
        assert moved == [alive] * 4, (eps, moved, spec)


def _incoming_gradient(net, x, y) -> torch.Tensor:
    """The mean loss's gradient on the newest channel's incoming kernel (training mode, on a copy)."""
    ref = copy.deepcopy(net).train()
    c = ref.connections[ref.connection_names(target="L")[0]]
    grad = torch.autograd.grad(F.cross_entropy(ref(x), y), c.weight)[0]
    return grad[-1].flatten()


@pytest.mark.parametrize("seed", range(8))
def test_incoming_gradient_is_m_transpose_v_and_beats_random_directions(seed):
    """With a slope-1 activation at 0 (tanh) and linear pooling (avg / none), autograd's first-step
    gradient on the new (zero) incoming kernel is exactly ``c M^T V`` (``c = 1 / sqrt(bn eps)`` with
    batch norm: its training-mode derivative at a constant channel), and its norm is at least that of
    random outgoing directions of the same norm."""
    rng = random.Random(seed)
    bn = seed % 2 == 1
    net, ctx, spec = world(200 + seed, act="tanh", pool=rng.choice([None, "avg"]), bn=bn)
    x, y = ctx.data.x_train, ctx.data.y_train
    m = hand_moment(net, x, y, spec)
    GradMaxInitializer(epsilon=0.0).grow(ctx, [Site("L", 1)])
    v = new_outgoing(net, 1)[:, 0]
    factor = 1 / (net.layers["L"].norm.eps ** 0.5) if bn else 1.0
    grad = _incoming_gradient(net, x, y)
    assert torch.allclose(grad, factor * (m.T @ v), rtol=1e-7, atol=1e-12 * factor), spec
    best = float(grad.norm())
    c = net.connections[net.connection_names(source="L")[0]]
    g = torch.Generator().manual_seed(seed)
    for _ in range(10):
        r = torch.randn(v.shape, generator=g, dtype=torch.float64)
        r = r / r.norm() * v.norm()
        with torch.no_grad():
            if c.weight.dim() == 4:
                c.weight[:, -1] = r.view(c.shape[0], *c.shape[2:])
            else:
                n_ch = net.layers["L"].size
                c.weight.view(c.shape[0], n_ch, -1)[:, -1] = r.view(c.shape[0], -1)
        assert float(_incoming_gradient(net, x, y).norm()) <= best * (1 + 1e-9)


def test_deterministic_under_a_seed():
    weights = []
    for _ in range(2):
        net, ctx, _ = world(11, reader="conv", bn=True, pool="max")
        GradMaxInitializer(epsilon=1e-3).grow(ctx, [Site("L", 2), Site("N", 1)])
        weights.append({k: v.clone() for k, v in net.state_dict().items()})
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_cnn_preset_graph_conv_and_first_dense_layer():
    """``GrowableNet.cnn``: GradMax grows a conv block (max pooling, batch norm) and the first dense
    layer after the flatten boundary (``a_{l-1}`` = the flattened maps) with the function unchanged."""
    net = GrowableNet.cnn(input_shape=(2, 8, 8), conv=[3, 4], hidden=[5], output=3, seed=0).double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 2, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (10,), generator=g)
    ctx = make_ctx(net, Dataset("img", "classification", x, y, x, y, x, y, (2, 8, 8), 3, {}), batch_size=4)
    net.eval()
    before = net(x).detach()
    names = net.hidden_layers()
    GradMaxInitializer(epsilon=0.0).grow(ctx, [Site(names[0], 2), Site(names[1], 2), Site(names[2], 2)])
    net.eval()
    assert net.widths()[1:4] == [5, 6, 7]
    assert torch.allclose(net(x), before, atol=1e-6, rtol=0)
    dense = net.connections[net.connection_names(source=names[2])[0]].weight.detach()[:, -2:]
    assert bool((dense.norm(dim=0) > 0).all())


def test_dense_layer_after_the_flatten_boundary_moment():
    """The dense form on a dense layer reading a conv layer: ``M = E[g a^T]`` with ``a`` the flattened maps."""
    net, ctx, _ = world(5, reader="hidden", bn=False)
    x, y = ctx.data.x_train, ctx.data.y_train
    ref = copy.deepcopy(net).train()
    a = ref.layer_outputs(x)["L"].detach().flatten(1)
    out_conn = ref.connections[ref.connection_names(target="output")[0]]
    pre = F.linear(ref.layers["D"].activation(
        F.linear(a, ref.connections[ref.connection_names(target="D")[0]].weight, ref.layers["D"].bias)),
        out_conn.weight, ref.layers["output"].bias).requires_grad_()
    g = torch.autograd.grad(F.cross_entropy(pre, y), pre)[0]
    assert torch.allclose(gradient_cross_moment(ctx, "D"), g.T @ a, rtol=1e-9, atol=1e-12)


def test_refuses_a_conv_layer_with_two_inputs():
    net, ctx, spec = world(1, reader="conv", first=False)
    skip = torch.zeros(3, net.layers["input"].size, spec["k1"], spec["k1"], dtype=torch.float64)
    net.add_connection("input", "L", skip, stride=spec["s1"], padding=spec["p1"])
    before = net.spec()
    with pytest.raises(GrowthError, match="one full connection in and one out"):
        GradMaxInitializer().grow(ctx, [Site("L", 1)])
    assert net.spec() == before


def test_model_untouched_by_the_probe():
    net, ctx, _ = world(2, reader="conv", bn=True)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    gradient_cross_moment(ctx, "L")
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    assert all(p.requires_grad for p in net.parameters())
    assert not any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())

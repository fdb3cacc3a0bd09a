"""GradMax (``GradMaxInitializer``): the cross moment ``M = E[dL/dz_{l+1} a_{l-1}^T]`` against a
hand computation, outgoing weights = top eigenvectors of ``M M^T`` scaled to the mean existing
outgoing norm, the function preserved exactly at ``epsilon = 0`` and to ``O(epsilon)`` otherwise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgekit import make_ctx, toy_dataset
from selfexpand.errors import ConfigError, GrowthError
from selfexpand.graph import GrowableNet
from selfexpand.strategies.base import Site
from selfexpand.strategies.initializers.gradmax import GradMaxInitializer, gradient_cross_moment


def world(seed: int, widths=(5, 4, 6, 3), n=40):
    net = GrowableNet.mlp(list(widths), seed=seed)
    data = toy_dataset(n=n, d=widths[0], k=widths[-1], seed=seed, signed=True)
    return net, make_ctx(net, data, seed=seed, batch_size=8)


def hand_moment(net, x, y):
    """``(1/N) sum_i (softmax(z_i) - onehot(y_i)) a_i^T`` for layer h2's output z and h1's input a = x."""
    with torch.no_grad():
        h1 = net.layers["h1"].activation(x @ net.connections["input_to_h1"].weight.T + net.layers["h1"].bias)
        h2 = net.layers["h2"].activation(h1 @ net.connections["h1_to_h2"].weight.T + net.layers["h2"].bias)
        out = h2 @ net.connections["h2_to_output"].weight.T + net.layers["output"].bias
        delta = (F.softmax(out, 1) - F.one_hot(y, out.shape[1]).float()) / x.shape[0]
    return (delta.double().T @ h1.double())  # for layer h2: z_{l+1} = output, a_{l-1} = h1


@pytest.mark.parametrize("seed", range(3))
def test_cross_moment_equals_the_hand_computation(seed):
    net, ctx = world(seed)
    m = gradient_cross_moment(ctx, "h2")
    expected = hand_moment(net, ctx.data.x_train, ctx.data.y_train)
    assert m.shape == (3, 4)
    assert torch.allclose(m, expected, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_outgoing_weights_are_the_top_eigenvectors_scaled_to_the_mean_norm(seed):
    net, ctx = world(seed)
    expected_m = hand_moment(net, ctx.data.x_train, ctx.data.y_train)
    scale = net.connections["h2_to_output"].weight.detach().double().norm(dim=0).mean()
    GradMaxInitializer(epsilon=0.0).grow(ctx, [Site("h2", 2)])
    new = net.connections["h2_to_output"].weight.detach().double()[:, 6:]
    values, vectors = torch.linalg.eigh(expected_m @ expected_m.T)  # ascending
    top = vectors[:, [-1, -2]]
    for j in range(2):
        assert float(new[:, j].norm()) == pytest.approx(float(scale), rel=1e-5)
        cosine = float((new[:, j] / new[:, j].norm()) @ top[:, j])
        assert abs(cosine) == pytest.approx(1.0, abs=1e-4)
        assert float(new[:, j][new[:, j].abs().argmax()]) > 0  # sign convention


@pytest.mark.parametrize("seed", range(10))
def test_epsilon_zero_preserves_the_function_exactly(seed):
    net, ctx = world(seed)
    x = ctx.data.x_train
    before = net(x)
    GradMaxInitializer(epsilon=0.0).grow(ctx, [Site("h1", 2), Site("h2", 3)])
    assert net.widths() == [5, 6, 9, 3]
    assert torch.allclose(net(x), before, atol=1e-5, rtol=0)


def test_small_epsilon_changes_the_function_by_order_epsilon():
    changes = []
    for eps in (1e-2, 1e-3):
        net, ctx = world(4)
        x = ctx.data.x_train
        before = net(x)
        GradMaxInitializer(epsilon=eps).grow(ctx, [Site("h2", 2)])
        changes.append(float((net(x) - before).detach().abs().max()))
        assert float(net.connections["h1_to_h2"].weight.detach()[6:].norm(dim=1).max()) == pytest.approx(eps, rel=1e-5)
    assert 0 < changes[1] < changes[0] / 5


def test_units_beyond_the_rank_bound_get_zero_outgoing_weights():
    net, ctx = world(0)
    GradMaxInitializer(epsilon=0.0).grow(ctx, [Site("h2", 5)])  # M is 3 x 4: at most 3 directions
    new = net.connections["h2_to_output"].weight.detach()[:, 6:]
    assert bool((new[:, :3].norm(dim=0) > 0).all()) and torch.equal(new[:, 3:], torch.zeros(3, 2))


def test_refuses_a_layer_that_is_not_a_chain_link():
    net, ctx = world(0)
    net.add_connection("input", "h2", torch.zeros(6, 5))
    spec = net.spec()
    with pytest.raises(GrowthError, match="one full connection in and one out"):
        GradMaxInitializer().grow(ctx, [Site("h2", 1)])
    assert net.spec() == spec


def test_model_untouched_by_the_probe():
    net, ctx = world(1)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    gradient_cross_moment(ctx, "h1")
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    assert all(p.requires_grad for p in net.parameters()) and len(net.connections) == 3


def test_bad_epsilon():
    with pytest.raises(ConfigError, match="epsilon"):
        GradMaxInitializer(epsilon=-1.0)

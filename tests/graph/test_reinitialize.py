"""``reinitialize`` (a static twin's fresh values): batch norm starts afresh too. A twin that kept
the grown run's trained batch-norm weights and running statistics would start from learned state
(and a channel whose batch-norm weight growth set small would start nearly silent)."""

from __future__ import annotations

import torch
from torch import nn

from selfexpand.graph import GrowableNet
from selfexpand.graph.init import reinitialize


def _trained_looking(net: GrowableNet, gen: torch.Generator) -> None:
    """Every batch norm's affine values and statistics moved away from their start values."""
    with torch.no_grad():
        for layer in net.layers.values():
            norm = getattr(layer, "norm", None)
            if norm is None:
                continue
            for t in (norm.weight, norm.bias, norm.running_mean):
                t.copy_(torch.randn(t.shape, generator=gen))
            norm.running_var.copy_(torch.rand(norm.running_var.shape, generator=gen) + 0.1)
            norm.num_batches_tracked.fill_(17)


def _norms(net: GrowableNet) -> list[nn.Module]:
    return [layer.norm for layer in net.layers.values() if getattr(layer, "norm", None) is not None]


def test_batch_norm_starts_afresh_in_a_conv_net_and_a_dense_one():
    gen = torch.Generator().manual_seed(0)
    conv = GrowableNet.cnn((3, 8, 8), [4, 6], hidden=[5], output=3, seed=0)
    dense = GrowableNet.from_module(nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)))
    for net in (conv, dense):
        assert _norms(net), "the network under test has batch norm"
        _trained_looking(net, gen)
        reinitialize(net, seed=3)
        for norm in _norms(net):
            fresh = type(norm)(norm.num_features, eps=norm.eps, momentum=norm.momentum)
            for name, value in fresh.state_dict().items():
                assert torch.equal(norm.state_dict()[name], value), name


def test_the_same_seed_gives_the_same_values_batch_norm_included():
    a = GrowableNet.cnn((3, 8, 8), [4, 6], output=3, seed=0)
    b = GrowableNet.cnn((3, 8, 8), [4, 6], output=3, seed=1)
    _trained_looking(b, torch.Generator().manual_seed(1))
    reinitialize(a, seed=5)
    reinitialize(b, seed=5)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)

"""Random tiny conv graphs for the property tests of ``tests/graph`` and ``tests/ops``.

:func:`draw_conv_case` builds an image-input graph: 1-3 conv layers (kernel 1-3, stride 1-2, padding
0..k//2, optional batch norm with random affine values and running statistics, optional max / avg
pooling, relu / tanh / identity), skip connections between conv layers whose spatial sizes agree
(1x1 or 3x3, sometimes reading or writing a channel subset), the flatten boundary into 0-2 dense
layers, sometimes a second flatten reader of an earlier conv layer. Values come from a generator seeded
by hypothesis, so every example replays. Compare outputs in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from hypothesis import strategies as st

from graphkit import ACTIVATIONS as ACTS
from selfexpand.graph import ConvLayer, GrowableNet, Layer
from selfexpand.graph.conv import spatial_sizes


@dataclass
class ConvCase:
    net: GrowableNet
    x: torch.Tensor
    gen: torch.Generator
    log: list = field(default_factory=list)


def _rand(shape, gen, scale=1.0):
    return (torch.rand(shape, generator=gen) * 2 - 1) * scale


def _subset(data, n, label):
    """None (all) or a sorted index tensor of a proper, non-empty subset of ``range(n)``."""
    if n < 2 or not data.draw(st.booleans(), label=f"{label} subset"):
        return None
    picked = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n - 1, unique=True), label=label)
    return torch.tensor(sorted(picked))


def draw_conv_case(data, *, nonneg_input: bool | None = None, chain: bool = False) -> ConvCase:
    """A random conv graph and input; ``chain``: no skip connection (what ``nn.Sequential`` expresses)."""
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    gen = torch.Generator().manual_seed(seed)
    c = data.draw(st.integers(1, 3), label="C")
    h = data.draw(st.integers(4, 8), label="H")
    w = data.draw(st.integers(4, 8), label="W")
    net = GrowableNet(c, data.draw(st.integers(1, 3), label="output"), input_shape=(c, h, w))
    convs = []
    previous = net.input_name
    for i in range(data.draw(st.integers(1, 3), label="n_conv")):
        hw = spatial_sizes(net)[previous][1]
        k = data.draw(st.integers(1, min(3, *hw)), label="k")
        stride = data.draw(st.integers(1, 2), label="stride")
        pad = data.draw(st.integers(0, k // 2), label="padding")
        pre = [(n + 2 * pad - k) // stride + 1 for n in hw]
        pools = [None] + (["max", "avg"] if min(pre) >= 2 else [])
        layer = ConvLayer(data.draw(st.integers(1, 4), label="channels"), data.draw(st.sampled_from(ACTS)),
                          batch_norm=data.draw(st.booleans(), label="bn"), pool=data.draw(st.sampled_from(pools)))
        if layer.norm is not None:
            with torch.no_grad():
                n = layer.size
                layer.norm.weight.copy_(_rand(n, gen) + 1.5)
                layer.norm.bias.copy_(_rand(n, gen))
                layer.norm.running_mean.copy_(_rand(n, gen, 0.5))
                layer.norm.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
        name = net.new_layer_name()
        net.add_layer(name, layer, before="output")
        n_in = net.layers[previous].size
        net.add_connection(previous, name, _rand((layer.size, n_in, k, k), gen), stride=stride, padding=pad)
        with torch.no_grad():
            layer.bias.copy_(_rand(layer.size, gen, 0.3))
        # skips from earlier spatial layers whose maps fit this layer's pre-activation size
        target_hw = spatial_sizes(net)[name][0]
        for src in [net.input_name, *convs]:
            if src == previous:
                continue
            src_hw = spatial_sizes(net)[src][1]
            for sk, ss in ((1, 1), (1, 2), (3, 1), (3, 2)):
                out = tuple((n + 2 * (sk // 2) - sk) // ss + 1 for n in src_hw)
                if out == tuple(target_hw) and not chain and data.draw(st.booleans(),
                                                                       label=f"skip {src}->{name} {sk}/{ss}"):
                    idx = _subset(data, net.layers[src].size, "skip in")
                    oidx = _subset(data, layer.size, "skip out")
                    n_cols = net.layers[src].size if idx is None else idx.numel()
                    n_rows = layer.size if oidx is None else oidx.numel()
                    net.add_connection(src, name, _rand((n_rows, n_cols, sk, sk), gen), stride=ss,
                                       padding=sk // 2, in_index=idx, out_index=oidx)
                    break
        convs.append(name)
        previous = name
    dense = []
    for i in range(data.draw(st.integers(0, 2), label="n_dense")):
        name = net.new_layer_name()
        net.add_layer(name, Layer(data.draw(st.integers(1, 5), label="width"), data.draw(st.sampled_from(ACTS))),
                      before="output")
        dense.append(name)
    chain = [previous, *dense, net.output_name]
    sizes = spatial_sizes(net)
    for src, tgt in zip(chain, chain[1:]):
        p = sizes[src][1][0] * sizes[src][1][1] if src in sizes else 1
        net.add_connection(src, tgt, _rand((net.layers[tgt].size, net.layers[src].size * p), gen, 0.5))
        with torch.no_grad():
            net.layers[tgt].bias.copy_(_rand(net.layers[tgt].size, gen, 0.3))
    if len(convs) > 1 and not chain and data.draw(st.booleans(), label="flatten skip"):
        src, tgt = convs[0], chain[1]
        idx = _subset(data, net.layers[src].size, "flatten in")
        n_read = net.layers[src].size if idx is None else idx.numel()
        p = sizes[src][1][0] * sizes[src][1][1]
        net.add_connection(src, tgt, _rand((net.layers[tgt].size, n_read * p), gen, 0.5), in_index=idx)
    spatial_sizes(net, strict=True)
    net.eval()
    nonneg = data.draw(st.booleans(), label="nonneg input") if nonneg_input is None else nonneg_input
    x = torch.rand(3, c, h, w, generator=gen) if nonneg else torch.randn(3, c, h, w, generator=gen)
    case = ConvCase(net, x, gen)
    case.log.append(str(net))
    return case


def outputs(net, x) -> torch.Tensor:
    with torch.no_grad():
        return net(x)


def conv_layers(net) -> list[str]:
    return [n for n in net.hidden_layers() if isinstance(net.layers[n], ConvLayer)]

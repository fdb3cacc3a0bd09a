"""``GrowableNet.cnn``: a chain of conv blocks, a flatten boundary, then a dense chain.

Conventions (each block ``i`` with ``conv[i]`` channels): a ``kernel x kernel`` convolution with stride
1 and padding ``kernel // 2`` (odd kernels keep the spatial size), then batch norm (``batch_norm``),
the activation, and pooling (``pool``: ``"max"``, ``"avg"`` or None) with kernel = stride = 2, so each
block halves the height and width (floor). The last block's maps are flattened channel-major into the
first dense layer (``hidden``; none: straight into the output). Weights and biases are drawn as
``nn.Conv2d`` and ``nn.Linear`` draw them: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, ``fan_in`` =
input channels x kernel area for a convolution, inputs for a dense layer; batch norm starts at weight
1, bias 0, running mean 0, running variance 1 (``nn.BatchNorm2d``'s defaults).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..errors import ConfigError
from ..validators import integer_list, positive_int
from .conv import POOLS, ConvLayer, spatial_sizes
from .parts import Layer

__all__ = ["build_cnn"]


def _uniform(shape, fan_in: int, gen) -> torch.Tensor:
    bound = 1 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


def build_cnn(cls, input_shape: Sequence[int], conv: Sequence[int], hidden: Sequence[int] = (),
              output: int = 10, *, kernel: int = 3, batch_norm: bool = True, pool: str | None = "max",
              activation: str = "relu", seed: int | None = None):
    """A ``cls`` (``GrowableNet``) with the conventions of the module docstring.

    Args:
        input_shape: ``(C, H, W)`` of an example.
        conv: channels of each conv block (at least one).
        hidden: widths of the dense layers after the flatten boundary.
        output: output units.
        kernel: the (square) kernel size of every block.
        seed: seeds the initial values (torch's global generator when None).

    Raises:
        ConfigError: a shape, width or kernel that is not a positive integer, an unknown pool, or
            blocks that pool the maps below 1 x 1 (the message names the layer).
    """
    shape = integer_list("input_shape", input_shape, 1, min_length=3)
    if len(shape) != 3:
        raise ConfigError(f"input_shape must be (C, H, W), got input_shape={list(input_shape)}")
    conv = integer_list("conv", conv, 1, min_length=1)
    hidden = integer_list("hidden", hidden, 1)
    positive_int("output", output)
    positive_int("kernel", kernel)
    if pool is not None and pool not in POOLS:
        raise ConfigError(f"pool must be one of {list(POOLS)} or None, got pool={pool!r}")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    net = cls(shape[0], output, input_shape=shape)
    previous = net.input_name
    for channels in conv:
        name = net.new_layer_name()
        net.add_layer(name, ConvLayer(channels, activation, batch_norm=batch_norm, pool=pool), before="output")
        fan_in = net.layers[previous].size * kernel * kernel
        net.add_connection(previous, name, _uniform((channels, net.layers[previous].size, kernel, kernel),
                                                    fan_in, gen), padding=kernel // 2)
        with torch.no_grad():
            net.layers[name].bias.copy_(_uniform((channels,), fan_in, gen))
        previous = name
    out_hw = spatial_sizes(net, strict=True)[previous][1]
    n_in = net.layers[previous].size * out_hw[0] * out_hw[1]
    names = []
    for width in hidden:
        names.append(net.new_layer_name())
        net.add_layer(names[-1], Layer(width, activation), before="output")
    for name, width in zip([*names, net.output_name], [*hidden, output]):
        net.add_connection(previous, name, _uniform((width, n_in), n_in, gen))
        with torch.no_grad():
            net.layers[name].bias.copy_(_uniform((width,), n_in, gen))
        previous, n_in = name, width
    spatial_sizes(net, strict=True)
    return net

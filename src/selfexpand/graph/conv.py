"""Convolutional layers in the graph: a layer's units may be the channels of a feature map.

Where things live (one place each):

- **The image input.** ``GrowableNet(channels, output, input_shape=(C, H, W))``: the input layer's
  units are the ``C`` channels of an ``(N, C, H, W)`` batch (``net.input_shape``; None for a flat input).
- **A conv layer** (:class:`ConvLayer`) owns what acts on its channels after the sum of its inputs:
  the per-channel bias, an optional batch norm (``layer.norm``, a standard ``nn.BatchNorm2d`` whose
  affine parameters and running statistics grow and shrink with the channels), the activation, an
  optional pooling (``"max"`` / ``"avg"``, kernel = stride = ``pool_size``) and an optional dropout
  rate (training mode only): ``h = dropout(pool(act(bn(pre))))``.
  It carries no unit modulator.
- **A conv connection** (:class:`ConvConnection`) owns its geometry: kernels ``(n_out, n_in_selected,
  kh, kw)`` (the kernel size is the weight's shape), ``stride`` and ``padding``, like an ``nn.Conv2d``
  without bias. It reads channels ``in_index`` of its source (or all) and writes channels
  ``out_index`` of its target (or all), as a dense connection does. Several connections may enter one
  conv layer when their outputs have the same spatial size (a 1x1 skip from an earlier layer of the
  same size, say); the layer's pre-activation is the bias plus their sum (``index_add`` on channels).
- **The flatten boundary.** A dense :class:`~.parts.Connection` whose source is spatial (a conv layer
  or the image input) reads the selected channels' maps flattened channel-major, as ``nn.Flatten`` on
  NCHW: its weight is ``(n_out, n_selected * P)``, ``P = H * W`` the source's output positions
  (:func:`positions`), column ``c * P + p`` = channel ``c``'s position ``p``. A channel added to
  the source adds its ``P`` columns.

Geometry: a conv connection maps ``H`` to ``(H + 2 padding - kh) // stride + 1``; pooling then maps
``H`` to ``H // pool_size``. :func:`spatial_sizes` computes every spatial layer's sizes from the input.
Forward issues the kernels of the equivalent ``nn.Sequential``: ``F.conv2d`` with the stored weight
(and the bias, for a layer with one connection reading all of its source), ``nn.BatchNorm2d``, the
activation, ``F.max_pool2d`` / ``F.avg_pool2d``; no loop over channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .parts import Connection, Layer

__all__ = ["ConvLayer", "ConvConnection", "POOLS", "is_spatial", "spatial_sizes", "positions",
           "conv_output_size", "conv_layer_forward"]

POOLS = ("max", "avg")


class ConvLayer(Layer):
    """``channels`` feature maps: ``h = dropout(pool(activation(batch_norm(pre + bias))))``.

    Args:
        channels: number of channels (its units).
        activation: name, spec (``{"type": "leaky_relu", "negative_slope": 0.2}``) or elementwise module.
        batch_norm: add a per-channel ``nn.BatchNorm2d(channels, eps, momentum, affine,
            track_running_stats)`` after the sum of the inputs.
        pool: None, ``"max"`` or ``"avg"``: pooling with kernel = stride = ``pool_size`` after the
            activation.
        dropout: rate of the (elementwise) dropout applied in training mode after the pooling.

    Raises:
        ConfigError: an unknown pool, a pool size below 1, a negative ``eps``, a dropout outside [0, 1].
    """

    norm_class = nn.BatchNorm2d

    def __init__(self, channels: int, activation: str | dict | nn.Module = "relu", *, batch_norm: bool = False,
                 pool: str | None = None, pool_size: int = 2, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dropout: float = 0.0):
        if pool is not None and pool not in POOLS:
            raise ConfigError(f"pool must be one of {list(POOLS)} or None, got pool={pool!r}")
        if int(pool_size) < 1:
            raise ConfigError(f"pool_size must be a positive integer, got pool_size={pool_size!r}")
        super().__init__(channels, activation, batch_norm=batch_norm, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats, dropout=dropout)
        self.pool = pool
        self.pool_size = int(pool_size) if pool is not None else 1

    def finish(self, pre: torch.Tensor) -> torch.Tensor:
        """Batch norm, activation, pooling and dropout of the pre-activation (bias included)."""
        h = pre if self.norm is None else self.norm(pre)
        h = self.activation(h)
        if self.pool == "max":
            h = F.max_pool2d(h, self.pool_size)
        elif self.pool == "avg":
            h = F.avg_pool2d(h, self.pool_size)
        if self.dropout:
            h = F.dropout(h, self.dropout, self.training)
        return h

    def pooled(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The output spatial size for a pre-activation of spatial size ``hw``."""
        return (hw[0] // self.pool_size, hw[1] // self.pool_size)

    def conv_spec(self) -> dict:
        """``batch_norm``, ``pool``, ``pool_size``, ``eps``, ``momentum``, and ``affine`` /
        ``track_running_stats`` only where they are not True (older specs lack them)."""
        norm = self.norm
        spec = {"batch_norm": norm is not None, "pool": self.pool, "pool_size": self.pool_size,
                "eps": None if norm is None else norm.eps, "momentum": None if norm is None else norm.momentum}
        if norm is not None:
            spec.update({k: False for k in ("affine", "track_running_stats") if not getattr(norm, k)})
        return spec

    def extra_repr(self) -> str:
        bits = [f"channels={self.size}"]
        if self.norm is not None:
            bits.append("batch_norm")
        if self.pool is not None:
            bits.append(f"pool={self.pool}{self.pool_size}")
        if self.dropout:
            bits.append(f"dropout={self.dropout}")
        return ", ".join(bits)


class ConvConnection(Connection):
    """Kernels ``(n_out, n_in_selected, kh, kw)`` from channels of a spatial source to channels of a
    conv layer, with their ``stride`` and ``padding`` (ints, the same for both spatial dimensions);
    an optional 0/1 ``mask`` of the weight's shape."""

    def __init__(self, source: str, target: str, weight: torch.Tensor, *, stride: int = 1, padding: int = 0,
                 **kw):
        if weight.dim() != 4:
            raise ConfigError(f"a conv connection's weight must be 4-D (n_out, n_in, kh, kw), "
                              f"got shape={tuple(weight.shape)}")
        if int(stride) < 1 or int(padding) < 0:
            raise ConfigError(f"stride must be >= 1 and padding >= 0, got stride={stride!r}, padding={padding!r}")
        super().__init__(source, target, weight, **kw)
        self.stride, self.padding = int(stride), int(padding)

    @property
    def kernel_size(self) -> tuple[int, int]:
        return tuple(self.weight.shape[2:])

    def contribution(self, x_source: torch.Tensor) -> torch.Tensor:
        """``conv2d(x_source[:, in_index], W * M)`` of shape ``(batch, n_out, H', W')``."""
        if self.in_index is not None:
            x_source = x_source.index_select(1, self.in_index)
        return F.conv2d(x_source, self.effective_weight(), None, self.stride, self.padding)

    def out_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        kh, kw = self.kernel_size
        return (conv_output_size(hw[0], kh, self.stride, self.padding),
                conv_output_size(hw[1], kw, self.stride, self.padding))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, stride={self.stride}, padding={self.padding}"


def conv_output_size(n: int, kernel: int, stride: int, padding: int) -> int:
    """``(n + 2 padding - kernel) // stride + 1`` (``nn.Conv2d``'s rule, dilation 1)."""
    return (n + 2 * padding - kernel) // stride + 1


def is_spatial(net, name: str) -> bool:
    """Whether layer ``name``'s output is a feature map (a conv layer, or an image input)."""
    if name == net.input_name:
        return getattr(net, "input_shape", None) is not None
    return isinstance(net.layers[name], ConvLayer)


def spatial_sizes(net, *, strict: bool = False) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
    """``{layer: (pre_hw, out_hw)}`` for every spatial layer with a known size (none for a flat input).

    ``pre_hw`` is the size of the summed convolutions, ``out_hw`` after pooling (the input's are its
    ``(H, W)``). With ``strict``, a conv layer without conv inputs, inputs of different sizes, a size
    below 1, a conv connection from a flat layer, or a conv layer read by a dense layer of the wrong
    width raise ``ConfigError``.
    """
    shape = getattr(net, "input_shape", None)
    if shape is None:
        return {}
    sizes = {net.input_name: ((shape[1], shape[2]), (shape[1], shape[2]))}
    for name in net.order[1:]:
        layer = net.layers[name]
        incoming = [c for c in net.connections.values() if c.target == name]
        if not isinstance(layer, ConvLayer):
            if strict:
                _check_dense_reader(net, name, incoming, sizes)
            continue
        pre = set()
        for c in incoming:
            if not isinstance(c, ConvConnection) or c.source not in sizes:
                if strict:
                    raise ConfigError(f"conv layer {name!r} reads {c.source!r} through a connection that is "
                                      "not a convolution of a spatial layer")
                continue
            pre.add(c.out_size(sizes[c.source][1]))
        if not pre:
            if strict:
                raise ConfigError(f"conv layer {name!r} has no conv input")
            continue
        if len(pre) > 1 and strict:
            raise ConfigError(f"the conv inputs of layer {name!r} have different spatial sizes {sorted(pre)}")
        hw = min(pre)
        out = layer.pooled(hw)
        if strict and min(*hw, *out) < 1:
            raise ConfigError(f"layer {name!r} would have spatial size {hw} (after pooling {out}); "
                              "use smaller kernels, strides or pooling, or a larger input")
        sizes[name] = (hw, out)
    return sizes


def _check_dense_reader(net, name, incoming, sizes) -> None:
    for c in incoming:
        if isinstance(c, ConvConnection):
            raise ConfigError(f"dense layer {name!r} cannot take a conv connection from {c.source!r}")
        if c.source in sizes:
            n_read = net.layers[c.source].size if c.in_index is None else c.in_index.numel()
            p = sizes[c.source][1][0] * sizes[c.source][1][1]
            if c.shape[1] != n_read * p:
                raise ConfigError(f"connection {c.source!r} -> {name!r} reads {n_read} channels of "
                                  f"{p} positions: it needs {n_read * p} columns, has {c.shape[1]}")


def positions(net, name: str) -> int:
    """Positions per channel of layer ``name``'s output (``H * W``; 1 for a flat layer)."""
    if not is_spatial(net, name):
        return 1
    hw = spatial_sizes(net)[name][1]
    return hw[0] * hw[1]


def conv_layer_forward(layer: ConvLayer, incoming: list, acts: dict) -> torch.Tensor:
    """A conv layer's output from its sources' outputs ``acts`` (see the module docstring)."""
    if len(incoming) == 1 and incoming[0].in_index is None and incoming[0].out_index is None:
        c = incoming[0]
        pre = F.conv2d(acts[c.source], c.effective_weight(), layer.bias, c.stride, c.padding)
        return layer.finish(pre)
    pre, partial = None, []
    for c in incoming:
        y = c.contribution(acts[c.source])
        if c.out_index is None:
            pre = y if pre is None else pre + y
        else:
            partial.append((c.out_index, y))
    bias = layer.bias.view(1, -1, 1, 1)
    if pre is None:
        n, _, h, w = partial[0][1].shape
        pre = bias.expand(n, -1, h, w)
    else:
        pre = pre + bias
    for index, y in partial:
        pre = pre.index_add(1, index, y)
    return layer.finish(pre)

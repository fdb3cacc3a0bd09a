"""``GrowableNet.from_module(module)``: a user's own ``nn.Sequential`` as a growable network.

The module (nested ``nn.Sequential`` allowed; they are flattened in order) is read as a chain of
**blocks**, each a ``Linear`` or ``Conv2d`` followed by what acts on its units, in the order the graph
applies it (``graph.parts`` / ``graph.conv``)::

    Conv2d  [BatchNorm2d]  [activation]  [MaxPool2d | AvgPool2d | AdaptiveAvg/MaxPool2d]  [Dropout]
    Linear  [BatchNorm1d]  [activation]  [Dropout]

with ``Flatten`` between the last conv block and the first dense one, and ``Identity`` (or
``Dropout(0)``) anywhere. Each block becomes a layer (``h1``, ``h2``, ...; the last, a ``Linear``,
the output layer) reading the previous one through a connection holding the module's weight; the
values are copied (weights, biases, batch-norm affine values, running statistics and
``num_batches_tracked``), so the network computes the same function, in evaluation **and** training
mode: dropout rates and batch-norm settings (``eps``, ``momentum``, ``affine``,
``track_running_stats``) are kept and recorded in the spec. The network is on the module's device and
dtype, in its training mode.

Orders the graph expresses exactly besides the one above: a max pooling before a monotone
non-decreasing activation (ReLU, LeakyReLU with a slope >= 0, Tanh, Sigmoid: the two commute), and an
activation or dropout after the ``Flatten`` (elementwise, so the same before it). Anything else is
refused with ``ConfigError`` naming the module and its position (``module 3 (layers.2): Conv2d(groups=2)
is not supported: groups must be 1``): unsupported classes, a ``Conv2d`` with groups, dilation,
non-square stride or padding or a padding mode other than zeros, a pooling whose stride differs from
its kernel (or with padding, dilation, ``ceil_mode``), an adaptive pooling that does not divide the
maps into equal square windows, batch norm after the activation or pooling, dropout before them, and
any module before the first ``Linear`` / ``Conv2d`` other than ``Flatten``.

A ``Linear`` / ``Conv2d`` without bias gets a zero bias (a graph layer always has one; it is then
trained as any bias). An ``AdaptiveAvgPool2d`` becomes an average pooling of the equal windows it
takes at the network's fixed ``input_shape`` (so does its export).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError
from .activations import activation_spec
from .conv import ConvLayer, conv_output_size
from .parts import Layer

__all__ = ["from_module", "SUPPORTED_MODULES"]

_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.GELU, nn.SiLU, nn.Sigmoid)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
#: the torch classes ``from_module`` converts (exactly these classes, not subclasses)
SUPPORTED_MODULES = (nn.Sequential, nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, *_ACTIVATIONS,
                     nn.Identity, *_POOLS, nn.Flatten, nn.Dropout)


class _Refused(Exception):
    """A module the graph cannot express: ``what`` names it, ``why`` says why."""

    def __init__(self, what: str, why: str):
        super().__init__(what, why)
        self.what, self.why = what, why


@dataclass
class _Block:
    """One layer to be: its weight module and what follows it (see the module docstring)."""

    weight: nn.Module
    norm: nn.Module | None = None
    act: nn.Module | None = None
    pool: tuple[str, int] | None = None
    dropout: float = 0.0
    flattened: bool = False  # a conv block followed by the Flatten
    seen: list = field(default_factory=list)  # "norm", "act", "pool", "dropout" in the order met

    @property
    def conv(self) -> bool:
        return isinstance(self.weight, nn.Conv2d)

    @property
    def size(self) -> int:
        return self.weight.out_channels if self.conv else self.weight.out_features


def _leaves(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(path, module)`` of every non-``Sequential`` module, in the order a ``Sequential`` runs them."""
    if type(module) is not nn.Sequential:
        return [("<root>", module)]
    out = []

    def walk(seq, prefix):
        for name, child in seq.named_children():
            path = f"{prefix}{name}"
            if type(child) is nn.Sequential:
                walk(child, path + ".")
            else:
                out.append((path, child))

    walk(module, "")
    return out


def _pair(value, what: str, label: str) -> int:
    """A square ``value`` (an int or an equal pair) as an int, else refused."""
    if isinstance(value, int):
        return value
    values = tuple(value)
    if len(set(values)) != 1:
        raise _Refused(f"{what}({label}={values})", f"{label} must be the same in both dimensions")
    return int(values[0])


def _conv_geometry(m: nn.Conv2d) -> tuple[int, int]:
    """``(stride, padding)`` of a Conv2d the graph can express, else refused."""
    if m.groups != 1:
        raise _Refused(f"Conv2d(groups={m.groups})", "groups must be 1")
    if tuple(m.dilation) != (1, 1):
        raise _Refused(f"Conv2d(dilation={tuple(m.dilation)})", "dilation must be 1")
    if m.padding_mode != "zeros":
        raise _Refused(f"Conv2d(padding_mode={m.padding_mode!r})", "padding_mode must be 'zeros'")
    stride = _pair(m.stride, "Conv2d", "stride")
    padding = m.padding
    if padding == "valid":
        padding = 0
    elif padding == "same":
        kh, kw = m.kernel_size
        if kh != kw or kh % 2 == 0:
            raise _Refused(f"Conv2d(kernel_size={m.kernel_size}, padding='same')",
                           "padding='same' needs a square odd kernel (symmetric padding)")
        padding = kh // 2
    return stride, _pair(padding, "Conv2d", "padding")


def _pool(m: nn.Module, hw: tuple[int, int]) -> tuple[str, int] | None:
    """``(kind, size)`` of a pooling the graph can express on maps of size ``hw``; None: the identity."""
    name = type(m).__name__
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        out = m.output_size if isinstance(m.output_size, tuple) else (m.output_size, m.output_size)
        out = tuple(hw[d] if o is None else int(o) for d, o in enumerate(out))
        if hw[0] % out[0] or hw[1] % out[1] or hw[0] // out[0] != hw[1] // out[1]:
            raise _Refused(f"{name}({m.output_size})", f"maps of size {hw} do not divide into equal square "
                           f"windows for output size {out}")
        size = hw[0] // out[0]
        kind = "avg" if isinstance(m, nn.AdaptiveAvgPool2d) else "max"
        return None if size == 1 else (kind, size)
    kernel = _pair(m.kernel_size, name, "kernel_size")
    stride = _pair(m.stride if m.stride is not None else kernel, name, "stride")
    if stride != kernel:
        raise _Refused(f"{name}(kernel_size={kernel}, stride={stride})", "stride must equal kernel_size")
    if _pair(m.padding, name, "padding") != 0:
        raise _Refused(f"{name}(padding={m.padding})", "padding must be 0")
    if m.ceil_mode:
        raise _Refused(f"{name}(ceil_mode=True)", "ceil_mode must be False")
    if isinstance(m, nn.MaxPool2d) and (_pair(m.dilation, name, "dilation") != 1 or m.return_indices):
        raise _Refused(f"{name}(dilation={m.dilation}, return_indices={m.return_indices})",
                       "dilation must be 1 and return_indices False")
    if isinstance(m, nn.AvgPool2d) and m.divisor_override is not None:
        raise _Refused(f"{name}(divisor_override={m.divisor_override})", "divisor_override must be None")
    if kernel > min(hw):
        raise _Refused(f"{name}(kernel_size={kernel})", f"the maps ({hw}) are smaller than the kernel")
    return ("max" if isinstance(m, nn.MaxPool2d) else "avg", kernel)


def _monotone(act: nn.Module) -> bool:
    """Whether ``act`` is monotone non-decreasing (so it commutes with a max pooling)."""
    if isinstance(act, nn.LeakyReLU):
        return act.negative_slope >= 0
    return isinstance(act, (nn.ReLU, nn.Tanh, nn.Sigmoid))


class _Reader:
    """Walks the leaves, growing blocks and the spatial size; raises ``_Refused`` at the culprit."""

    def __init__(self, input_shape):
        self.blocks: list[_Block] = []
        self.shape = None if input_shape is None else tuple(int(v) for v in input_shape)
        self.hw = None if self.shape is None else self.shape[1:]
        self.input_flat = False  # a Flatten before the first block

    @property
    def spatial(self) -> bool:
        """Whether the current output is a feature map."""
        if not self.blocks:
            return self.shape is not None and not self.input_flat
        return self.blocks[-1].conv and not self.blocks[-1].flattened

    def width(self) -> int:
        """Features that the next Linear reads."""
        if not self.blocks:
            return math.prod(self.shape) if self.shape is not None else -1
        b = self.blocks[-1]
        return b.size * self.hw[0] * self.hw[1] if b.conv else b.size

    def read(self, m: nn.Module) -> None:
        kind = type(m)
        if kind is nn.Identity or (kind is nn.Dropout and m.p == 0):
            return
        if kind is nn.Linear:
            return self._linear(m)
        if kind is nn.Conv2d:
            return self._conv(m)
        if kind is nn.Flatten:
            return self._flatten(m)
        if kind not in SUPPORTED_MODULES:
            raise _Refused(type(m).__name__, _why_unsupported(m))
        if not self.blocks:
            raise _Refused(type(m).__name__, "only Flatten may come before the first Linear or Conv2d "
                           "(the input layer takes no activation, batch norm, pooling or dropout)")
        block = self.blocks[-1]
        if kind in (nn.BatchNorm1d, nn.BatchNorm2d):
            self._norm(block, m)
        elif kind in _ACTIVATIONS:
            self._act(block, m)
        elif kind in _POOLS:
            self._pooling(block, m)
        elif kind is nn.Dropout:
            if "dropout" in block.seen:
                raise _Refused("Dropout", "a second dropout in one layer")
            block.dropout = float(m.p)
            block.seen.append("dropout")

    def _linear(self, m: nn.Linear) -> None:
        if self.spatial and self.blocks:
            raise _Refused("Linear", "a Linear reading feature maps needs a Flatten before it")
        width = self.width()
        if width not in (-1, m.in_features):
            raise _Refused(f"Linear(in_features={m.in_features})", f"the previous layer gives {width} features")
        self.blocks.append(_Block(m))

    def _conv(self, m: nn.Conv2d) -> None:
        stride, padding = _conv_geometry(m)
        if self.shape is None:
            raise _Refused("Conv2d", "a network with Conv2d needs input_shape=(C, H, W)")
        if not self.spatial:
            raise _Refused("Conv2d", "a Conv2d must read feature maps (not after a Flatten or a Linear)")
        channels = self.shape[0] if not self.blocks else self.blocks[-1].size
        if m.in_channels != channels:
            raise _Refused(f"Conv2d(in_channels={m.in_channels})", f"the previous layer gives {channels} channels")
        hw = tuple(conv_output_size(n, k, stride, padding) for n, k in zip(self.hw, m.kernel_size))
        if min(hw) < 1:
            raise _Refused(f"Conv2d(kernel_size={m.kernel_size})", f"maps of size {self.hw} give size {hw}")
        self.hw = hw
        self.blocks.append(_Block(m))

    def _flatten(self, m: nn.Flatten) -> None:
        if (m.start_dim, m.end_dim) != (1, -1):
            raise _Refused(f"Flatten(start_dim={m.start_dim}, end_dim={m.end_dim})", "only Flatten(1, -1)")
        if not self.blocks:
            self.input_flat = True
        elif self.spatial:
            self.blocks[-1].flattened = True

    def _norm(self, block: _Block, m: nn.Module) -> None:
        name = type(m).__name__
        want = nn.BatchNorm2d if block.conv and not block.flattened else nn.BatchNorm1d
        if type(m) is not want or block.flattened:
            raise _Refused(name, f"a {'Conv2d' if block.conv else 'Linear'} layer's batch norm here must be "
                           f"{want.__name__} right after it (before any Flatten)")
        if block.seen:
            raise _Refused(name, f"batch norm after the {block.seen[-1]}: the graph applies batch norm "
                           "first, to the sum of the layer's inputs")
        if m.affine and getattr(m, "bias", True) is None:
            raise _Refused(f"{name}(bias=False)", "an affine batch norm must have its bias")
        if m.num_features != block.size:
            raise _Refused(f"{name}({m.num_features})", f"the layer has {block.size} units")
        block.norm = m
        block.seen.append("norm")

    def _act(self, block: _Block, m: nn.Module) -> None:
        name = type(m).__name__
        if "act" in block.seen:
            raise _Refused(name, "a second activation in one layer")
        if "dropout" in block.seen:
            raise _Refused(name, "an activation after dropout: the graph applies dropout last")
        if "pool" in block.seen and not (block.pool[0] == "max" and _monotone(m)):
            raise _Refused(name, "an activation after pooling: the graph applies the activation first, which "
                           "is the same only for max pooling and a monotone activation (ReLU, LeakyReLU with "
                           "slope >= 0, Tanh, Sigmoid)")
        block.act = m
        block.seen.append("act")

    def _pooling(self, block: _Block, m: nn.Module) -> None:
        name = type(m).__name__
        if not block.conv or block.flattened:
            raise _Refused(name, "pooling must act on feature maps (after a Conv2d, before the Flatten)")
        if "pool" in block.seen:
            raise _Refused(name, "a second pooling in one layer")
        if "dropout" in block.seen:
            raise _Refused(name, "pooling after dropout: the graph applies dropout last")
        pool = _pool(m, self.hw)
        if pool is None:
            return
        block.pool = pool
        block.seen.append("pool")
        self.hw = (self.hw[0] // pool[1], self.hw[1] // pool[1])


def _why_unsupported(m: nn.Module) -> str:
    if isinstance(m, (nn.Softmax, nn.LogSoftmax, nn.Softmin)):
        return "not an elementwise activation (the graph's activations act on each unit alone)"
    if type(m).__module__.split(".")[0] != "torch":
        return "a module of its own class: the graph expresses only a chain of torch layers " \
               "(Linear, Conv2d, BatchNorm1d/2d, activations, pooling, Flatten, Dropout)"
    return "the graph expresses only Linear, Conv2d, BatchNorm1d/2d, ReLU, LeakyReLU, Tanh, GELU, SiLU, " \
           "Sigmoid, Identity, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, AdaptiveMaxPool2d, Flatten and Dropout"


def _refuse(position: int, path: str, refused: _Refused) -> ConfigError:
    return ConfigError(f"module {position} ({path}): {refused.what} is not supported: {refused.why}")


def _layer(block: _Block) -> Layer:
    act = "identity" if block.act is None else activation_spec(block.act)
    norm = {}
    if block.norm is not None:
        n = block.norm
        norm = dict(batch_norm=True, eps=n.eps, momentum=n.momentum, affine=n.affine,
                    track_running_stats=n.track_running_stats)
    if block.conv:
        pool = {} if block.pool is None else dict(pool=block.pool[0], pool_size=block.pool[1])
        return ConvLayer(block.size, act, dropout=block.dropout, **pool, **norm)
    return Layer(block.size, act, dropout=block.dropout, **norm)


@torch.no_grad()
def from_module(cls, module: nn.Module, *, input_shape=None):
    """A ``cls`` (``GrowableNet``) computing what ``module`` computes; see the module docstring.

    Args:
        module: an ``nn.Sequential`` (nested allowed) of the supported modules, or one ``Linear``.
        input_shape: ``(C, H, W)`` of an example; needed when the module has a ``Conv2d`` (the
            graph fixes the spatial sizes). For a dense module it is optional (its product must
            then equal the first ``Linear``'s ``in_features``).

    Raises:
        ConfigError: a module the graph cannot express, named with its position in the flattened
            chain and its path (``module 3 (layers.2): ...``); a module with no Linear / Conv2d,
            one that does not end with a Linear block, or a bad ``input_shape``.
    """
    if not isinstance(module, nn.Module):
        raise ConfigError(f"module must be an nn.Module, got {type(module).__name__}")
    if input_shape is not None:
        shape = list(input_shape) if isinstance(input_shape, (list, tuple)) else None
        if shape is None or len(shape) != 3 or not all(isinstance(v, int) and v >= 1 for v in shape):
            raise ConfigError(f"input_shape must be (C, H, W) of positive integers, got input_shape={input_shape!r}")
    leaves = _leaves(module)
    reader = _Reader(input_shape)
    last = None
    for position, (path, m) in enumerate(leaves):
        try:
            reader.read(m)
        except _Refused as refused:
            raise _refuse(position, path, refused) from None
        if type(m) in (nn.Linear, nn.Conv2d):
            last = (position, path)
    blocks = reader.blocks
    if not blocks:
        raise ConfigError("module has no Linear or Conv2d: nothing to convert")
    if blocks[-1].conv:
        raise _refuse(*last, _Refused("Conv2d", "the module must end with a Linear block (the graph's output "
                                      "layer is dense): add Flatten and Linear"))
    first = blocks[0].weight
    spatial = blocks[0].conv
    size_in = first.in_channels if spatial else first.in_features
    net = cls(size_in, blocks[-1].size, input_shape=reader.shape if spatial else None)
    previous, connections = net.input_name, []
    for i, block in enumerate(blocks):
        layer = _layer(block)
        if i == len(blocks) - 1:
            name = net.output_name
            net.layers[name] = layer
        else:
            name = net.new_layer_name()
            net.add_layer(name, layer, before=net.output_name)
        w = block.weight.weight
        geometry = {}
        if block.conv:
            stride, padding = _conv_geometry(block.weight)
            geometry = dict(stride=stride, padding=padding)
        connections.append(net.add_connection(previous, name, torch.zeros(w.shape), **geometry))
        previous = name
    net.invalidate()
    param = next(module.parameters())
    net.to(device=param.device, dtype=param.dtype)
    for block, conn, name in zip(blocks, connections, net.order[1:]):
        net.connections[conn].weight.copy_(block.weight.weight)
        layer = net.layers[name]
        if block.weight.bias is not None:
            layer.bias.copy_(block.weight.bias)
        if block.norm is not None:
            layer.norm.load_state_dict(block.norm.state_dict())
    return net.train(module.training)

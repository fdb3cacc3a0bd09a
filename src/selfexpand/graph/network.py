"""``GrowableNet``: a directed acyclic graph of layers joined by connections.

Forward runs the layers in topological order; a layer's pre-activation is its bias plus the sum of
its incoming connections' contributions. There is no Python work per unit or edge: each connection
is one ``F.linear``. The structure is edited only through ``selfexpand.ops``, which call
:meth:`GrowableNet.invalidate` so that the cached forward plan is rebuilt.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..validators import integer_list, positive_int
from .conv import ConvConnection, ConvLayer, conv_layer_forward
from .counts import count_params
from .export import export_graph
from .parts import Connection, Layer
from .saving import load_net, save_net
from .sparse import SPARSE_BELOW
from .spec import graph_from_spec, graph_spec

__all__ = ["GrowableNet"]


class GrowableNet(nn.Module):
    """A growable network; an ordinary ``nn.Module`` (``.to``, ``state_dict``, ``no_grad``).

    Args:
        input_size: number of units of the input layer (the front's output size when there is one).
        output_size: number of output units (logits or regression targets).
        front: optional fixed-architecture module whose output (flattened) is the input layer.
        front_spec: plain JSON naming the front (see ``graph.spec.register_front``), for checkpoints.
        input_shape: ``(C, H, W)`` for an image input whose units are its ``C`` channels (then
            ``input_size == C``, no front; see ``graph.conv``); None (default): a flat input.

    Attribute ``sparse_below`` (default ``graph.sparse.SPARSE_BELOW``, the measured cut-over): after
    every op, a masked dense connection whose live fraction is below it is stored sparse
    (``graph.sparse``); 0 keeps every connection dense. It is part of the spec.
    """

    def __init__(self, input_size: int, output_size: int, *, front: nn.Module | None = None,
                 front_spec: dict | None = None, input_shape: Sequence[int] | None = None):
        super().__init__()
        positive_int("input_size", input_size)
        positive_int("output_size", output_size)
        if input_shape is not None:
            input_shape = tuple(integer_list("input_shape", input_shape, 1, min_length=3))
            if len(input_shape) != 3 or input_shape[0] != input_size or front is not None:
                raise ConfigError(f"input_shape must be (C, H, W) with C = input_size={input_size} and no "
                                  f"front, got input_shape={input_shape}")
        self.input_shape = input_shape
        self.front = front
        self.front_spec = front_spec
        self.layers = nn.ModuleDict()
        self.connections = nn.ModuleDict()
        self.input_name, self.output_name = "input", "output"
        self.layers["input"] = Layer(input_size, bias=False)
        self.layers["output"] = Layer(output_size, "identity")
        self.order: list[str] = ["input", "output"]
        self.next_id = 1
        self.sparse_below = SPARSE_BELOW  # live fraction under which ops store a connection sparse
        self._plan: list = self._build_plan()

    # ------------------------------------------------------------------ construction
    @classmethod
    def mlp(cls, widths: Sequence[int], activation: str = "relu", *, seed: int | None = None,
            front: nn.Module | None = None, front_spec: dict | None = None) -> "GrowableNet":
        """A chain ``widths[0] -> ... -> widths[-1]`` initialised like ``nn.Linear``.

        Raises:
            ConfigError: fewer than two widths (input, output), or a width that is not a positive integer.
        """
        widths = integer_list("widths", widths, 1, min_length=2)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        net = cls(widths[0], widths[-1], front=front, front_spec=front_spec)
        previous = "input"
        for width in widths[1:-1]:
            name = net.new_layer_name()
            net.add_layer(name, Layer(width, activation), before="output")
            net.add_connection(previous, name, _linear_init(width, net.layers[previous].size, gen))
            previous = name
        net.add_connection(previous, "output", _linear_init(widths[-1], net.layers[previous].size, gen))
        for name in net.order[1:]:
            fan_in = sum(c.weight.shape[1] for c in net.incoming(name))
            bound = 1 / math.sqrt(fan_in)
            with torch.no_grad():
                net.layers[name].bias.copy_(_uniform((net.layers[name].size,), bound, gen))
        return net

    @classmethod
    def cnn(cls, input_shape: Sequence[int], conv: Sequence[int], hidden: Sequence[int] = (),
            output: int = 10, *, kernel: int = 3, batch_norm: bool = True, pool: str | None = "max",
            activation: str = "relu", seed: int | None = None) -> "GrowableNet":
        """A conv chain then a dense chain; see :func:`selfexpand.graph.conv_build.build_cnn`."""
        from .conv_build import build_cnn
        return build_cnn(cls, input_shape, conv, hidden, output, kernel=kernel, batch_norm=batch_norm,
                         pool=pool, activation=activation, seed=seed)

    @classmethod
    def from_module(cls, module: nn.Module, *, input_shape: Sequence[int] | None = None) -> "GrowableNet":
        """The growable network computing what ``module`` (an ``nn.Sequential`` of ``Linear``, ``Conv2d``,
        batch norm, activations, pooling, ``Flatten``, ``Dropout``) computes, in evaluation and training
        mode; ``input_shape=(C, H, W)`` is needed for conv modules. ``export()`` gives it back as plain
        torch. See :func:`selfexpand.graph.from_module.from_module`.

        Raises:
            ConfigError: a module the graph cannot express, named with its position and path.
        """
        from .from_module import from_module
        return from_module(cls, module, input_shape=input_shape)

    def new_layer_name(self) -> str:
        name = f"h{self.next_id}"
        self.next_id += 1
        return name

    def add_layer(self, name: str, layer: Layer, *, before: str) -> None:
        """Register ``layer`` and place it just before layer ``before`` in the topological order."""
        self.layers[name] = layer
        self.order.insert(self.order.index(before), name)
        self.invalidate()

    def add_connection(self, source: str, target: str, weight: torch.Tensor, **kw) -> str:
        """Register a connection ``source -> target`` and return its name: a :class:`ConvConnection`
        (keywords ``stride``, ``padding``) for a 4-D weight, else a dense one."""
        base = name = f"{source}_to_{target}"
        k = 1
        while name in self.connections:
            k += 1
            name = f"{base}_{k}"
        kind = ConvConnection if weight.dim() == 4 else Connection
        self.connections[name] = kind(source, target, weight, **kw)
        self.invalidate()
        return name

    # ------------------------------------------------------------------ queries
    def incoming(self, layer: str) -> list[Connection]:
        return [c for c in self.connections.values() if c.target == layer]

    def outgoing(self, layer: str) -> list[Connection]:
        return [c for c in self.connections.values() if c.source == layer]

    def connection_names(self, *, source: str | None = None, target: str | None = None) -> list[str]:
        return [n for n, c in self.connections.items()
                if (source is None or c.source == source) and (target is None or c.target == target)]

    def hidden_layers(self) -> list[str]:
        return self.order[1:-1]

    def is_chain(self) -> bool:
        """True when every layer reads exactly the whole previous layer and nothing else."""
        for prev, name in zip(self.order, self.order[1:]):
            inc = self.incoming(name)
            if len(inc) != 1 or inc[0].source != prev or inc[0].in_index is not None \
                    or inc[0].out_index is not None:
                return False
        return len(self.connections) == len(self.order) - 1

    def widths(self) -> list[int]:
        return [self.layers[n].size for n in self.order]

    # ------------------------------------------------------------------ forward
    def invalidate(self) -> None:
        """Rebuild the forward plan (call after any structural change). Building it here, not
        lazily in ``forward``, keeps ``forward`` free of branches that ``torch.compile`` would
        trace twice."""
        self._plan = self._build_plan()

    def _build_plan(self) -> list:
        plan = []
        for name in self.order[1:]:
            layer = self.layers[name]
            plan.append((name, layer, self.incoming(name), isinstance(layer, ConvLayer)))
        return plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[self.output_name]

    def layer_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every layer's output for input ``x``, by layer name, in topological order.

        The input layer's entry is the (flattened) front output; every other layer's is
        ``dropout(activation(norm(pre + bias)) * factor)`` (``Layer.finish``), what the layers it feeds read. The last entry is
        ``forward(x)``.
        """
        return self._run(x)

    def _run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The forward loop shared by :meth:`forward` and :meth:`layer_outputs`."""
        if self.front is not None:
            x = self.front(x)
        if x.dim() > 2 and self.input_shape is None:
            x = x.flatten(1)
        acts = {self.input_name: x}
        for name, layer, incoming, conv in self._plan:
            if conv:
                acts[name] = conv_layer_forward(layer, incoming, acts)
                continue
            if len(incoming) == 1 and incoming[0].in_index is None and incoming[0].out_index is None \
                    and not incoming[0].sparse:
                conn = incoming[0]
                source = acts[conn.source]
                if source.dim() > 2:  # the flatten boundary: channel-major, as nn.Flatten on NCHW
                    source = source.flatten(1)
                pre = F.linear(source, conn.effective_weight(), layer.bias)
            else:
                pre = layer.bias.expand(x.shape[0], -1)
                for conn in incoming:
                    y = conn.contribution(acts[conn.source])
                    pre = pre + y if conn.out_index is None else pre.index_add(1, conn.out_index, y)
            acts[name] = layer.finish(pre)  # batch norm, activation, modulator, dropout
        return acts

    # ------------------------------------------------------------------ counts, spec, export
    def counts(self) -> dict[str, int]:
        """``params``, ``weights_active``, ``stored_params``, ``front_params``, ``control_params``."""
        return count_params(self)

    @property
    def params(self) -> int:
        return self.counts()["params"]

    def spec(self) -> dict:
        return graph_spec(self)

    @classmethod
    def from_spec(cls, spec: dict, state_dict: dict | None = None) -> "GrowableNet":
        return graph_from_spec(spec, state_dict, cls)

    def export(self) -> nn.Module:
        """Plain PyTorch of the final size, with no masks or modulators, same outputs: an
        ``nn.Sequential`` for a chain, else a ``torch.fx.GraphModule`` of standard layers. Loading it
        needs only torch; it scripts, exports and converts to ONNX (``selfexpand.graph.export``)."""
        return export_graph(self)

    # ------------------------------------------------------------------ save, load
    def save(self, path) -> Path:
        """Write the network (spec and every tensor) to one safetensors file; see ``graph.saving``.

        Raises:
            ConfigError: a front or activation that a spec cannot name.
            CheckpointError: the file cannot be written.
        """
        return save_net(self, path)

    @classmethod
    def load(cls, path, *, device=None) -> "GrowableNet":
        """The network saved at ``path`` by :meth:`save`, exactly (grown marks and masks included).

        Raises:
            CheckpointError: the file is missing, damaged or not a network file (the message names it).
        """
        return load_net(path, cls, device=device)


def _uniform(shape, bound, gen) -> torch.Tensor:
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


def _linear_init(n_out: int, n_in: int, gen) -> torch.Tensor:
    """``nn.Linear``'s default: U(-1/sqrt(n_in), 1/sqrt(n_in))."""
    return _uniform((n_out, n_in), 1 / math.sqrt(n_in), gen)

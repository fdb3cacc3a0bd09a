"""A graph as plain JSON, and back: ``GrowableNet.from_spec(spec, state_dict)``.

The spec holds the structure (layers in topological order, their sizes, activations, modulators
and whether they carry ``grown`` marks, an absent key meaning not, as in older specs; the connections
with their shapes and whether they carry an index or a mask; the front by name); the state dict holds
every tensor (weights, biases, masks, index buffers, grown marks). This pair is the checkpoint format.

Conv graphs (``graph.conv``) add three keys, absent from dense specs: ``input_shape`` (``[C, H, W]``),
a conv layer's ``conv`` (``batch_norm``, ``pool``, ``pool_size``, ``eps``, ``momentum``; its batch-norm
statistics are in the state dict), a conv connection's ``stride`` and ``padding`` (its shape is 4-D), and
a dense connection reading a subset of a feature map's channels its ``channels_read``. A connection
stored sparse (``graph.sparse``) adds ``edges`` (its number of live edges; ``shape`` stays the logical
one), and a graph whose ``sparse_below`` is not the default writes it. A conv layer's
``conv`` holds ``affine`` / ``track_running_stats`` only where they are False.

Keys absent from older specs, written only where they hold something: a dense layer's ``norm`` (its
batch norm: ``eps``, ``momentum``, ``affine``, ``track_running_stats``), any layer's ``dropout`` (its
rate), and an activation with non-default settings written as ``{"type": name, **settings}``
(``graph.activations.activation_spec``).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError
from .activations import activation_spec, make_activation
from .conv import ConvConnection, ConvLayer
from .modulators import make_modulator
from .parts import Connection, Layer, norm_spec
from .sparse import SPARSE_BELOW

__all__ = ["SPEC_FORMAT", "graph_spec", "graph_from_spec", "FRONTS", "register_front", "make_front"]

SPEC_FORMAT = "selfexpand.graph/1"

FRONTS: dict[str, Callable[..., nn.Module]] = {}


def register_front(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make a fixed front nameable in specs: ``{"type": name, **kwargs}`` builds ``factory(**kwargs)``."""
    FRONTS[name] = factory


def make_front(spec: dict) -> nn.Module:
    kind = spec.get("type")
    if kind not in FRONTS:
        raise ConfigError(f"front type must be one of {sorted(FRONTS)}, got type={kind!r}")
    return FRONTS[kind](**{k: v for k, v in spec.items() if k != "type"})


def graph_spec(net) -> dict:
    """Plain JSON-able description of ``net``'s structure."""
    if net.front is not None and net.front_spec is None:
        raise ConfigError("the front has no front_spec; register it with register_front(name, factory)")
    layers = {}
    for name in net.order:
        layer = net.layers[name]
        entry = {"size": layer.size}
        if not layer.is_input:
            entry["activation"] = activation_spec(layer.activation)
            entry["modulator"] = None if layer.modulator is None else layer.modulator.spec()
            entry["grown"] = layer.grown is not None
            if isinstance(layer, ConvLayer):
                entry["conv"] = layer.conv_spec()
            elif layer.norm is not None:
                entry["norm"] = norm_spec(layer.norm)
            if layer.dropout:
                entry["dropout"] = layer.dropout
        layers[name] = entry
    connections = {}
    for name, c in net.connections.items():
        connections[name] = {
            "source": c.source,
            "target": c.target,
            "shape": list(c.shape),
            "in_index": c.in_index is not None,
            "out_index": c.out_index is not None,
            "masked": c.mask is not None,
            "provisional": c.provisional is not None,
        }
        if c.sparse:
            connections[name]["edges"] = int(c.weight.numel())
        if isinstance(c, ConvConnection):
            connections[name].update(stride=c.stride, padding=c.padding)
        elif c.in_index is not None and c.in_index.numel() != c.shape[1]:  # channels across a flatten
            connections[name]["channels_read"] = int(c.in_index.numel())
    extra = {} if getattr(net, "input_shape", None) is None else {"input_shape": list(net.input_shape)}
    if net.sparse_below != SPARSE_BELOW:
        extra["sparse_below"] = net.sparse_below
    return {
        **extra,
        "format": SPEC_FORMAT,
        "order": list(net.order),
        "input": net.input_name,
        "output": net.output_name,
        "next_id": net.next_id,
        "layers": layers,
        "connections": connections,
        "front": net.front_spec,
    }


def graph_from_spec(spec: dict, state_dict: dict | None, graph_class):
    """Rebuild a graph of ``graph_class`` (``GrowableNet``) from ``spec``; load ``state_dict``
    (strict) when given.

    Raises:
        ConfigError: the spec is not a valid graph description (the message names the field).
    """
    try:
        if spec.get("format") != SPEC_FORMAT:
            raise ConfigError(f"spec format must be {SPEC_FORMAT!r}, got format={spec.get('format')!r}")
        order, layers = spec["order"], spec["layers"]
        inp, out = spec["input"], spec["output"]
        front = make_front(spec["front"]) if spec.get("front") else None
        net = graph_class(int(layers[inp]["size"]), int(layers[out]["size"]), front=front,
                          front_spec=spec.get("front"), input_shape=spec.get("input_shape"))
        net.layers[out] = _layer(layers[out])
        for name in order:
            if name not in (inp, out):
                net.add_layer(name, _layer(layers[name]), before=out)
        if sorted(order) != sorted(net.order) or len(set(order)) != len(order):
            raise ConfigError(f"spec order {order} does not list the layers {sorted(layers)}")
        for name, c in spec["connections"].items():
            if c["source"] not in layers or c["target"] not in layers:
                raise ConfigError(f"connection {name!r} joins unknown layers {c['source']!r} -> {c['target']!r}")
            shape = [int(v) for v in c["shape"]]
            rows, cols = shape[:2]
            idx = torch.zeros(int(c.get("channels_read", cols)), dtype=torch.long) if c["in_index"] else None
            oidx = torch.zeros(rows, dtype=torch.long) if c["out_index"] else None
            mask = torch.ones(shape) if c["masked"] else None
            stored = shape
            if "edges" in c:  # sparse storage (graph.sparse): the state dict brings values and edges
                stored = [int(c["edges"])]
            prov = torch.zeros(stored, dtype=torch.bool) if c.get("provisional") else None
            kw = dict(in_index=idx, out_index=oidx, mask=mask, provisional=prov)
            if "edges" in c:
                kw.update(edge_index=torch.zeros(2, stored[0], dtype=torch.long), shape=shape)
            if "stride" in c:
                kw.update(stride=int(c["stride"]), padding=int(c["padding"]))
            kind = ConvConnection if len(shape) == 4 else Connection
            net.connections[name] = kind(c["source"], c["target"], torch.zeros(stored), **kw)
        net.next_id = int(spec["next_id"])
        net.sparse_below = float(spec.get("sparse_below", SPARSE_BELOW))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"spec is malformed: {type(exc).__name__}: {exc}") from exc
    net.invalidate()
    if state_dict is not None:
        net.load_state_dict(state_dict, strict=True)
    return net


def _layer(entry: dict) -> Layer:
    size = int(entry["size"])
    mod = entry.get("modulator")
    conv = entry.get("conv")
    dropout = entry.get("dropout", 0.0)
    if conv is not None:
        norm = {} if not conv["batch_norm"] else {
            "eps": float(conv["eps"]), "momentum": conv["momentum"], "affine": conv.get("affine", True),
            "track_running_stats": conv.get("track_running_stats", True)}
        layer = ConvLayer(size, make_activation(entry["activation"]), batch_norm=bool(conv["batch_norm"]),
                          pool=conv["pool"], pool_size=int(conv["pool_size"]), dropout=dropout, **norm)
    else:
        norm = entry.get("norm")
        norm = {} if norm is None else {"batch_norm": True, "eps": float(norm["eps"]), "momentum": norm["momentum"],
                                        "affine": bool(norm["affine"]),
                                        "track_running_stats": bool(norm["track_running_stats"])}
        layer = Layer(size, make_activation(entry["activation"]),
                      modulator=None if mod is None else make_modulator(mod, size), dropout=dropout, **norm)
    if entry.get("grown", False):  # a placeholder; the state dict brings the marks
        layer.grown = torch.zeros(size, dtype=torch.bool)
    return layer

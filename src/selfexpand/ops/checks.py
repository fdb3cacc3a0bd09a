"""Validation shared by the ops: every rule stated, every value echoed, nothing changed yet."""

from __future__ import annotations

import torch

from ..errors import ConfigError, GrowthError

__all__ = ["require_layer", "require_hidden", "require_connection", "require_tensor", "split_sources"]


def require_layer(net, name: str) -> None:
    if name not in net.layers:
        raise GrowthError(f"layer must be one of {list(net.order)}, got layer={name!r}")


def require_hidden(net, name: str) -> None:
    require_layer(net, name)
    if name in (net.input_name, net.output_name):
        raise GrowthError(f"layer must be a hidden layer {net.hidden_layers()}, got layer={name!r}")


def require_connection(net, name: str) -> None:
    if name not in net.connections:
        raise GrowthError(f"connection must be one of {list(net.connections)}, got connection={name!r}")


def require_tensor(name: str, value, shape: tuple[int, ...]) -> torch.Tensor:
    """``value`` as a tensor of exactly ``shape`` with finite entries."""
    if not torch.is_tensor(value):
        raise ConfigError(f"{name} must be a tensor of shape {shape}, got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise ConfigError(f"{name} must have shape {tuple(shape)}, got shape={tuple(value.shape)}")
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise ConfigError(f"{name} must be finite, got {int((~torch.isfinite(value)).sum())} non-finite entries")
    return value


def split_sources(net, layer: str, size: int, sources, noun: str) -> torch.Tensor:
    """The indices of the units (``noun``: units or channels) a Net2Net split copies, checked: 1 or more
    in ``[0, size)``, and no connection writing ``layer`` in part (a copy would miss that input)."""
    sources = torch.as_tensor(sources, dtype=torch.long).flatten()
    if sources.numel() == 0 or bool((sources < 0).any() | (sources >= size).any()):
        raise GrowthError(f"sources must be 1 or more {noun[:-1]} indices in [0, {size}) of layer {layer!r}, "
                          f"got sources={sources.tolist()}")
    partial = [n for n, c in net.connections.items() if c.target == layer and c.out_index is not None]
    if partial:
        raise GrowthError(f"layer {layer!r} is written in part by {partial}; a copy would miss that input")
    return sources

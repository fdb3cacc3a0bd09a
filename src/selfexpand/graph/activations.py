"""Elementwise activations by name, so a graph's spec stays plain JSON.

Any elementwise ``nn.Module`` can be a layer's activation. Those listed in ``ACTIVATIONS`` can be
named in a spec; a learnable one keeps its coefficients as parameters (counted in ``params``).
Later issues register more (SENN's rational activation) with :func:`register_activation`.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import ConfigError

__all__ = ["ACTIVATIONS", "register_activation", "make_activation", "activation_name"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "identity": nn.Identity,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
}


def register_activation(name: str, factory: Callable[[], nn.Module]) -> None:
    """Make an activation class nameable in specs (``factory()`` builds a fresh instance)."""
    ACTIVATIONS[name] = factory


def make_activation(name: str | nn.Module) -> nn.Module:
    """Build the activation called ``name`` (a module passes through unchanged).

    Raises:
        ConfigError: unknown name; the message lists the known ones.
    """
    if isinstance(name, nn.Module):
        return name
    if name not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {sorted(ACTIVATIONS)}, got activation={name!r}")
    return ACTIVATIONS[name]()


def activation_name(module: nn.Module) -> str:
    """The registered name of ``module``'s class.

    Raises:
        ConfigError: the class was never registered, so a spec could not name it.
    """
    for name, factory in ACTIVATIONS.items():
        if isinstance(factory, type) and type(module) is factory:
            return name
        if getattr(module, "spec_name", None) == name:
            return name
    raise ConfigError(
        f"activation {type(module).__name__} is not registered; call register_activation(name, cls)"
    )

"""Elementwise activations by name, so a graph's spec stays plain JSON.

Any elementwise ``nn.Module`` can be a layer's activation. Those listed in ``ACTIVATIONS`` can be
named in a spec; a learnable one keeps its coefficients as parameters (counted in ``params``).
Later issues register more (SENN's rational activation) with :func:`register_activation`.

A torch activation with settings (``nn.LeakyReLU``'s ``negative_slope``, ``nn.GELU``'s
``approximate``, ``nn.Softplus``'s ``beta`` and ``threshold``, ``nn.ELU``'s ``alpha``) is named in a
spec by :func:`activation_spec`: its name when every setting is the default, else
``{"type": name, setting: value, ...}``; :func:`make_activation` builds either form.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import ConfigError

__all__ = ["ACTIVATIONS", "register_activation", "make_activation", "activation_name", "activation_spec"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "identity": nn.Identity,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
    "silu": nn.SiLU,
    "elu": nn.ELU,
}

#: the settings of a torch activation that a spec records (where not the default)
SETTINGS: dict[type, tuple[str, ...]] = {
    nn.LeakyReLU: ("negative_slope",),
    nn.GELU: ("approximate",),
    nn.Softplus: ("beta", "threshold"),
    nn.ELU: ("alpha",),
}


def register_activation(name: str, factory: Callable[[], nn.Module]) -> None:
    """Make an activation class nameable in specs (``factory()`` builds a fresh instance)."""
    ACTIVATIONS[name] = factory


def make_activation(name: str | dict | nn.Module) -> nn.Module:
    """Build the activation called ``name``, or described by ``{"type": name, **settings}`` (a module
    passes through unchanged).

    Raises:
        ConfigError: unknown name (the message lists the known ones) or settings it does not take.
    """
    if isinstance(name, nn.Module):
        return name
    settings = {}
    if isinstance(name, dict):
        settings = {k: v for k, v in name.items() if k != "type"}
        name = name.get("type")
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {sorted(ACTIVATIONS)}, got activation={name!r}")
    factory = ACTIVATIONS[name]
    allowed = SETTINGS.get(factory, ()) if isinstance(factory, type) else ()
    if set(settings) - set(allowed):
        raise ConfigError(f"activation {name!r} takes the settings {list(allowed)}, got {sorted(settings)}")
    return factory(**settings)


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


def activation_spec(module: nn.Module) -> str | dict:
    """``module``'s name, or ``{"type": name, **settings}`` where a setting of :data:`SETTINGS`
    differs from the default (so the spec rebuilds the same function).

    Raises:
        ConfigError: the class was never registered.
    """
    name = activation_name(module)
    keys = SETTINGS.get(type(module), ())
    if not keys:
        return name
    default = type(module)()
    settings = {k: getattr(module, k) for k in keys if getattr(module, k) != getattr(default, k)}
    return {"type": name, **settings} if settings else name

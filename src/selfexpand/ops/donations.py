"""SWE's weight donations: a temporary ``torch.nn.utils.parametrize`` on a layer's incoming weights.

After ``add_units`` appended ``n_new`` units to a layer of ``n_old``, :func:`attach_donations` couples
them to the existing units. For every new unit ``j`` a trainable tensor ``D_j`` holds one row per
existing unit (``n_old x fan_in``, and ``n_old`` for the bias), and the effective values are

    existing unit i:  w_i - sum_j D_j[i]        new unit j:  w_j + sum_i D_j[i]

so each existing unit hands part of its weight vector to each new unit and the layer's total incoming
weight is conserved (Shared-Weights Extender, ALGORITHMS.md §2).

A conv layer (``graph.conv``): a unit is a channel and its "row" is its incoming kernel
``(n_in, kh, kw)`` in each conv connection into the layer, so ``D_j`` is ``n_old x n_in x kh x kw``
per connection (and ``n_old`` for the bias): existing channel ``i`` uses ``K_i - sum_j D_j[i]``, new
channel ``j`` uses ``K_j + sum_i D_j[i]``, entry by entry (kernel position by kernel position), and
the layer's total incoming kernel is conserved. Nothing is donated on the outgoing side (kernels out
of the layer, or the ``P`` position columns of a dense reader at the flatten boundary), as for a
dense layer's outgoing columns; nor on the layer's batch norm. :func:`bake_donations` writes the
effective values into the weights and drops the donations. The stored weights themselves do not
change in between; whoever trains the donations decides what else trains.

The donation tensors hold ``n_new * n_old * fan_in`` entries per connection (plus their optimizer
state): :func:`attach_donations` refuses a request above ``max_entries`` before changing anything.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import GrowthError
from ..validators import Number, Optional, number, positive_int
from .checks import require_hidden
from .event import GrowthEvent
from .optimizer_state import carry_state
from .storage import on_dense_storage

__all__ = ["Donation", "DEFAULT_MAX_DONATION_ENTRIES", "check_donation_bound", "attach_donations",
           "bake_donations", "donated_modules"]

# 2**26 float32 entries = 256 MiB for the donations, about three times that with Adam's two moments.
DEFAULT_MAX_DONATION_ENTRIES = 2 ** 26


class Donation(nn.Module):
    """Parametrization ``value + [-sum_j D_j ; sum_i D_j[i]]`` (rows: the old units, then the new; a
    row is a weight row, a conv kernel ``(n_in, kh, kw)`` or a bias entry)."""

    def __init__(self, n_new: int, n_old: int, rest: tuple[int, ...], std: float, generator, like: torch.Tensor):
        super().__init__()
        noise = torch.randn((n_new, n_old, *rest), generator=generator, dtype=torch.float64) * std
        self.donation = nn.Parameter(noise.to(device=like.device, dtype=like.dtype))

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        d = self.donation
        return value + torch.cat([-d.sum(0), d.sum(1)], 0)


def _incoming(net, layer: str) -> list:
    return [c for c in net.connections.values() if c.target == layer and c.out_index is None]


def check_donation_bound(net, layer: str, n_new: int, max_entries: int, *, n_old: int | None = None) -> None:
    """Refuse donations over ``max_entries`` for ``n_new`` units of ``layer`` (``n_old`` existing ones,
    default the layer's current size: the check before ``add_units``).

    Raises:
        GrowthError: naming the entries, the bound and the setting ``max_donation_entries``.
    """
    n_old = net.layers[layer].size if n_old is None else n_old
    fan_in = sum(c.weight[0].numel() for c in _incoming(net, layer))  # a conv row: n_in x kh x kw
    entries = n_new * n_old * (fan_in + 1)
    if entries > max_entries:
        raise GrowthError(
            f"donations for {n_new} new units of layer {layer!r} ({n_old} existing units, fan-in {fan_in}) need "
            f"{entries:,} entries, above the bound of {max_entries:,} (max_donation_entries); raise it with "
            f"--set max_donation_entries=N (memory: about 16 bytes per entry with Adam) or grow fewer units per step")


def donated_modules(net, layer: str) -> list[tuple[nn.Module, str]]:
    """The ``(module, tensor name)`` pairs of ``layer`` that carry a donation right now."""
    out = [(c, "weight") for c in _incoming(net, layer) if parametrize.is_parametrized(c, "weight")]
    target = net.layers[layer]
    if parametrize.is_parametrized(target, "bias"):
        out.append((target, "bias"))
    return out


@on_dense_storage
def attach_donations(net, layer: str, n_new: int, *, std: float = 1e-4, generator: torch.Generator | None = None,
                     optimizer=None, max_entries: int = DEFAULT_MAX_DONATION_ENTRIES,
                     lr_scale: float | None = None) -> list[nn.Parameter]:
    """Couple the last ``n_new`` units of hidden ``layer`` to the others through donations ``N(0, std^2)``.

    The donation parameters join ``optimizer`` with fresh state: in the group of the weight they
    modify, or, with ``lr_scale``, in a group of their own with that group's settings and
    ``lr * lr_scale`` (removed again by :func:`bake_donations`). Returns them.

    Raises:
        ConfigError: ``n_new`` or ``max_entries`` not a positive integer, ``std`` not a finite
            number >= 0, or ``lr_scale`` neither None nor a finite number > 0.
        GrowthError: not a hidden layer, ``n_new`` not below the layer's size, donations already
            attached, or more than ``max_entries`` donation entries (the message names the bound and
            the setting ``max_donation_entries`` that raises it). Nothing is changed then.
    """
    require_hidden(net, layer)
    positive_int("n_new", n_new)
    std = number("std", std, 0)
    positive_int("max_entries", max_entries)
    Optional(Number(0, low_open=True))("lr_scale", lr_scale)
    target = net.layers[layer]
    n_old = target.size - n_new
    if n_old < 1:
        raise GrowthError(f"n_new must be smaller than the size of layer {layer!r} ({target.size}), got n_new={n_new}")
    if donated_modules(net, layer):
        raise GrowthError(f"layer {layer!r} already carries donations; bake them first")
    check_donation_bound(net, layer, n_new, max_entries, n_old=n_old)
    incoming = _incoming(net, layer)
    params = []
    for conn in incoming:
        donation = Donation(n_new, n_old, tuple(conn.shape[1:]), std, generator, conn.weight)
        parametrize.register_parametrization(conn, "weight", donation)
        params.append((donation.donation, conn.parametrizations.weight.original))
    donation = Donation(n_new, n_old, (), std, generator, target.bias)
    parametrize.register_parametrization(target, "bias", donation)
    params.append((donation.donation, target.parametrizations.bias.original))
    if optimizer is not None and lr_scale is not None:
        group = next(g for g in optimizer.param_groups if any(p is params[0][1] for p in g["params"]))
        settings = {k: v for k, v in group.items() if k != "params"}
        optimizer.add_param_group({**settings, "params": [p for p, _ in params], "lr": group["lr"] * lr_scale,
                                   "donations": True})
    else:
        carry_state(optimizer, [], added=params)
    net.invalidate()
    return [p for p, _ in params]


@torch.no_grad()
@on_dense_storage
def bake_donations(net, layer: str, *, optimizer=None) -> GrowthEvent:
    """Write the effective (donated) values of ``layer`` into its weights and drop the donations.

    The weight and bias parameters keep their identity (and their optimizer state); the donation
    parameters leave ``optimizer``.

    Raises:
        GrowthError: ``layer`` carries no donations.
    """
    require_hidden(net, layer)
    modules = donated_modules(net, layer)
    if not modules:
        raise GrowthError(f"layer {layer!r} carries no donations to bake")
    start = time.perf_counter()
    params_before = net.counts()["params"]
    removed = []
    for module, name in modules:
        value = getattr(module, name).detach().clone()
        removed += [m.donation for m in module.parametrizations[name] if isinstance(m, Donation)]
        parametrize.remove_parametrizations(module, name, leave_parametrized=False)
        getattr(module, name).copy_(value)
    carry_state(optimizer, [], removed=removed)
    if optimizer is not None:
        optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"] or not g.get("donations")]
    net.invalidate()
    return GrowthEvent(kind="bake_donations", site=layer, params_before=params_before,
                       params_after=net.counts()["params"], seconds=time.perf_counter() - start,
                       details={"donation_entries": int(sum(p.numel() for p in removed))})

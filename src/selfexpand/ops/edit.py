"""The one place that swaps tensors of a graph: an ``Edit`` collects the replacements an op makes
and, at ``commit``, hands them to the optimizer carry-over and times the event.

Ops validate everything before they open an ``Edit``; the edit steps themselves cannot fail on
valid input, so a failing op leaves graph and optimizer as they were.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from .event import GrowthEvent
from .optimizer_state import carry_state, resize_like

__all__ = ["Edit", "arange_with_new"]


def arange_with_new(n_old: int, n_new: int, device=None) -> torch.Tensor:
    """Sources ``[0, ..., n_old - 1, -1 x n_new]`` (old entries first, then new ones)."""
    return torch.cat([torch.arange(n_old, device=device),
                      torch.full((n_new,), -1, dtype=torch.long, device=device)])


class Edit:
    """A transaction of tensor replacements on ``net`` with optimizer carry-over."""

    def __init__(self, net, optimizer, kind: str, site: str):
        self.net, self.optimizer = net, optimizer
        self.kind, self.site = kind, site
        self.start = time.perf_counter()
        self.params_before = net.counts()["params"]
        self.replaced: list = []
        self.added: list = []
        self.removed: list = []

    def replace(self, module: nn.Module, attr: str, value: torch.Tensor, sources: tuple) -> None:
        """Replace parameter ``module.attr`` by ``value``; ``sources`` maps new entries to old ones."""
        old = getattr(module, attr)
        new = nn.Parameter(value.detach(), requires_grad=old.requires_grad)
        setattr(module, attr, new)
        if attr == "weight" and hasattr(module, "renew_layout"):  # a connection's entries now mean other edges
            module.renew_layout()
        self.replaced.append((old, new, tuple(s.to(value.device) for s in sources)))

    def add_param(self, param: nn.Parameter, sibling: nn.Parameter | None) -> None:
        self.added.append((param, sibling))

    def remove_param(self, param: nn.Parameter) -> None:
        self.removed.append(param)

    def resize_modulator(self, layer, keep: torch.Tensor, n_new: int) -> None:
        """Resize ``layer.modulator`` and carry the state of its per-unit parameters."""
        if layer.modulator is None:
            return
        before = dict(layer.modulator.named_parameters())
        layer.modulator.resize(keep, n_new)
        sources = torch.cat([keep, torch.full((n_new,), -1, dtype=torch.long, device=keep.device)])
        for name, new in layer.modulator.named_parameters():
            old = before.get(name)
            if old is not None and new is not old:
                self.replaced.append((old, new, (sources,)))

    def resize_norm(self, layer, index: torch.Tensor) -> None:
        """Resize a layer's batch norm (a conv layer's ``BatchNorm2d``, a dense layer's ``BatchNorm1d``)
        to units ``index`` (old unit per new one, -1: new).

        Affine weight and bias (if any) are replaced (optimizer state carried); a new unit gets weight
        1, bias 0, running mean 0, running variance 1 (``nn.BatchNorm``'s start); old units keep
        their values and statistics exactly. Nothing happens for a layer without batch norm."""
        norm = getattr(layer, "norm", None)
        if norm is None:
            return
        index = index.to(layer.bias.device)
        for attr, fill in (("weight", 1.0), ("bias", 0.0)):
            if getattr(norm, attr) is not None:
                self.replace(norm, attr, resize_like(getattr(norm, attr).detach(), (index,), fill), (index,))
        if norm.running_mean is not None:
            norm.running_mean = resize_like(norm.running_mean, (index,), 0.0)
            norm.running_var = resize_like(norm.running_var, (index,), 1.0)
        norm.num_features = int(index.numel())

    @staticmethod
    def resize_grown(layer, keep: torch.Tensor, n_new: int) -> None:
        """Keep the ``grown`` marks of units ``keep`` (in that order) and mark ``n_new`` appended
        units as grown. A layer with no marks (no new unit) keeps none when it only loses units."""
        if layer.grown is None:
            if n_new == 0:
                return
            old = torch.zeros(keep.numel(), dtype=torch.bool, device=keep.device)
        else:
            old = layer.grown[keep.to(layer.grown.device)]
        layer.grown = torch.cat([old, torch.ones(n_new, dtype=torch.bool, device=old.device)])

    def commit(self, **counts) -> GrowthEvent:
        carry_state(self.optimizer, self.replaced, self.added, self.removed)
        self.net.invalidate()
        details = counts.pop("details", {})
        return GrowthEvent(
            kind=self.kind, site=self.site, params_before=self.params_before,
            params_after=self.net.counts()["params"],
            seconds=time.perf_counter() - self.start, details=details, **counts,
        )

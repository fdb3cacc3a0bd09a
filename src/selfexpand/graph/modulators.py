"""Unit modulators: a per-unit factor that multiplies a layer's outputs.

A modulator is an ``nn.Module`` whose ``forward()`` returns a factor of shape ``(n_units,)``.
SVoD's gates ``(1 + g)``, the size weight's ``theta(N - m + 1)`` and the controller's mask are
modulators. A unit whose factor is 0 is not live (DESIGN.md, counts). When a layer gains or loses
units, the graph calls ``resize(keep, n_new)``. Modulator parameters are growth-control parameters
(``control_params``), never ``params``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["UnitModulator", "GateModulator", "MODULATORS", "register_modulator", "make_modulator"]


class UnitModulator(nn.Module):
    """Base class. Subclasses implement ``forward() -> (n_units,)`` and ``resize``."""

    spec_name = "base"

    def resize(self, keep: torch.Tensor, n_new: int) -> None:  # pragma: no cover - abstract
        """Keep units ``keep`` (in that order) and append ``n_new`` units at their neutral value."""
        raise NotImplementedError

    def spec(self) -> dict:
        """Plain JSON description (sizes come from the layer)."""
        return {"type": self.spec_name}


class GateModulator(UnitModulator):
    """Factor ``1 + g`` with a trainable gate ``g`` per unit, starting at 0 (SVoD)."""

    spec_name = "gate"

    def __init__(self, n_units: int):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(n_units))

    def forward(self) -> torch.Tensor:
        return 1.0 + self.gate

    def resize(self, keep: torch.Tensor, n_new: int) -> None:
        old = self.gate.detach()
        new = torch.cat([old[keep], old.new_zeros(n_new)])
        self.gate = nn.Parameter(new, requires_grad=self.gate.requires_grad)


MODULATORS: dict[str, type[UnitModulator]] = {"gate": GateModulator}


def register_modulator(cls: type[UnitModulator]) -> type[UnitModulator]:
    """Class decorator: make a modulator nameable in specs by its ``spec_name``."""
    MODULATORS[cls.spec_name] = cls
    return cls


def make_modulator(spec: dict, n_units: int) -> UnitModulator:
    """Rebuild a modulator from its spec (state comes from the state dict afterwards)."""
    kind = spec.get("type")
    if kind not in MODULATORS:
        raise ConfigError(f"modulator type must be one of {sorted(MODULATORS)}, got type={kind!r}")
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    return MODULATORS[kind](n_units, **kwargs)


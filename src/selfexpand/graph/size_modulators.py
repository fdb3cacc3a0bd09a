"""Size by gradient descent: the size weight's smooth step and the controller's mask (ALGORITHMS.md §4).

Two unit modulators whose one trainable scalar sets how many units of a layer take part, and whose
size loss (:meth:`auxiliary_loss`, added to the task loss by the trainer) pulls that scalar to a target:

- :class:`SizeWeightModulator`: unit ``m = 1..n`` is multiplied by ``theta(N - m + 1)``, with
  ``theta(u) = 0 (u < 0); sin^2(pi u / (2 dn)) (0 <= u <= dn); 1 (u > dn)``; size loss
  ``lambda (N - N_inf)^2`` (arXiv 2501.18012, method 1).
- :class:`ControllerMaskModulator`: a controller output ``c`` gives ``s = sin^2(pi c / 2)``; with
  ``k = floor(s n)`` the mask is 1 for the first ``k`` units, ``s n - k`` for the next, 0 after;
  size loss ``size_weight (c - 1)^2`` (method 2).

A unit whose factor is exactly 0 is not live (DESIGN.md counts), so ``params`` counts only the units
that take part; the scalar itself is a ``control_params`` entry. Units are gated by *position*:
``resize`` keeps the scalar, and units appended by growth ops come last in the order of gating.

The reference code's feeding of ``N`` (or ``c``) as one more input of every hidden unit is not part
of these modulators (a modulator only multiplies its layer's outputs); the batched sweep engine
offers it as the option ``control_input`` (``selfexpand.sweep.engine``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..validators import boolean, number
from .modulators import UnitModulator, register_modulator

__all__ = ["smooth_step", "controller_mask", "SizeWeightModulator", "ControllerMaskModulator"]


def smooth_step(u: torch.Tensor, dn: float = 1.0) -> torch.Tensor:
    """``theta(u)``: 0 for ``u <= 0``, ``sin^2(pi u / (2 dn))`` on ``[0, dn]``, 1 for ``u >= dn``.

    Exactly 0 below the ramp and exactly 1 above it (so unit liveness is exact); differentiable inside.
    """
    return torch.sin(torch.clamp(u, 0.0, dn) * (math.pi / (2.0 * dn))) ** 2


def controller_mask(c: torch.Tensor, n_units: int) -> torch.Tensor:
    """The per-unit mask for controller output ``c`` (any leading shape ``(...,)``): ``(..., n_units)``.

    ``s = sin^2(pi c / 2)``; unit ``j`` (from 0) gets ``clamp(s n - j, 0, 1)``: 1 for ``j < k``,
    ``s n - k`` for ``j = k = floor(s n)``, 0 after. The gradient reaches ``c`` through the
    fractional unit.
    """
    s = torch.sin(c * (math.pi / 2.0)) ** 2
    j = torch.arange(n_units, dtype=s.dtype, device=s.device)
    return torch.clamp(s.unsqueeze(-1) * n_units - j, 0.0, 1.0)


@register_modulator
class SizeWeightModulator(UnitModulator):
    """Gate unit ``m`` (from 1) by ``theta(N - m + 1)`` with a trainable size weight ``N``.

    Args:
        n_units: the layer's size (``n_max``).
        dn: width of the smooth step's ramp (> 0).
        n_inf: the size the size loss pulls ``N`` to.
        size_lambda: strength ``lambda`` of the size loss ``lambda (N - N_inf)^2`` (>= 0).
        n_start: initial ``N`` (0: the growing run; ``n_inf``: the paper's fixed-size control).

    Raises:
        ConfigError: a value breaks the rule stated.
    """

    spec_name = "size_weight"

    def __init__(self, n_units: int, dn: float = 1.0, n_inf: float = 5.0, size_lambda: float = 0.1,
                 n_start: float = 0.0):
        super().__init__()
        self.dn = number("dn", dn, 0, low_open=True)
        self.n_inf = number("n_inf", n_inf)
        self.size_lambda = number("size_lambda", size_lambda, 0)
        self.size = nn.Parameter(torch.tensor(number("n_start", n_start)))
        self.register_buffer("offsets", torch.arange(int(n_units), dtype=torch.float32), persistent=False)

    def forward(self) -> torch.Tensor:
        return smooth_step(self.size - self.offsets.to(self.size.dtype), self.dn)

    def auxiliary_loss(self) -> torch.Tensor:
        """``lambda (N - N_inf)^2``, added to the task loss by the trainer."""
        return self.size_lambda * (self.size - self.n_inf) ** 2

    def live_count(self) -> int:
        """Units whose factor is above 0."""
        return int((self.forward().detach() > 0).sum())

    def resize(self, keep: torch.Tensor, n_new: int) -> None:
        n = int(keep.numel()) + int(n_new)
        self.offsets = torch.arange(n, dtype=torch.float32, device=self.size.device)

    def spec(self) -> dict:
        return {"type": self.spec_name, "dn": self.dn, "n_inf": self.n_inf, "size_lambda": self.size_lambda}

    def extra_repr(self) -> str:
        return f"N={float(self.size.detach()):.4f}, n_inf={self.n_inf}, dn={self.dn}, lambda={self.size_lambda}"


@register_modulator
class ControllerMaskModulator(UnitModulator):
    """Mask units by a controller output ``c`` (see :func:`controller_mask`), size loss ``w (c - 1)^2``.

    The controller is one trainable scalar, ``c``, started near 0 (``c_start`` 1e-5, the paper's
    value): the growing run begins with no unit taking part.

    Args:
        n_units: the layer's size (``n_max``).
        size_weight: the size loss weight ``w`` (the paper's 0.32, >= 0).
        c_start: initial controller output.
        reference_defects: reproduce the reference code: ``c`` is detached from the task (only the
            size loss moves it) and the mask is one scalar ``s`` for the whole layer. Off by
            default: the task loss reaches ``c`` and the mask is per unit.

    Raises:
        ConfigError: a value breaks the rule stated.
    """

    spec_name = "controller_mask"

    def __init__(self, n_units: int, size_weight: float = 0.32, c_start: float = 1e-5,
                 reference_defects: bool = False):
        super().__init__()
        self.reference_defects = boolean("reference_defects", reference_defects)
        self.n_units = int(n_units)
        self.size_weight = number("size_weight", size_weight, 0)
        self.control = nn.Parameter(torch.tensor(number("c_start", c_start)))

    def forward(self) -> torch.Tensor:
        if self.reference_defects:
            s = torch.sin(self.control.detach() * (math.pi / 2.0)) ** 2
            return s.expand(self.n_units)
        return controller_mask(self.control, self.n_units)

    def auxiliary_loss(self) -> torch.Tensor:
        """``size_weight (c - 1)^2``, added to the task loss by the trainer."""
        return self.size_weight * (self.control - 1.0) ** 2

    def live_count(self) -> int:
        """Units whose factor is above 0 (the fractional unit included)."""
        return int((self.forward().detach() > 0).sum())

    def resize(self, keep: torch.Tensor, n_new: int) -> None:
        self.n_units = int(keep.numel()) + int(n_new)

    def spec(self) -> dict:
        return {"type": self.spec_name, "size_weight": self.size_weight,
                "reference_defects": self.reference_defects}

    def extra_repr(self) -> str:
        return (f"c={float(self.control.detach()):.4f}, size_weight={self.size_weight}, "
                f"reference_defects={self.reference_defects}")

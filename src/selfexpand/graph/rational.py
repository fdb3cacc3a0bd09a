"""SENN's learnable rational activation (ALGORITHMS.md §3, arXiv 2307.04526), named ``"rational"``.

``phi(x) = [(2 v x + c) / (1 + x^2) + l x] / sqrt(v^2 + c^2 + l^2)``

with three learnable scalars ``(v, c, l)``, the identity at ``v = c = 0, l = 1``. SENN inserts a
layer with this activation at identity, so depth growth preserves the function, and training then
bends it. The coefficients are one ``nn.Parameter`` of three values, ``coefficients = (v, c, l)``,
**per layer, not per unit**: the same three numbers act on every unit, so adding or removing units
needs no change to the activation (and no optimizer-state resize). They count in ``params``.

**Guard.** The norm ``sqrt(v^2 + c^2 + l^2)`` is clamped below at ``NORM_FLOOR`` (1e-12), so the
output stays finite (it tends to 0) as all three coefficients approach 0. For ``|x| > 1`` the
rational term is computed in ``1 / x`` (``x / (1 + x^2) = u / (1 + u^2)``, ``1 / (1 + x^2) = u^2 /
(1 + u^2)``, ``u = 1 / x``), so value and gradients stay finite for every finite ``x``, even where
``x^2`` would overflow (the rational term then tends to 0 and ``phi(x)`` to ``l x / norm``).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ..errors import ConfigError
from .activations import register_activation
from .plain import trace_module

__all__ = ["RationalActivation", "NORM_FLOOR", "rational"]

#: The smallest value the coefficient norm ``sqrt(v^2 + c^2 + l^2)`` is allowed to take.
NORM_FLOOR = 1e-12


def rational(x: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """``[(2 v x + c) / (1 + x^2) + l x] / max(sqrt(v^2 + c^2 + l^2), NORM_FLOOR)``, elementwise.

    Args:
        x: any tensor.
        coefficients: ``(v, c, l)``, shape ``(3,)``.

    Returns:
        A tensor shaped like ``x``.
    """
    v, c, l = coefficients.unbind()
    norm = torch.sqrt(torch.clamp(coefficients.square().sum(), min=NORM_FLOOR ** 2))
    # with s = x (|x| <= 1) or s = 1/x (|x| > 1): x / (1 + x^2) = s / (1 + s^2) and
    # 1 / (1 + x^2) = 1 / (1 + s^2) or s^2 / (1 + s^2), so no square overflows, forward or backward
    large = x.abs() > 1
    s = torch.where(large, 1.0 / torch.where(large, x, torch.ones_like(x)), x)
    inverse = 1.0 / (1.0 + s * s)
    odd = s * inverse
    even = torch.where(large, s * s, torch.ones_like(s)) * inverse
    return (2.0 * v * odd + c * even + l * x) / norm


class RationalActivation(nn.Module):
    """SENN's rational activation with one ``(v, c, l)`` per layer (see module docstring).

    Args:
        v, c, l: the initial coefficients; the default ``(0, 0, 1)`` is the identity.
        device, dtype: of the coefficients (default: torch's default dtype, on the CPU).

    Raises:
        ConfigError: a coefficient that is not a finite number.
    """

    spec_name = "rational"

    def __init__(self, v: float = 0.0, c: float = 0.0, l: float = 1.0, *,  # noqa: E741 (the paper's name)
                 device=None, dtype=None):
        super().__init__()
        values = _check_coefficients(v, c, l)
        self.coefficients = nn.Parameter(torch.tensor(values, device=device,
                                                      dtype=dtype or torch.get_default_dtype()))

    @property
    def v(self) -> float:
        return float(self.coefficients[0].detach())

    @property
    def c(self) -> float:
        return float(self.coefficients[1].detach())

    @property
    def l(self) -> float:  # noqa: E743 (the paper's name)
        return float(self.coefficients[2].detach())

    @torch.no_grad()
    def set_coefficients(self, v: float, c: float, l: float) -> None:  # noqa: E741
        """Set ``(v, c, l)`` in place (the parameter stays the same tensor, so an optimizer keeps it).

        Raises:
            ConfigError: a coefficient that is not a finite number.
        """
        values = _check_coefficients(v, c, l)
        self.coefficients.copy_(torch.tensor(values, dtype=self.coefficients.dtype))

    def reset_parameters(self) -> None:
        """Back to the identity ``(0, 0, 1)`` (what a freshly initialised layer has)."""
        self.set_coefficients(0.0, 0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rational(x, self.coefficients)

    def plain(self) -> nn.Module:
        """A copy traced into a ``torch.fx.GraphModule`` (for ``GrowableNet.export``): the same
        arithmetic as torch operations, the coefficients a parameter ``coefficients`` of the copy."""
        return trace_module(copy.deepcopy(self), "RationalActivation")

    def extra_repr(self) -> str:
        return f"v={self.v:.4g}, c={self.c:.4g}, l={self.l:.4g}"


def _check_coefficients(v, c, l) -> tuple[float, float, float]:  # noqa: E741
    values = {"v": v, "c": c, "l": l}
    for name, value in values.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise ConfigError(f"rational activation coefficient {name} must be a finite number, "
                              f"got {name}={value!r}")
    return float(v), float(c), float(l)


register_activation("rational", RationalActivation)

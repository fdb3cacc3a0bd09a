"""Inactivity analysis: dead, silent and inactive units per hidden layer (DESIGN.md glossary).

- **Dead**: the unit's output ``activation(pre + bias) * factor`` has a standard deviation (over the
  rows of ``x``, population, accumulated in float64) below ``1e-6``; for a ``nn.ReLU`` layer, being
  exactly 0 on at least 99 % of the rows also counts.
- **Silent**: the unit's outgoing norm ``|factor_u| * sqrt(sum_c sum_r (W_c * M_c)[r, j]^2)`` over
  every column ``j`` of every connection ``c`` that reads unit ``u`` is below 1 % of the median (the
  interpolated 50 % quantile) of its layer's outgoing norms. A unit whose outgoing norm is exactly 0
  (no connection reads it, all its edges masked or 0, or factor 0) is silent even when the median is
  0, where the relative rule alone would call nothing silent.
- **Inactive**: dead or silent. **New units**: the units marked ``grown`` (added by growth during the
  run, see :class:`~selfexpand.graph.parts.Layer`).

Conv layers (``graph.conv``): a channel is a unit; its output's spread and zero fraction are taken
over examples *and* positions (a dead channel is zero or constant over the validation set
everywhere), and its outgoing norm sums every kernel entry and every position column that reads it.

Only hidden layers are analysed. Everything is tensor work per layer and per connection, never per
unit; the outputs are streamed in batches of ``batch_size`` rows, so memory does not grow with ``x``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..validators import positive_int

__all__ = ["DEAD_STD", "DEAD_ZERO_FRACTION", "SILENT_FRACTION", "LAYER_KEYS", "UnitActivity",
           "output_spread", "outgoing_norms", "unit_activity", "inactivity", "inactivity_fields"]

DEAD_STD = 1e-6
DEAD_ZERO_FRACTION = 0.99
SILENT_FRACTION = 0.01

LAYER_KEYS = ("units", "dead", "silent", "inactive", "new_units", "new_dead", "new_silent", "new_inactive")


@dataclass
class UnitActivity:
    """Boolean ``(size,)`` flags of one hidden layer's units, and the measures behind them."""

    new: torch.Tensor
    dead: torch.Tensor
    silent: torch.Tensor
    std: torch.Tensor
    zero_fraction: torch.Tensor
    outgoing_norm: torch.Tensor

    @property
    def inactive(self) -> torch.Tensor:
        return self.dead | self.silent

    def counts(self) -> dict[str, int]:
        """The :data:`LAYER_KEYS` of this layer as plain ints."""
        new, inactive = self.new, self.inactive
        return {"units": int(new.numel()), "dead": int(self.dead.sum()), "silent": int(self.silent.sum()),
                "inactive": int(inactive.sum()), "new_units": int(new.sum()),
                "new_dead": int((self.dead & new).sum()), "new_silent": int((self.silent & new).sum()),
                "new_inactive": int((inactive & new).sum())}


def _check(x, batch_size) -> None:
    positive_int("batch_size", batch_size)
    if not torch.is_tensor(x) or x.dim() < 1 or x.shape[0] < 1:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ConfigError(f"x must be a tensor with at least one row, got {shape}")


@torch.no_grad()
def output_spread(net, x: torch.Tensor,
                  batch_size: int = 4096) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per hidden layer: ``(std, zero_fraction)`` of each unit's output over the rows of ``x``.

    The network runs in eval mode (restored after). Each batch's mean and sum of squared deviations
    are taken in float64 and merged with Chan et al.'s pairwise update, so the result does not depend
    on ``batch_size`` beyond rounding, and a constant output (any float32 value) has a spread of
    exactly 0. The column sums are products with a ones vector: on CPU several times faster than a
    reduction over rows.

    Raises:
        ConfigError: ``batch_size`` not a positive integer, or ``x`` without rows.
    """
    _check(x, batch_size)
    hidden = net.hidden_layers()
    count = dict.fromkeys(hidden, 0)
    mean: dict[str, torch.Tensor] = {}
    m2: dict[str, torch.Tensor] = {}
    nonzero: dict[str, torch.Tensor] = {}
    was_training = net.training
    net.eval()
    try:
        for start in range(0, x.shape[0], batch_size):
            outs = net.layer_outputs(x[start:start + batch_size])
            for name in hidden:
                h = outs[name].double()
                if h.dim() > 2:  # a conv layer: each channel over examples and positions
                    h = h.movedim(1, -1).reshape(-1, h.shape[1])
                n_b = h.shape[0]
                total = count[name] + n_b
                ones = h.new_ones(n_b)
                nonzero_b = ones @ h.sign().abs_()
                mean_b = (ones @ h) / n_b
                m2_b = ones @ h.sub_(mean_b).square_()
                if count[name] == 0:
                    mean[name], m2[name], nonzero[name] = mean_b, m2_b, nonzero_b
                else:
                    delta = mean_b - mean[name]
                    mean[name] = mean[name] + delta * (n_b / total)
                    m2[name] = m2[name] + m2_b + delta.square() * (count[name] * n_b / total)
                    nonzero[name] = nonzero[name] + nonzero_b
                count[name] = total
    finally:
        net.train(was_training)
    # the counts are exact integers, so ``zero_fraction >= 0.99`` is exact (for < 1e14 rows)
    return {name: ((m2[name] / count[name]).sqrt(), (count[name] - nonzero[name]) / count[name])
            for name in hidden}


@torch.no_grad()
def outgoing_norms(net) -> dict[str, torch.Tensor]:
    """Per hidden layer: each unit's outgoing norm (float64, see the module docstring).

    Columns of every outgoing connection are scattered onto the units they read (``index_add``), so
    a unit read by several connections, or through an ``in_index``, gets all its edges counted.
    """
    norms = {}
    for name in net.hidden_layers():
        layer = net.layers[name]
        squares = torch.zeros(layer.size, dtype=torch.float64, device=layer.bias.device)
        for conn in net.outgoing(name):
            squares_w = conn.effective_weight().detach().double().square()
            n_read = conn.source_units(layer.size).numel()
            # a column per channel: kernels (out, in, kh, kw), or a dense reader's positions of a channel
            column = squares_w.view(squares_w.shape[0], n_read, -1).sum((0, 2))
            squares.index_add_(0, conn.source_units(layer.size), column)
        norm = squares.sqrt()
        factor = layer.factor()
        if factor is not None:
            norm = norm * factor.detach().double().abs()
        norms[name] = norm
    return norms


@torch.no_grad()
def unit_activity(net, x: torch.Tensor, batch_size: int = 4096) -> dict[str, UnitActivity]:
    """Per hidden layer, the :class:`UnitActivity` flags of every unit for inputs ``x``.

    Raises:
        ConfigError: ``batch_size`` not a positive integer, or ``x`` without rows.
    """
    spread = output_spread(net, x, batch_size)
    norms = outgoing_norms(net)
    result = {}
    for name in net.hidden_layers():
        layer = net.layers[name]
        std, zero_fraction = spread[name]
        dead = std < DEAD_STD
        if isinstance(layer.activation, nn.ReLU):
            dead = dead | (zero_fraction >= DEAD_ZERO_FRACTION)
        norm = norms[name]
        median = norm.quantile(0.5)
        silent = (norm < SILENT_FRACTION * median) | (norm == 0)
        result[name] = UnitActivity(new=layer.new_units().to(dead.device), dead=dead, silent=silent,
                                    std=std, zero_fraction=zero_fraction, outgoing_norm=norm)
    return result


def inactivity(net, x: torch.Tensor, batch_size: int = 4096) -> dict:
    """The inactivity figures of ``net`` on inputs ``x`` (the validation set, by the definitions).

    Args:
        net: a ``GrowableNet``.
        x: inputs, rows first (what ``net`` takes).
        batch_size: rows per forward pass (memory is bounded by it).

    Returns:
        ``{"layers": {name: {key: int for key in LAYER_KEYS}}, **totals, "inactive_units_fraction",
        "inactive_new_units_fraction"}``: the totals are the same keys summed over hidden layers;
        ``inactive_units_fraction`` = inactive hidden units / hidden units and
        ``inactive_new_units_fraction`` = inactive new units / new units, each None when the
        denominator is 0.

    Raises:
        ConfigError: ``batch_size`` not a positive integer, or ``x`` without rows.
    """
    layers = {name: flags.counts() for name, flags in unit_activity(net, x, batch_size).items()}
    totals = {key: sum(entry[key] for entry in layers.values()) for key in LAYER_KEYS}
    return {
        "layers": layers,
        **totals,
        "inactive_units_fraction": totals["inactive"] / totals["units"] if totals["units"] else None,
        "inactive_new_units_fraction":
            totals["new_inactive"] / totals["new_units"] if totals["new_units"] else None,
    }


def inactivity_fields(figures: dict) -> dict:
    """What a history record and ``summary.json`` take from an :func:`inactivity` result:
    ``inactivity`` (the per-layer counts) and the two fractions."""
    return {"inactivity": figures["layers"],
            "inactive_units_fraction": figures["inactive_units_fraction"],
            "inactive_new_units_fraction": figures["inactive_new_units_fraction"]}

"""The two building blocks of a growable network: ``Layer`` and ``Connection``.

A layer is a group of units with a bias, an elementwise activation and an optional unit modulator.
A connection joins a source layer to a target layer: it reads the source units ``in_index`` (or all
of them), holds a dense weight ``(n_rows, n_cols)`` and an optional 0/1 ``mask`` of live edges, and
adds into the target units ``out_index`` (or all of them). Masked entries are stored as 0 and never
receive a gradient, so no optimizer moves them. An optional boolean ``provisional`` marks edges born
with a negligible weight (edge expansion's eps edges) that pruning may later remove; it follows the
weight through every resize, so it stays right after compaction.

A layer may carry a boolean buffer ``grown`` marking its units added by growth during the run (the
*new units* of DESIGN.md's glossary). It is None until growth first touches the layer (None: no unit
is new), so graphs and checkpoints made before it existed load unchanged; the growth ops keep it
aligned with the units through every resize.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .activations import make_activation
from .modulators import UnitModulator

__all__ = ["Layer", "Connection"]


class Layer(nn.Module):
    """A group of ``size`` units: ``h = activation(pre + bias) * modulator()``.

    The input layer has no bias and no activation (``bias=False``).
    """

    def __init__(
        self,
        size: int,
        activation: str | nn.Module = "relu",
        *,
        bias: bool = True,
        modulator: UnitModulator | None = None,
    ):
        super().__init__()
        self._size = int(size)
        self.activation = make_activation(activation) if bias else None
        self.bias = nn.Parameter(torch.zeros(self._size)) if bias else None
        self.modulator = modulator
        self.register_buffer("grown", None)

    @property
    def size(self) -> int:
        return self._size if self.bias is None else self.bias.shape[0]

    @property
    def is_input(self) -> bool:
        return self.bias is None

    def factor(self) -> torch.Tensor | None:
        """The modulator's per-unit factor, or None."""
        return None if self.modulator is None else self.modulator()

    def live_units(self) -> torch.Tensor:
        """Boolean ``(size,)``: units whose modulator factor is not 0."""
        f = self.factor()
        if f is None:
            return torch.ones(self.size, dtype=torch.bool, device=self._device())
        return f.detach() != 0

    def new_units(self) -> torch.Tensor:
        """Boolean ``(size,)``: units added by growth during the run (all False without ``grown``)."""
        if self.grown is None:
            return torch.zeros(self.size, dtype=torch.bool, device=self._device())
        return self.grown

    def _device(self) -> torch.device:
        return self.bias.device if self.bias is not None else torch.device("cpu")

    def extra_repr(self) -> str:
        return f"size={self.size}"


class Connection(nn.Module):
    """A dense (optionally masked) weight from a subset of a source layer to a subset of a target."""

    def __init__(
        self,
        source: str,
        target: str,
        weight: torch.Tensor,
        *,
        in_index: torch.Tensor | None = None,
        out_index: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        provisional: torch.Tensor | None = None,
    ):
        super().__init__()
        self.source = source
        self.target = target
        self.weight = nn.Parameter(weight)
        self.register_buffer("in_index", None if in_index is None else in_index.long())
        self.register_buffer("out_index", None if out_index is None else out_index.long())
        self.register_buffer("mask", None if mask is None else mask.to(weight.dtype))
        self.register_buffer("provisional", None if provisional is None else provisional.bool())

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.weight.shape)

    def effective_weight(self) -> torch.Tensor:
        """``W * M`` (the mask also blocks the gradient of masked entries), or ``W``."""
        return self.weight if self.mask is None else self.weight * self.mask

    def live(self) -> torch.Tensor:
        """Boolean ``(n_rows, n_cols)`` of live edges."""
        if self.mask is None:
            return torch.ones(self.shape, dtype=torch.bool, device=self.weight.device)
        return self.mask != 0

    def source_units(self, n_source: int) -> torch.Tensor:
        """Indices of the source units read (all of them when ``in_index`` is None)."""
        if self.in_index is None:
            return torch.arange(n_source, device=self.weight.device)
        return self.in_index

    def target_units(self, n_target: int) -> torch.Tensor:
        """Indices of the target units written (all of them when ``out_index`` is None)."""
        if self.out_index is None:
            return torch.arange(n_target, device=self.weight.device)
        return self.out_index

    def contribution(self, x_source: torch.Tensor) -> torch.Tensor:
        """``x_source[:, in_index] @ (W * M).T`` of shape ``(batch, n_rows)``; a feature-map source
        ``(batch, C, H, W)`` is read as its selected channels flattened channel-major (``graph.conv``)."""
        if self.in_index is not None:
            x_source = x_source.index_select(1, self.in_index)
        if x_source.dim() > 2:
            x_source = x_source.flatten(1)
        return F.linear(x_source, self.effective_weight())

    def extra_repr(self) -> str:
        bits = [f"{self.source} -> {self.target}", f"shape={self.shape}"]
        if self.in_index is not None:
            bits.append("in_index")
        if self.out_index is not None:
            bits.append("out_index")
        if self.mask is not None:
            bits.append(f"live={int(self.mask.sum())}")
        return ", ".join(bits)

"""The two building blocks of a growable network: ``Layer`` and ``Connection``.

A layer is a group of units with a bias, an elementwise activation and an optional unit modulator.
A connection joins a source layer to a target layer: it reads the source units ``in_index`` (or all
of them), holds a dense weight ``(n_rows, n_cols)`` and an optional 0/1 ``mask`` of live edges, and
adds into the target units ``out_index`` (or all of them). Masked entries are stored as 0 and never
receive a gradient, so no optimizer moves them. An optional boolean ``provisional`` marks edges born
with a negligible weight (edge expansion's eps edges) that pruning may later remove; it follows the
weight through every resize, so it stays right after compaction. A connection with few live edges is
stored **sparse** instead (``graph.sparse``: ``weight`` holds only the live values, ``edge_index`` their
rows and columns); ``shape``, ``live``, ``effective_weight`` and ``contribution`` mean the same for both.

A layer may carry a boolean buffer ``grown`` marking its units added by growth during the run (the
*new units* of DESIGN.md's glossary). It is None until growth first touches the layer (None: no unit
is new), so graphs and checkpoints made before it existed load unchanged; the growth ops keep it
aligned with the units through every resize.

A layer may also carry a **batch norm** (``layer.norm``: ``nn.BatchNorm1d`` on a dense layer,
``nn.BatchNorm2d`` on a conv layer, whose affine parameters and running statistics grow and shrink
with the units) applied to the sum of its inputs before the activation, and a **dropout** rate
(``layer.dropout``, 0: none) applied in training mode last, after the activation and modulator:
``h = dropout(activation(norm(pre + bias)) * modulator())``. Both are recorded in the spec (an absent
key: none, as in older specs).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .activations import make_activation
from .modulators import UnitModulator
from .sparse import edge_list_contribution

_LAYOUTS = itertools.count()

__all__ = ["Layer", "Connection", "norm_spec"]


def norm_spec(norm: nn.Module) -> dict:
    """A batch norm's settings as plain JSON: ``eps``, ``momentum`` (None: cumulative average),
    ``affine``, ``track_running_stats``."""
    return {"eps": norm.eps, "momentum": norm.momentum, "affine": norm.affine,
            "track_running_stats": norm.track_running_stats}


def _dropout_rate(p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ConfigError(f"dropout must be a number in [0, 1], got dropout={p!r}")
    return float(p)


class Layer(nn.Module):
    """A group of ``size`` units: ``h = dropout(activation(norm(pre + bias)) * modulator())``.

    The input layer has no bias and no activation (``bias=False``), nor batch norm or dropout.

    Args:
        batch_norm: add ``norm_class(size, eps, momentum, affine, track_running_stats)`` (a dense
            layer's is ``nn.BatchNorm1d``) after the sum of the inputs.
        dropout: rate of the dropout applied in training mode after activation and modulator.

    Raises:
        ConfigError: a dropout rate outside [0, 1], a negative ``eps``, batch norm or dropout on the
            input layer.
    """

    norm_class = nn.BatchNorm1d

    def __init__(
        self,
        size: int,
        activation: str | nn.Module = "relu",
        *,
        bias: bool = True,
        modulator: UnitModulator | None = None,
        batch_norm: bool = False,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        self._size = int(size)
        self.activation = make_activation(activation) if bias else None
        self.bias = nn.Parameter(torch.zeros(self._size)) if bias else None
        self.modulator = modulator
        self.register_buffer("grown", None)
        if not eps >= 0:
            raise ConfigError(f"eps must be >= 0, got eps={eps!r}")
        self.dropout = _dropout_rate(dropout)
        if not bias and (batch_norm or self.dropout):
            raise ConfigError("the input layer takes no batch norm and no dropout")
        self.norm = self.norm_class(self._size, eps=eps, momentum=momentum, affine=bool(affine),
                                    track_running_stats=bool(track_running_stats)) if batch_norm else None

    def finish(self, pre: torch.Tensor) -> torch.Tensor:
        """Batch norm, activation, modulator and dropout of the pre-activation (bias included)."""
        h = pre if self.norm is None else self.norm(pre)
        h = self.activation(h)
        if self.modulator is not None:
            h = h * self.modulator()
        if self.dropout:
            h = F.dropout(h, self.dropout, self.training)
        return h

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
        bits = [f"size={self.size}"]
        if self.norm is not None:
            bits.append("batch_norm")
        if self.dropout:
            bits.append(f"dropout={self.dropout}")
        return ", ".join(bits)


class Connection(nn.Module):
    """A dense (optionally masked) weight from a subset of a source layer to a subset of a target, or
    its live edges only (sparse storage: ``edge_index`` ``(2, n_edges)`` and a logical ``shape``)."""

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
        edge_index: torch.Tensor | None = None,
        shape: tuple[int, int] | None = None,
    ):
        super().__init__()
        self.source = source
        self.target = target
        self.weight = nn.Parameter(weight)
        self.register_buffer("in_index", None if in_index is None else in_index.long())
        self.register_buffer("out_index", None if out_index is None else out_index.long())
        self.register_buffer("mask", None if mask is None else mask.to(weight.dtype))
        self.register_buffer("provisional", None if provisional is None else provisional.bool())
        if (edge_index is None) != (shape is None) or (edge_index is not None and mask is not None):
            raise ConfigError("a sparse connection takes edge_index and shape together, and no mask")
        self.register_buffer("edge_index", None if edge_index is None else edge_index.long())
        self._sparse_shape = None if shape is None else tuple(int(n) for n in shape)
        self.renew_layout()

    def renew_layout(self) -> None:
        """Mark that the weight's entries now mean other edges (an op resized it). Storage conversions
        keep the layout: per-edge statistics stay valid across them (``EdgeStatistics``)."""
        self.layout = next(_LAYOUTS)

    @property
    def sparse(self) -> bool:
        """Whether only the live edges are stored (``graph.sparse``)."""
        return self.edge_index is not None

    @property
    def full(self) -> bool:
        """Whether every entry of ``shape`` is a live edge (dense storage, no mask)."""
        return self.mask is None and self.edge_index is None

    @property
    def shape(self) -> tuple[int, int]:
        return self._sparse_shape if self.edge_index is not None else tuple(self.weight.shape)

    def scatter(self, values: torch.Tensor) -> torch.Tensor:
        """A sparse connection's per-edge ``values`` ``(n_edges,)`` as ``shape`` (0 elsewhere);
        differentiable."""
        out = values.new_zeros(self.shape)
        return out.index_put((self.edge_index[0], self.edge_index[1]), values)

    def effective_weight(self) -> torch.Tensor:
        """``W * M`` (the mask also blocks the gradient of masked entries), or ``W``; a sparse
        connection's values scattered into ``shape``."""
        if self.edge_index is not None:
            return self.scatter(self.weight)
        return self.weight if self.mask is None else self.weight * self.mask

    def live(self) -> torch.Tensor:
        """Boolean ``(n_rows, n_cols)`` of live edges."""
        if self.edge_index is not None:
            return self.scatter(torch.ones_like(self.weight, dtype=torch.bool))
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
        if self.edge_index is not None:
            return edge_list_contribution(self, x_source)
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
        if self.edge_index is not None:
            bits.append(f"sparse, live={self.weight.numel()}")
        return ", ".join(bits)

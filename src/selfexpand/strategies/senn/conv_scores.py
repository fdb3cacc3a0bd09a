"""SENN's K-FAC quantities and width scores on conv connections (issue #24; ALGORITHMS.md section 3).

The dense formulas of :mod:`.natural_scores` hold with examples replaced by (example, position) pairs,
as in K-FAC for convolutions (Grosse & Martens 2016, "KFC"). For a conv connection with kernels
``(n_out, C_in, kh, kw)``, stride ``s`` and padding ``p`` into a layer with ``L = H' W'`` output
positions, and ``N`` examples:

- ``a[n, t]`` (``C_in kh kw + 1``): the unfolded input patch of position ``t`` (``F.unfold``'s row
  order ``(c, u, v)``) with a 1 for the bias; ``d[n, t]`` (``n_out``): the gradient of example
  ``n``'s own loss with respect to the pre-activation at position ``t``.
- **Normalisation: per (example, position) pair.** ``E_p[.]`` is the mean over the ``N L`` pairs.
  ``A = E_p[a a^T]``; ``G = E_p[d_hat d_hat^T]`` with ``d_hat = d / ||d||`` per PAIR (the reference
  normalises per example; here a pair is an example); the gradient of the mean loss is
  ``grad_W = E_n[sum_t d a^T] = L E_p[d a^T]``.
- K-FAC's Fisher of the connection is ``(L A) (x) G`` (KFC's ``Omega = E_n[sum_t a a^T] = L A``,
  ``Gamma = G``), so the natural expansion score is

      eta = Tr[grad_W (L A)^+ grad_W^T G^+] = L * Tr[E_p[d a^T] A^+ E_p[d a^T]^T G^+],

  ``L`` times the dense score of the ``N L`` pairs taken as examples.
- **A candidate channel** of the layer that the connection READS adds, per pair, the ``k = kh kw``
  entries of its output map under the connection's kernel window (its activation patch:
  ``unfold`` of the candidate map); with free outgoing kernels the exact increase of ``eta`` is
  ``L`` times :func:`~.natural_scores.expansion_scores`' exact score on the pair rows (the block
  inversion is the dense one; the factor ``L`` multiplies the whole score). Across the flatten boundary
  the reader is dense: one position, ``k = H W`` features (the candidate map flattened), the dense score.

A score on a dense connection is the case ``L = 1`` with one position; this module is used for conv
connections only, so the dense path is untouched. Everything is float64-friendly and differentiable
with respect to the candidate features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...errors import ConfigError
from .natural_scores import (
    LayerStats,
    expansion_scores,
    natural_score,
    output_gradient_moment,
)

__all__ = [
    "candidate_maps",
    "channel_features",
    "conv_expansion_scores",
    "conv_factors",
    "conv_natural_score",
    "patch_rows",
    "position_rows",
]


def _geometry(kernel_size, stride: int, padding: int) -> tuple[tuple[int, int], int, int]:
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    if min(kh, kw) < 1 or int(stride) < 1 or int(padding) < 0:
        raise ConfigError(f"kernel_size must be >= 1, stride >= 1 and padding >= 0, got {kernel_size!r}, "
                          f"{stride!r}, {padding!r}")
    return (int(kh), int(kw)), int(stride), int(padding)


def patch_rows(x: torch.Tensor, kernel_size, stride: int = 1, padding: int = 0, *, bias: bool = True) -> torch.Tensor:
    """``(N L, C kh kw [+ 1])``: the unfolded patches of ``x`` (N, C, H, W), one row per (example,
    position) pair, example-major (row ``n L + t``), columns in ``F.unfold``'s order ``(c, u, v)``,
    with a constant-1 column last when ``bias``."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ConfigError(f"x must be a (N, C, H, W) tensor, got {shape}")
    (kh, kw), stride, padding = _geometry(kernel_size, stride, padding)
    patches = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # (N, D, L)
    rows = patches.transpose(1, 2).reshape(-1, patches.shape[1])
    if bias:
        rows = torch.cat([rows, torch.ones(rows.shape[0], 1, dtype=rows.dtype, device=rows.device)], 1)
    return rows


def position_rows(d: torch.Tensor) -> torch.Tensor:
    """``(N L, C_out)``: per-position output gradients ``d`` (N, C_out, H', W') as pair rows (the order
    of :func:`patch_rows`)."""
    if not isinstance(d, torch.Tensor) or d.ndim != 4:
        shape = tuple(d.shape) if isinstance(d, torch.Tensor) else type(d).__name__
        raise ConfigError(f"d must be a (N, C, H, W) tensor, got {shape}")
    return d.flatten(2).transpose(1, 2).reshape(-1, d.shape[1])


def conv_factors(a: torch.Tensor, d: torch.Tensor, positions: int,
                 normalise: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(A, G, grad_W)`` of a conv connection from its pair rows (module docstring).

    Args:
        a: (N L, n_a) input patches with the 1 column.
        d: (N L, n_out) per-position output gradients.
        positions: ``L``, the output positions per example.
        normalise: ``G`` from unit-length ``d`` per pair (the reference's ``G``).

    Returns:
        ``A = E_p[a a^T]``, ``G = E_p[d_hat d_hat^T]``, ``grad_W = E_n[sum_t d a^T]``.
    """
    positions = _positions(positions, a.shape[0])
    rows = a.shape[0]
    return a.T @ a / rows, output_gradient_moment(d, normalise), d.T @ a / (rows // positions)


def _positions(positions, rows: int) -> int:
    if isinstance(positions, bool) or not isinstance(positions, int) or positions < 1 or rows % positions:
        raise ConfigError(f"positions must be a positive integer dividing the {rows} rows, got {positions!r}")
    return positions


def conv_natural_score(grad_W: torch.Tensor, A: torch.Tensor, G: torch.Tensor, positions: int,
                       rtol: float | None = None) -> torch.Tensor:
    """``eta = Tr[grad_W (L A)^+ grad_W^T G^+]`` (K-FAC's conv Fisher ``(L A) (x) G``)."""
    if isinstance(positions, bool) or not isinstance(positions, int) or positions < 1:
        raise ConfigError(f"positions must be a positive integer, got {positions!r}")
    return natural_score(grad_W, positions * A, G, rtol)


def conv_expansion_scores(stats: LayerStats, f: torch.Tensor, positions: int,
                          eps: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``L`` times :func:`~.natural_scores.expansion_scores` of the pair rows: the exact increase of the
    conv ``eta`` from candidate features ``f`` (P, N L, k) and its lower bound. ``stats`` is
    :func:`~.natural_scores.layer_stats` of the pair rows ``(a, d)`` and the (damped) ``G``."""
    positions = _positions(positions, stats.n)
    exact, bound = expansion_scores(stats, f, eps)
    return positions * exact, positions * bound


def candidate_maps(layer, patches: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   pre_hw: tuple[int, int]) -> torch.Tensor:
    """The output maps (P, N, H, W) of ``P`` candidate channels of conv ``layer`` right after
    ``add_channels`` (evaluation mode), from the unfolded input ``patches`` (N, D, L), flattened
    incoming kernels ``weight`` (P, D) and biases (P,).

    ``pool(act(bn(z)))`` with the new channel's batch norm at its fresh state (weight 1, bias 0,
    running mean 0, running variance 1: ``bn(z) = z / sqrt(1 + eps)``); dropout is off in evaluation.
    """
    p, n = weight.shape[0], patches.shape[0]
    z = torch.einsum("pd,ndl->pnl", weight, patches) + bias[:, None, None]
    z = z.reshape(p * n, 1, *pre_hw)
    if layer.norm is not None:
        z = z / math.sqrt(1.0 + layer.norm.eps)
    h = layer.activation(z)
    if layer.pool == "max":
        h = F.max_pool2d(h, layer.pool_size)
    elif layer.pool == "avg":
        h = F.avg_pool2d(h, layer.pool_size)
    return h.reshape(p, n, *h.shape[2:])


def channel_features(maps: torch.Tensor, conn=None) -> torch.Tensor:
    """``f`` (P, rows, k): candidate channels' maps (P, N, H, W) as the reader's new inputs.

    ``conn`` a conv connection (kernel, stride, padding): the activation patches, ``(P, N L, kh kw)``
    in :func:`patch_rows`' row order; None (a dense reader across the flatten boundary): the
    flattened maps, ``(P, N, H W)``.
    """
    p, n = maps.shape[:2]
    if conn is None:
        return maps.reshape(p, n, -1)
    rows = patch_rows(maps.reshape(p * n, 1, *maps.shape[2:]), conn.kernel_size, conn.stride, conn.padding,
                      bias=False)
    return rows.reshape(p, -1, rows.shape[1])

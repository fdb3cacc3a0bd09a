"""K-FAC natural expansion scores of SENN (arXiv 2307.04526; ALGORITHMS.md section 3).

Pure tensor maths. Notation for one layer and ``N`` examples: ``a`` (N, n_a) the layer's inputs, the
constant-1 column for the bias already appended by the caller; ``d`` (N, n_out) the per-example
gradients of the loss with respect to the layer's outputs; ``E[.]`` the mean over the examples;
``A = E[a a^T]``; ``grad_W = E[d a^T]`` (n_out x n_a); ``G`` (n_out x n_out) positive semi-definite,
given by the caller (see :func:`output_gradient_moment` and :func:`damp`).

The layer's natural expansion score is ``eta = Tr[grad_W A^+ grad_W^T G^+]``.

**Candidate score (block inversion).** Enlarge the layer with ``k`` new inputs ``f`` (N, k), so
``a' = [a, f]``. With ``B = E[a f^T]``, ``S = E[f f^T] - B^T A^+ B`` (the Schur complement of ``A`` in
``A'``), ``r = d - a A^+ grad_W^T`` (the output gradient with the part the existing inputs explain
projected out) and ``C = E[f r^T]`` (k x n_out), block inversion of ``A'`` gives

    eta(a') - eta(a) = Tr[C^T S^-1 C G^-1]                                      (exact score)

exactly (for invertible ``A`` and ``S``). Since ``E[f f^T] - S = B^T A^+ B`` is positive
semi-definite, ``S^-1 >= E[f f^T]^-1`` and therefore

    Tr[C^T E[f f^T]^-1 C G^-1] <= Tr[C^T S^-1 C G^-1]                           (lower bound)

Implementation: the inputs are whitened once per layer (:func:`layer_stats`), ``a_w = a W_A`` with
``W_A W_A^T = A^+`` (a Cholesky factor, or an eigen-decomposition with the small eigenvalues dropped
when ``A`` is rank deficient), so that ``E[a_w a_w^T] = I``. Candidates are projected,
``f_perp = f - a_w E[a_w^T f]``; then ``S = E[f_perp f_perp^T]`` (a Gram matrix: never negative) and
``C = E[f_perp r^T]``. ``G^+`` is applied by whitening ``r`` the same way. Degenerate candidates (in
the span of ``a``, or zero) get a relative jitter ``eps * Tr E[f f^T] / k`` on ``S`` and
``E[f f^T]``; a candidate with ``E[f f^T] = 0`` scores exactly 0. Everything is differentiable with
respect to ``f``.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch

from ...errors import ConfigError
from ...validators import number

__all__ = [
    "Whitening",
    "whitening",
    "LayerStats",
    "damp",
    "output_gradient_moment",
    "natural_score",
    "layer_stats",
    "expansion_scores",
    "tied_expansion_score",
    "default_rtol",
    "default_jitter",
]

logger = logging.getLogger(__name__)


def default_rtol(dtype: torch.dtype, n: int) -> float:
    """Relative eigenvalue cut-off of the pseudo-inverses: ``10 * n * eps(dtype)`` (as NumPy/JAX pinv)."""
    return 10.0 * max(n, 1) * torch.finfo(dtype).eps


def default_jitter(dtype: torch.dtype) -> float:
    """Relative jitter added to ``S`` and ``E[f f^T]``: ``1000 * eps(dtype)``."""
    return 1000.0 * torch.finfo(dtype).eps


def _check_matrix(name: str, x: torch.Tensor, ndim: int = 2) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != ndim or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ConfigError(f"{name} must be a floating-point tensor with {ndim} dimensions, got {shape}")


def damp(G: torch.Tensor, rel: float = 0.1) -> torch.Tensor:
    """Return ``G + rel * mean(diag G) * I`` (the reference's damping of ``G`` for candidate scores).

    Args:
        G: (..., n, n) square matrices.
        rel: relative damping, ``>= 0``.

    Raises:
        ConfigError: ``G`` is not square or ``rel`` is not a finite number >= 0.
    """
    if not isinstance(G, torch.Tensor) or G.ndim < 2 or G.shape[-1] != G.shape[-2]:
        shape = tuple(G.shape) if isinstance(G, torch.Tensor) else type(G).__name__
        raise ConfigError(f"G must be a square matrix, got shape {shape}")
    rel = number("rel", rel, 0)
    mean_diag = torch.diagonal(G, dim1=-2, dim2=-1).mean(-1)
    eye = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    return G + (rel * mean_diag)[..., None, None] * eye


def output_gradient_moment(d: torch.Tensor, normalise: bool = True) -> torch.Tensor:
    """Return ``G = E[d_hat d_hat^T]`` (n_out x n_out) from per-example output gradients ``d`` (N, n_out).

    With ``normalise``, ``d_hat = d / ||d||`` per example (the reference's ``G``); all-zero rows stay
    zero. Without it, ``d_hat = d``.
    """
    _check_matrix("d", d)
    if normalise:
        norms = torch.linalg.vector_norm(d, dim=1, keepdim=True)
        d = d / torch.where(norms > 0, norms, torch.ones_like(norms))
    return d.T @ d / d.shape[0]


def natural_score(grad_W: torch.Tensor, A: torch.Tensor, G: torch.Tensor,
                  rtol: float | None = None) -> torch.Tensor:
    """Return ``eta = Tr[grad_W A^+ grad_W^T G^+]`` with undamped pseudo-inverses (the reference).

    Finite for rank-deficient ``A`` and ``G``: eigenvalues below ``rtol * max eigenvalue`` are dropped.
    Leading batch dimensions are allowed.

    Args:
        grad_W: (..., n_out, n_a) the layer's gradient ``E[d a^T]``.
        A: (..., n_a, n_a) the input moment ``E[a a^T]``.
        G: (..., n_out, n_out) the output-gradient moment.
        rtol: relative cut-off; default :func:`default_rtol`.

    Returns:
        (...) the scores.

    Raises:
        ConfigError: the shapes do not match, or ``rtol`` is not a finite number >= 0.
    """
    if grad_W.ndim < 2 or A.shape[-2:] != (grad_W.shape[-1],) * 2 or G.shape[-2:] != (grad_W.shape[-2],) * 2:
        raise ConfigError("shapes must be grad_W (n_out, n_a), A (n_a, n_a), G (n_out, n_out), got "
                          f"{tuple(grad_W.shape)}, {tuple(A.shape)}, {tuple(G.shape)}")
    rtol = None if rtol is None else number("rtol", rtol, 0)
    rtol_a = default_rtol(A.dtype, A.shape[-1]) if rtol is None else rtol
    rtol_g = default_rtol(G.dtype, G.shape[-1]) if rtol is None else rtol
    A_pinv = torch.linalg.pinv(A, rtol=rtol_a, hermitian=True)
    G_pinv = torch.linalg.pinv(G, rtol=rtol_g, hermitian=True)
    left = grad_W @ A_pinv @ grad_W.transpose(-1, -2)
    return (left * G_pinv.transpose(-1, -2)).sum((-2, -1))


class Whitening(NamedTuple):
    """A factor ``W`` with ``W W^T = M^+`` for a PSD matrix ``M``, applied as ``x -> x W``.

    Attributes:
        cholesky: lower ``L`` with ``M = L L^T`` when ``M`` is well conditioned (``W = L^-T``), else None.
        basis: eigenvectors ``U`` of the kept eigenvalues (eigen fallback, ``W = U diag(lambda^-1/2)``).
        scales: ``lambda^-1/2`` of the kept eigenvalues (eigen fallback).
    """

    cholesky: torch.Tensor | None
    basis: torch.Tensor | None
    scales: torch.Tensor | None

    @property
    def rank(self) -> int:
        """The number of columns of ``W``."""
        return self.cholesky.shape[0] if self.cholesky is not None else self.scales.shape[0]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x W`` for rows ``x`` (..., n): whitened rows (..., rank)."""
        if self.cholesky is not None:
            return torch.linalg.solve_triangular(self.cholesky.T, x, upper=True, left=False)
        return (x @ self.basis) * self.scales


def whitening(M: torch.Tensor, rtol: float | None = None) -> Whitening:
    """Factor the PSD matrix ``M`` (n, n) as ``M^+ = W W^T``.

    Cholesky when it succeeds with every pivot ``L_ii^2 > rtol * max(diag M)``; otherwise the
    eigen-decomposition with eigenvalues ``<= rtol * max eigenvalue`` dropped (rank deficient ``M``,
    e.g. an input column that is constant as well as the bias column): never NaN.
    """
    rtol = default_rtol(M.dtype, M.shape[0]) if rtol is None else rtol
    M = (M + M.T) / 2
    if M.shape[0] > 0:
        L, info = torch.linalg.cholesky_ex(M)
        scale = torch.diagonal(M).max()
        if int(info) == 0 and scale > 0 and bool((torch.diagonal(L) ** 2 > rtol * scale).all()):
            return Whitening(L, None, None)
    values, vectors = torch.linalg.eigh(M)
    top = values.max() if values.numel() else values.new_zeros(())
    keep = values > rtol * top if top > 0 else torch.zeros_like(values, dtype=torch.bool)
    logger.debug("whitening: Cholesky not usable, pseudo-inverse of rank %d of %d", int(keep.sum()), M.shape[0])
    return Whitening(None, vectors[:, keep], values[keep].rsqrt())


class LayerStats(NamedTuple):
    """What the candidate scores of one layer need (from :func:`layer_stats`).

    Attributes:
        n: the number of examples ``N``.
        inputs_white: (N, rank A) whitened inputs ``a W_A``, ``E[a_w a_w^T] = I``.
        input_whitening: the factor of ``A`` (Cholesky, or eigen fallback).
        gradient_whitening: the factor of ``G`` (Cholesky, or eigen fallback).
        residual: (N, n_out) ``r = d - a A^+ grad_W^T``.
        residual_white: (N, rank G) ``r W_G`` (so ``Tr[C^T S^-1 C G^+] = ||S^-1/2 E[f r_w^T]||^2``).
        eta: the layer's score ``Tr[grad_W A^+ grad_W^T G^+]`` with the given ``G``.
    """

    n: int
    inputs_white: torch.Tensor
    input_whitening: Whitening
    gradient_whitening: Whitening
    residual: torch.Tensor
    residual_white: torch.Tensor
    eta: torch.Tensor


def layer_stats(a: torch.Tensor, d: torch.Tensor, G: torch.Tensor, rtol: float | None = None) -> LayerStats:
    """Precompute the layer quantities candidate scores need.

    Args:
        a: (N, n_a) inputs, the constant-1 column already appended.
        d: (N, n_out) per-example output gradients.
        G: (n_out, n_out) PSD output-gradient moment (the reference passes ``damp(G)`` for candidates;
            ``eta`` here is taken with this ``G``).
        rtol: relative eigenvalue cut-off of the fallback pseudo-inverses; default :func:`default_rtol`.

    Returns:
        The :class:`LayerStats`.

    Raises:
        ConfigError: a tensor of the wrong kind or shape, no example, or ``rtol`` not a finite
            number >= 0.
    """
    _check_matrix("a", a)
    _check_matrix("d", d)
    _check_matrix("G", G)
    if d.shape[0] != a.shape[0] or G.shape != (d.shape[1], d.shape[1]):
        raise ConfigError(f"shapes must be a (N, n_a), d (N, n_out), G (n_out, n_out), got "
                          f"{tuple(a.shape)}, {tuple(d.shape)}, {tuple(G.shape)}")
    n = a.shape[0]
    if n < 1:
        raise ConfigError(f"a must hold at least one example, got N={n}")
    rtol = None if rtol is None else number("rtol", rtol, 0)
    input_whitening = whitening(a.T @ a / n, rtol)
    a_w = input_whitening.apply(a)
    explained = a_w.T @ d / n  # E[a_w d^T], (rank A, n_out)
    residual = d - a_w @ explained
    gradient_whitening = whitening(G, rtol)
    eta = gradient_whitening.apply(explained).square().sum()
    return LayerStats(n, a_w, input_whitening, gradient_whitening, residual,
                      gradient_whitening.apply(residual), eta)


def _safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``, else 0, with finite gradients everywhere."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def _scores_one(stats: LayerStats, f: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores for k = 1 with vector operations; ``f`` (P, N)."""
    n = stats.n
    coefficients = f @ stats.inputs_white / n  # E[f a_w], (P, rank A)
    f_perp = f - coefficients @ stats.inputs_white.T
    schur = f_perp.square().mean(1)
    second_moment = f.square().mean(1)
    c_norm = (f_perp @ stats.residual_white / n).square().sum(1)
    jitter = eps * second_moment
    return _safe_ratio(c_norm, schur + jitter), _safe_ratio(c_norm, second_moment + jitter)


def _quadratic_trace(C: torch.Tensor, M: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    """``Tr[C^T (M + eps * scale * I)^-1 C]`` per batch entry via Cholesky; 0 where ``scale == 0``.

    ``scale = Tr E[f f^T] / k``; ``scale == 0`` means the candidate is zero, so ``C = 0`` and the score
    is 0. A factorisation that still fails (rounding, or ``eps = 0`` with a singular ``M``) is retried
    with a jitter a hundred times larger each time.
    """
    k = M.shape[-1]
    eye = torch.eye(k, dtype=M.dtype, device=M.device)
    empty = scale <= 0
    M = torch.where(empty[:, None, None], eye, M + (eps * scale)[:, None, None] * eye)
    retry = max(eps, torch.finfo(M.dtype).eps) * scale
    for _ in range(8):
        L, info = torch.linalg.cholesky_ex(M)
        if not bool((info > 0).any()):
            break
        retry = 100.0 * retry
        M = torch.where((info > 0)[:, None, None], M + retry[:, None, None] * eye, M)
    solved = torch.cholesky_solve(C, L)
    quadratic = (C * solved).sum((-2, -1))
    return torch.where(empty, torch.zeros_like(quadratic), quadratic)


def _scores_general(stats: LayerStats, f: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores for any k with batched Cholesky factorisations; ``f`` (P, N, k)."""
    n, k = stats.n, f.shape[-1]
    a_w = stats.inputs_white
    coefficients = torch.einsum("nr,pnk->prk", a_w, f) / n  # E[a_w f^T], (P, rank A, k)
    f_perp = f - torch.einsum("nr,prk->pnk", a_w, coefficients)
    f_t = f_perp.transpose(1, 2)
    schur = f_t @ f_perp / n
    second_moment = f.transpose(1, 2) @ f / n
    C = f_t @ stats.residual_white / n  # E[f r_w^T], (P, k, rank G)
    scale = torch.diagonal(second_moment, dim1=-2, dim2=-1).sum(-1) / k
    return _quadratic_trace(C, schur, scale, eps), _quadratic_trace(C, second_moment, scale, eps)


def expansion_scores(stats: LayerStats, f: torch.Tensor,
                     eps: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the exact increase of ``eta`` and its cheap lower bound for P candidate input sets.

    ``exact = Tr[C^T S^-1 C G^-1]`` and ``bound = Tr[C^T E[f f^T]^-1 C G^-1]`` with
    ``C = E[f r^T]`` and ``S = E[f f^T] - E[f a^T] A^+ E[a f^T]`` (module docstring: ``exact`` is
    ``eta([a, f]) - eta(a)``, and ``bound <= exact``). Both ``S`` and ``E[f f^T]`` get the jitter
    ``eps * Tr E[f f^T] / k``, so a candidate in the span of ``a`` scores about 0 and a zero candidate
    exactly 0. Differentiable with respect to ``f``.

    Args:
        stats: the layer's :class:`LayerStats`.
        f: (P, N, k) candidate features: P proposals, each adding k new inputs to the layer.
        eps: relative jitter; default :func:`default_jitter` of ``f.dtype``.

    Returns:
        ``(exact, bound)``, each (P,).

    Raises:
        ConfigError: ``f`` is not (P, N, k) with the layer's N, or ``eps`` is not a finite number >= 0.
    """
    if not isinstance(f, torch.Tensor) or f.ndim != 3 or f.shape[1] != stats.n or not f.is_floating_point():
        shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
        raise ConfigError(f"f must be a floating-point tensor (P, N={stats.n}, k), got {shape}")
    eps = default_jitter(f.dtype) if eps is None else number("eps", eps, 0)
    if f.shape[2] == 1:
        return _scores_one(stats, f[:, :, 0], eps)
    return _scores_general(stats, f, eps)


def tied_expansion_score(stats: LayerStats, J: torch.Tensor, G: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """The increase of ``eta`` from ``m`` new scalar parameters whose effect on the layer's outputs is
    given per example: ``J`` (N, n_out, m), the Jacobian of the outputs with respect to them.

    With ``J_perp`` the part of ``J`` the existing inputs do not explain (``J - a A^+ E[a J]``, column by
    column), ``g = E[J_perp^T r]`` and ``F = E[J_perp^T G J_perp]`` (K-FAC's output factor ``G``, the same
    ``G`` the stats were built with), the score is ``g^T F^-1 g``. New inputs ``f`` with free outgoing
    weights are the case ``J = f (x) I``, where this equals :func:`expansion_scores`' exact score;
    tying the outgoing weights (SENN's inserted layer: its activation's coefficients act through the
    fixed ``W pinv(B)``) can only lower it. ``F`` gets the relative jitter ``eps * Tr F / m``.

    Raises:
        ConfigError: ``J`` is not (N, n_out, m) with the layer's N, or ``eps`` is not a finite number >= 0.
    """
    if not isinstance(J, torch.Tensor) or J.ndim != 3 or J.shape[0] != stats.n:
        raise ConfigError(f"J must be (N={stats.n}, n_out, m), got {tuple(J.shape) if isinstance(J, torch.Tensor) else J}")
    eps = default_jitter(J.dtype) if eps is None else number("eps", eps, 0)
    n, a_w = stats.n, stats.inputs_white
    j_perp = J - torch.einsum("nr,rom->nom", a_w, torch.einsum("nr,nom->rom", a_w, J) / n)
    g = torch.einsum("no,nom->m", stats.residual, j_perp) / n
    fisher = torch.einsum("nom,op,npq->mq", j_perp, G, j_perp) / n
    scale = torch.diagonal(fisher).sum() / fisher.shape[0]
    if not scale > 0:
        return torch.zeros((), dtype=J.dtype)
    fisher = fisher + eps * scale * torch.eye(fisher.shape[0], dtype=J.dtype)
    return g @ torch.linalg.solve(fisher, g)

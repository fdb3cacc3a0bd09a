"""K-FAC natural expansion scores of SENN: the block-inversion identity, the bound, degenerate layers."""

from __future__ import annotations

import pytest
import torch

from selfexpand.errors import ConfigError
from selfexpand.strategies.senn.natural_scores import (
    LayerStats,
    _scores_general,
    damp,
    default_jitter,
    expansion_scores,
    layer_stats,
    natural_score,
    output_gradient_moment,
    tied_expansion_score,
)

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=F64)


def _spd(g: torch.Generator, n: int) -> torch.Tensor:
    m = _randn(g, n, n)
    return m @ m.T + 0.1 * torch.eye(n, dtype=F64)


def _with_ones(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1)


def _explicit_eta(a: torch.Tensor, d: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """``Tr[grad_W A^-1 grad_W^T G^-1]`` formed explicitly (A and G invertible)."""
    n = a.shape[0]
    grad_w = d.T @ a / n
    return torch.trace(grad_w @ torch.linalg.solve(a.T @ a / n, grad_w.T) @ torch.linalg.inv(G))


def _random_case(seed: int):
    """Random layer (a with the ones column, d, G) and P candidate sets f (P, N, k)."""
    g = _gen(seed)
    n_a = int(torch.randint(1, 7, (1,), generator=g))
    n_out = int(torch.randint(1, 5, (1,), generator=g))
    k = int(torch.randint(1, 4, (1,), generator=g))
    n = int(torch.randint(n_a + k + 15, 80, (1,), generator=g))
    p = 3
    a = _with_ones(_randn(g, n, n_a - 1) * (0.5 + torch.rand(n_a - 1, generator=g, dtype=F64)) + _randn(g, n_a - 1))
    # candidates partly explained by the inputs, so S differs from E[f f^T]
    f = torch.einsum("na,pak->pnk", a, _randn(g, p, n_a, k)) + _randn(g, p, n, k)
    d = a @ _randn(g, n_a, n_out) + f[0] @ _randn(g, k, n_out) + _randn(g, n, n_out)
    return a, d, _spd(g, n_out), f


@pytest.mark.parametrize("seed", range(200))
def test_exact_score_is_the_increase_of_eta_and_bound_is_below(seed):
    a, d, G, f = _random_case(seed)
    exact, bound = expansion_scores(layer_stats(a, d, G), f)
    base = _explicit_eta(a, d, G)
    for i in range(f.shape[0]):
        increase = _explicit_eta(torch.cat([a, f[i]], 1), d, G) - base
        assert torch.isclose(exact[i], increase, rtol=1e-4, atol=1e-10), (seed, i, exact[i], increase)
        assert bound[i] <= exact[i] + 1e-10, (seed, i, bound[i], exact[i])
        assert bound[i] >= 0


@pytest.mark.parametrize("seed", range(20))
def test_k1_fast_path_equals_general_path(seed):
    a, d, G, _ = _random_case(seed)
    f = _randn(_gen(1000 + seed), 5, a.shape[0], 1) + a[:, :1].unsqueeze(0)
    stats = layer_stats(a, d, G)
    fast = expansion_scores(stats, f)
    general = _scores_general(stats, f, default_jitter(F64))
    for x, y in zip(fast, general):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("k", [1, 3])
def test_exact_score_ignores_parts_in_the_span_of_the_inputs(k):
    """Projection of r and f: adding any combination of existing inputs to f leaves the exact score."""
    g = _gen(7)
    a = _with_ones(_randn(g, 60, 4))
    d = a @ _randn(g, 5, 3) + _randn(g, 60, 3)
    stats = layer_stats(a, d, _spd(g, 3))
    f = _randn(g, 4, 60, k)
    shifted = f + torch.einsum("na,pak->pnk", a, 3.0 * _randn(g, 4, 5, k))
    exact, bound = expansion_scores(stats, f)
    exact_shifted, bound_shifted = expansion_scores(stats, shifted)
    torch.testing.assert_close(exact_shifted, exact, rtol=1e-8, atol=1e-12)
    assert not torch.allclose(bound_shifted, bound, rtol=1e-2)  # the bound does depend on it


def test_existing_input_scores_zero_although_it_correlates_with_the_gradient():
    g = _gen(3)
    a = _with_ones(_randn(g, 100, 3))
    d = 2.0 * a[:, :1] + 0.1 * _randn(g, 100, 2)  # the gradient is explained by input 0
    G = damp(output_gradient_moment(d))
    stats = layer_stats(a, d, G)
    f = a[:, 0].reshape(1, 100, 1).clone().requires_grad_(True)
    raw = (f[0, :, 0] @ d / 100).square().sum()  # what an unprojected C = E[f d^T] would see
    assert raw > 1.0
    exact, bound = expansion_scores(stats, f)
    assert exact.item() < 1e-8 * stats.eta.item() and bound.item() < 1e-8 * stats.eta.item()
    exact.sum().backward()
    assert torch.isfinite(f.grad).all()


def test_layer_stats_eta_residual_and_natural_score_agree():
    a, d, G, _ = _random_case(11)
    stats = layer_stats(a, d, G)
    n = a.shape[0]
    assert isinstance(stats, LayerStats) and stats.n == n
    assert stats.input_whitening.cholesky is not None
    torch.testing.assert_close(stats.eta, _explicit_eta(a, d, G))
    torch.testing.assert_close(natural_score(d.T @ a / n, a.T @ a / n, G), _explicit_eta(a, d, G))
    torch.testing.assert_close(a.T @ stats.residual / n, torch.zeros(a.shape[1], d.shape[1], dtype=F64),
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(stats.inputs_white.T @ stats.inputs_white / n,
                               torch.eye(a.shape[1], dtype=F64), atol=1e-10, rtol=0)


def test_natural_score_is_batched():
    a, d, G = _with_ones(_randn(_gen(5), 40, 3)), _randn(_gen(6), 40, 2), _spd(_gen(7), 2)
    grad_w, A = d.T @ a / 40, a.T @ a / 40
    batched = natural_score(torch.stack([grad_w, 2 * grad_w]), torch.stack([A, A]), torch.stack([G, G]))
    torch.testing.assert_close(batched, torch.stack([_explicit_eta(a, d, G), 4 * _explicit_eta(a, d, G)]))


def test_constant_input_column_rank_deficient_inputs():
    g = _gen(4)
    x = _randn(g, 50, 3)
    a_full = _with_ones(torch.cat([x, torch.full((50, 1), 3.0, dtype=F64)], 1))  # constant column
    a_reduced = _with_ones(x)
    d = _randn(g, 50, 2)
    G = _spd(g, 2)
    stats = layer_stats(a_full, d, G)
    assert stats.input_whitening.cholesky is None and stats.input_whitening.rank == 4
    eta = _explicit_eta(a_reduced, d, G)
    torch.testing.assert_close(stats.eta, eta)
    torch.testing.assert_close(natural_score(d.T @ a_full / 50, a_full.T @ a_full / 50, G), eta)
    f = _randn(g, 6, 50, 2).requires_grad_(True)
    exact, bound = expansion_scores(stats, f)
    exact_reduced, bound_reduced = expansion_scores(layer_stats(a_reduced, d, G), f)
    torch.testing.assert_close(exact, exact_reduced)
    torch.testing.assert_close(bound, bound_reduced)
    (exact + bound).sum().backward()
    assert torch.isfinite(f.grad).all()


@pytest.mark.parametrize("k", [1, 2])
def test_zero_candidate_scores_exactly_zero_with_finite_gradient(k):
    a, d, G, _ = _random_case(21)
    f = torch.zeros(3, a.shape[0], k, dtype=F64, requires_grad=True)
    exact, bound = expansion_scores(layer_stats(a, d, G), f)
    assert exact.eq(0).all() and bound.eq(0).all()
    (exact + bound).sum().backward()
    assert torch.isfinite(f.grad).all()


@pytest.mark.parametrize("k", [1, 2])
def test_candidate_in_span_of_inputs_scores_about_zero(k):
    a, d, G, _ = _random_case(22)
    stats = layer_stats(a, d, G)
    f = torch.einsum("na,pak->pnk", a, _randn(_gen(1), 4, a.shape[1], k)).requires_grad_(True)
    exact, bound = expansion_scores(stats, f)
    assert torch.isfinite(exact).all() and (exact.abs() < 1e-8 * stats.eta).all()
    assert (bound.abs() < 1e-8 * stats.eta).all()
    (exact + bound).sum().backward()
    assert torch.isfinite(f.grad).all()


def test_duplicated_candidate_column_scores_as_the_single_column():
    """S singular but not zero: the repeated column adds nothing beyond the first."""
    a, d, G, _ = _random_case(23)
    stats = layer_stats(a, d, G)
    single = _randn(_gen(2), 3, a.shape[0], 1)
    exact_single, _ = expansion_scores(stats, single)
    exact_twice, bound_twice = expansion_scores(stats, torch.cat([single, single], 2))
    torch.testing.assert_close(exact_twice, exact_single, rtol=1e-6, atol=1e-10)
    assert torch.isfinite(bound_twice).all()


@pytest.mark.parametrize("k", [1, 2])
def test_zero_output_gradients(k):
    a, _, _, _ = _random_case(24)
    d = torch.zeros(a.shape[0], 3, dtype=F64)
    G = damp(output_gradient_moment(d))
    stats = layer_stats(a, d, G)
    assert stats.eta == 0 and stats.gradient_whitening.rank == 0
    f = _randn(_gen(3), 2, a.shape[0], k).requires_grad_(True)
    exact, bound = expansion_scores(stats, f)
    assert exact.eq(0).all() and bound.eq(0).all()
    (exact + bound).sum().backward()
    assert torch.isfinite(f.grad).all()
    assert natural_score(d.T @ a, a.T @ a, G) == 0


@pytest.mark.parametrize("k", [1, 2])
def test_gradient_matches_finite_differences(k):
    g = _gen(8)
    a = _with_ones(_randn(g, 12, 2))
    d = _randn(g, 12, 2)
    stats = layer_stats(a, d, _spd(g, 2))
    f = _randn(g, 2, 12, k).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: expansion_scores(stats, x), (f,), eps=1e-6, atol=1e-6)


def test_damp_and_output_gradient_moment():
    G = torch.tensor([[2.0, 1.0], [1.0, 4.0]], dtype=F64)
    torch.testing.assert_close(damp(G, 0.5), G + 1.5 * torch.eye(2, dtype=F64))
    torch.testing.assert_close(damp(G), G + 0.3 * torch.eye(2, dtype=F64))
    d = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=F64)
    unit = torch.tensor([0.6, 0.8], dtype=F64)
    torch.testing.assert_close(output_gradient_moment(d), torch.outer(unit, unit) / 2)
    torch.testing.assert_close(output_gradient_moment(d, normalise=False), torch.outer(d[0], d[0]) / 2)


@pytest.mark.parametrize("call, match", [
    (lambda s: expansion_scores(s, torch.zeros(2, 30, dtype=F64)), "f must be"),
    (lambda s: expansion_scores(s, torch.zeros(2, 29, 1, dtype=F64)), "N=30"),
    (lambda s: expansion_scores(s, torch.zeros(2, 30, 1, dtype=F64), eps=-1.0),
     "eps must be a number >= 0, got eps=-1.0"),
    (lambda s: damp(torch.eye(2, dtype=F64), rel=-0.1), "rel must be a number >= 0, got rel=-0.1"),
    (lambda s: damp(torch.zeros(2, 3, dtype=F64)), "square"),
    (lambda s: layer_stats(torch.zeros(30, 2, dtype=F64), torch.zeros(29, 2, dtype=F64),
                           torch.eye(2, dtype=F64)), "shapes must be"),
    (lambda s: natural_score(torch.zeros(2, 3, dtype=F64), torch.eye(2, dtype=F64), torch.eye(2, dtype=F64)),
     "shapes must be"),
])
def test_bad_arguments_raise(call, match):
    a = _with_ones(_randn(_gen(9), 30, 2))
    stats = layer_stats(a, _randn(_gen(10), 30, 2), torch.eye(2, dtype=F64))
    with pytest.raises(ValueError, match=match):
        call(stats)


@pytest.mark.parametrize("seed", range(20))
def test_tied_score_equals_the_exact_score_for_free_outgoing_weights_and_is_lower_when_tied(seed):
    from selfexpand.strategies.senn.natural_scores import tied_expansion_score

    a, d, G, f = _random_case(seed)
    stats = layer_stats(a, d, G)
    exact, _ = expansion_scores(stats, f[:1])
    n, k, n_out = f.shape[1], f.shape[2], d.shape[1]
    free = torch.einsum("nk,op->nokp", f[0], torch.eye(n_out, dtype=F64)).reshape(n, n_out, k * n_out)
    assert torch.isclose(tied_expansion_score(stats, free, G), exact[0], rtol=1e-6, atol=1e-12)
    g = _gen(1000 + seed)
    u = _randn(g, n_out, k)  # each feature's outgoing weights fixed along u[:, j], one shared parameter
    tied = torch.einsum("nk,ok->no", f[0], u).unsqueeze(-1)
    assert tied_expansion_score(stats, tied, G) <= exact[0] * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize("call, name", [
    (lambda s: expansion_scores(s, torch.zeros(2, 30, 1, dtype=F64), eps=float("nan")), "eps"),
    (lambda s: expansion_scores(s, torch.zeros(2, 30, 1, dtype=F64), eps=float("inf")), "eps"),
    (lambda s: damp(torch.eye(2, dtype=F64), rel=True), "rel"),
    (lambda s: damp(torch.eye(2, dtype=F64), rel=float("nan")), "rel"),
    (lambda s: natural_score(torch.zeros(2, 2, dtype=F64), torch.eye(2, dtype=F64), torch.eye(2, dtype=F64),
                             rtol=-1.0), "rtol"),
    (lambda s: tied_expansion_score(s, torch.zeros(30, 2, 1, dtype=F64), torch.eye(2, dtype=F64), eps=-1e-3),
     "eps"),
])
def test_bad_settings_raise_config_error_naming_the_setting(call, name):
    a = _with_ones(_randn(_gen(9), 30, 2))
    stats = layer_stats(a, _randn(_gen(10), 30, 2), torch.eye(2, dtype=F64))
    with pytest.raises(ConfigError, match=f"^{name} must be a number >= 0, got {name}="):
        call(stats)


def test_bad_tensors_raise_config_error():
    with pytest.raises(ConfigError, match="square"):
        damp(torch.zeros(2, 3, dtype=F64))
    with pytest.raises(ConfigError, match="a must be a floating-point tensor"):
        layer_stats(torch.zeros(30, 2, dtype=torch.long), torch.zeros(30, 2, dtype=F64), torch.eye(2, dtype=F64))

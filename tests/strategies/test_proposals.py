"""Vectorised candidate search: MALA, gradient ascent, softmax and best choice."""

from __future__ import annotations

import math

import pytest
import torch

from selfexpand.errors import ConfigError
from selfexpand.strategies.senn.proposals import best_choice, gradient_ascent, mala, softmax_choice

F64 = torch.float64
MU = torch.tensor([1.0, -2.0], dtype=F64)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _gaussian(sigma: float):
    """log N(MU, sigma^2 I) up to a constant."""
    return lambda t: -0.5 * (t - MU).square().sum(1) / sigma**2


def test_mala_samples_a_gaussian_and_adapts_acceptance():
    g = _gen(0)
    sigma = 0.7
    init = 3.0 * torch.randn(1000, 2, generator=g, dtype=F64)  # overdispersed start
    states, logp, acceptance = mala(_gaussian(sigma), init, bursts=40, steps=10, generator=g)
    assert states.shape == (1000, 2) and logp.shape == (1000,)
    torch.testing.assert_close(logp, _gaussian(sigma)(states))
    # standard errors: mean sigma / sqrt(1000) = 0.022, variance sigma^2 * sqrt(2 / 1000) = 0.022
    torch.testing.assert_close(states.mean(0), MU, atol=0.09, rtol=0)
    torch.testing.assert_close(states.var(0), torch.full((2,), sigma**2, dtype=F64), atol=0.09, rtol=0)
    assert abs(acceptance - 0.6) < 0.05


def test_mala_metropolis_correction_removes_the_langevin_bias():
    """Step h = sigma^2 without adaptation: unadjusted Langevin would have variance 2 sigma^2.

    With h = sigma^2 the proposal is N(MU, 2 sigma^2) whatever the state (an independence sampler); an
    MH test without the proposal densities would give variance 2/3 sigma^2. Only the proper
    correction gives sigma^2.
    """
    g = _gen(1)
    init = MU + torch.randn(2000, 2, generator=g, dtype=F64)
    states, _, acceptance = mala(_gaussian(1.0), init, bursts=1, steps=200, step_size=1.0, generator=g)
    # standard error of each variance: sqrt(2 / 2000) = 0.032
    torch.testing.assert_close(states.var(0), torch.ones(2, dtype=F64), atol=0.12, rtol=0)
    torch.testing.assert_close(states.mean(0), MU, atol=0.1, rtol=0)
    assert 0.3 < acceptance < 0.95


def test_mala_is_deterministic_under_a_seed():
    init = torch.randn(20, 3, generator=_gen(2), dtype=F64)
    density = _gaussian(1.0)
    first = mala(lambda t: density(t[:, :2]) - t[:, 2].square(), init, bursts=3, steps=5, generator=_gen(5))
    again = mala(lambda t: density(t[:, :2]) - t[:, 2].square(), init, bursts=3, steps=5, generator=_gen(5))
    other = mala(lambda t: density(t[:, :2]) - t[:, 2].square(), init, bursts=3, steps=5, generator=_gen(6))
    assert torch.equal(first.states, again.states) and first.acceptance_rate == again.acceptance_rate
    assert not torch.equal(first.states, other.states)


def test_mala_never_accepts_a_state_of_zero_density():
    def half_plane(t):
        return torch.where(t[:, 0] > 0, -0.5 * t.square().sum(1), torch.full_like(t[:, 0], -math.inf))

    init = torch.rand(200, 2, generator=_gen(3), dtype=F64) + 0.1
    states, logp, _ = mala(half_plane, init, bursts=5, steps=10, step_size=1.0, generator=_gen(4))
    assert (states[:, 0] > 0).all() and torch.isfinite(logp).all()


def test_mala_adapts_a_bad_step_size():
    g = _gen(7)
    init = MU + torch.randn(300, 2, generator=g, dtype=F64)
    for step in (1e-4, 30.0):
        _, _, acceptance = mala(_gaussian(1.0), init, bursts=60, steps=10, step_size=step, generator=g)
        assert abs(acceptance - 0.6) < 0.08, step


def test_gradient_ascent_reaches_the_maximum_of_a_concave_quadratic():
    g = _gen(8)
    H = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64)
    peaks = torch.randn(50, 2, generator=g, dtype=F64)

    def objective(t):
        return 3.0 - torch.einsum("pi,ij,pj->p", t - peaks, H, t - peaks)

    init = 3.0 * torch.randn(50, 2, generator=g, dtype=F64)
    before = init.clone()
    states, values = gradient_ascent(objective, init, steps=500, lr=0.1)
    torch.testing.assert_close(states, peaks, atol=1e-4, rtol=0)
    torch.testing.assert_close(values, torch.full((50,), 3.0, dtype=F64), atol=1e-7, rtol=0)
    assert torch.equal(init, before)  # the input is not modified
    # the chains are independent: a subset ascends exactly as inside the batch
    peaks = peaks[:5]
    alone, _ = gradient_ascent(objective, init[:5], steps=500, lr=0.1)
    torch.testing.assert_close(alone, states[:5], atol=1e-12, rtol=0)


def test_softmax_choice_weights_and_mean_by_hand():
    scores = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    temperature = 0.5
    weights = [math.exp(s / temperature) for s in (1.0, 2.0, 3.0)]
    total = sum(weights)
    weights = [w / total for w in weights]
    g = _gen(9)
    counts = [0, 0, 0]
    for _ in range(4000):
        index, mean = softmax_choice(scores, temperature, g)
        counts[index] += 1
    assert mean == pytest.approx(sum(w * s for w, s in zip(weights, (1.0, 2.0, 3.0))), rel=1e-12)
    for count, weight in zip(counts, weights):
        assert count / 4000 == pytest.approx(weight, abs=0.03)


def test_softmax_choice_tends_to_argmax_and_skips_minus_inf():
    scores = torch.tensor([0.3, -math.inf, 0.9, 0.1], dtype=F64)
    g = _gen(10)
    for temperature in (1e-6, 1e-300, 0.0):
        index, mean = softmax_choice(scores, temperature, g)
        assert index == 2 and mean == pytest.approx(0.9)
    picks = {softmax_choice(scores, 10.0, g)[0] for _ in range(300)}
    assert 1 not in picks and picks == {0, 2, 3}
    _, mean = softmax_choice(scores, 1e9, g)
    assert mean == pytest.approx((0.3 + 0.9 + 0.1) / 3)
    assert best_choice(scores) == (2, pytest.approx(0.9))


def test_softmax_choice_is_deterministic_under_a_seed():
    scores = torch.linspace(0, 1, 20, dtype=F64)
    first = [softmax_choice(scores, 0.3, g)[0] for g in [_gen(11)] for _ in range(50)]
    again = [softmax_choice(scores, 0.3, g)[0] for g in [_gen(11)] for _ in range(50)]
    assert first == again


@pytest.mark.parametrize("scores, temperature, match", [
    (torch.tensor([1.0, math.nan]), 1.0, "NaN or \\+inf"),
    (torch.tensor([1.0, math.inf]), 1.0, "NaN or \\+inf"),
    (torch.tensor([-math.inf, -math.inf]), 1.0, "at least one score must be finite"),
    (torch.tensor([]), 1.0, "non-empty 1-D"),
    (torch.zeros(2, 2), 1.0, "non-empty 1-D"),
    (torch.tensor([1.0]), -0.1, "temperature must be a number >= 0, got temperature=-0.1"),
    (torch.tensor([1.0]), math.nan, "temperature must be a number >= 0, got temperature=nan"),
    (torch.tensor([1.0]), math.inf, "temperature must be a number >= 0, got temperature=inf"),
])
def test_softmax_choice_rejects_bad_input(scores, temperature, match):
    with pytest.raises(ValueError, match=match):
        softmax_choice(scores, temperature, _gen(0))


def test_best_choice_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one score must be finite"):
        best_choice(torch.tensor([-math.inf]))
    with pytest.raises(ValueError, match="NaN"):
        best_choice(torch.tensor([0.0, math.nan]))


_INIT = torch.zeros(4, 2, dtype=F64)


@pytest.mark.parametrize("kwargs, match", [
    (dict(bursts=0, steps=1), "bursts must be a positive integer, got bursts=0"),
    (dict(bursts=1, steps=2.5), "steps must be a positive integer, got steps=2.5"),
    (dict(bursts=1, steps=1, step_size=0.0), "step_size must be a number > 0, got step_size=0.0"),
    (dict(bursts=1, steps=1, step_size=math.inf), "step_size must be a number > 0, got step_size=inf"),
    (dict(bursts=1, steps=1, target_accept=1.0), "target_accept must be a number in \\(0, 1\\), got target_accept=1.0"),
    (dict(bursts=1, steps=1, init=torch.zeros(4)), "init must be a floating-point tensor \\(P, D\\)"),
    (dict(bursts=1, steps=1, init=torch.zeros(4, 2, dtype=torch.long)), "init must be"),
    (dict(bursts=1, steps=1, density=lambda t: t), "must return a tensor of shape \\(4,\\)"),
    (dict(bursts=1, steps=1, density=lambda t: t[:, 0] - math.inf), "log_density\\(init\\) must be finite"),
])
def test_mala_rejects_bad_input(kwargs, match):
    init = kwargs.pop("init", _INIT)
    density = kwargs.pop("density", _gaussian(1.0))
    with pytest.raises(ValueError, match=match):
        mala(density, init, generator=_gen(0), **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0, lr=0.1), "steps must be a positive integer, got steps=0"),
    (dict(steps=True, lr=0.1), "steps must be a positive integer, got steps=True"),
    (dict(steps=1, lr=0.0), "lr must be a number > 0, got lr=0.0"),
    (dict(steps=1, lr=math.nan), "lr must be a number > 0, got lr=nan"),
])
def test_gradient_ascent_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gradient_ascent(_gaussian(1.0), _INIT, **kwargs)


@pytest.mark.parametrize("call, name", [
    (lambda: mala(_gaussian(1.0), _INIT, bursts=1, steps=1, step_size=0), "step_size"),
    (lambda: mala(_gaussian(1.0), _INIT, bursts=1, steps=1, step_size=True), "step_size"),
    (lambda: mala(_gaussian(1.0), _INIT, bursts=True, steps=1), "bursts"),
    (lambda: mala(_gaussian(1.0), _INIT, bursts=1, steps=1, target_accept=math.nan), "target_accept"),
    (lambda: gradient_ascent(_gaussian(1.0), _INIT, steps=1, lr=math.inf), "lr"),
    (lambda: softmax_choice(torch.tensor([1.0]), True), "temperature"),
])
def test_bad_settings_raise_config_error_naming_the_setting(call, name):
    with pytest.raises(ConfigError, match=f"^{name} must be .*, got {name}="):
        call()


@pytest.mark.parametrize("call", [
    lambda: mala(_gaussian(1.0), torch.zeros(4), bursts=1, steps=1),
    lambda: mala(lambda t: t[:, 0] - math.inf, _INIT, bursts=1, steps=1),
    lambda: gradient_ascent(lambda t: t, _INIT, steps=1, lr=0.1),
    lambda: best_choice(torch.tensor([-math.inf])),
])
def test_bad_tensors_raise_config_error(call):
    with pytest.raises(ConfigError):
        call()

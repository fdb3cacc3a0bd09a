"""Vectorised candidate search for SENN (ALGORITHMS.md section 3): MALA, gradient ascent, the choice.

All searches run P independent chains at once on a (P, D) tensor of parameters; the objective or log
density maps (P, D) to (P,) and must be differentiable. Every random draw comes from the given
``torch.Generator``, so a search is deterministic under a seed.
"""

from __future__ import annotations

import logging
import math
from contextlib import AbstractContextManager, nullcontext
from typing import Callable, NamedTuple

import torch

from ...errors import ConfigError
from ...validators import number, positive_int

__all__ = ["MalaResult", "AscentResult", "mala", "gradient_ascent", "softmax_choice", "best_choice"]

logger = logging.getLogger(__name__)

Objective = Callable[[torch.Tensor], torch.Tensor]


class MalaResult(NamedTuple):
    """Final MALA states (P, D), their log densities (P,), and the last burst's acceptance rate."""

    states: torch.Tensor
    log_densities: torch.Tensor
    acceptance_rate: float


class AscentResult(NamedTuple):
    """Final gradient-ascent states (P, D) and their objective values (P,)."""

    states: torch.Tensor
    values: torch.Tensor


def _check_init(init: torch.Tensor) -> None:
    if not isinstance(init, torch.Tensor) or init.ndim != 2 or not init.is_floating_point():
        shape = tuple(init.shape) if isinstance(init, torch.Tensor) else type(init).__name__
        raise ConfigError(f"init must be a floating-point tensor (P, D), got {shape}")


def _value_and_grad(fn: Objective, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``fn(theta)`` (P,) and its gradient with respect to ``theta`` (P, D), both detached."""
    with torch.enable_grad():
        leaf = theta.detach().requires_grad_(True)
        value = fn(leaf)
        if not isinstance(value, torch.Tensor) or value.shape != (theta.shape[0],):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ConfigError(f"the objective must return a tensor of shape ({theta.shape[0]},), got {shape}")
        (grad,) = torch.autograd.grad(value.sum(), leaf, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(theta)
    return value.detach(), grad.detach()


def _log_proposal(to: torch.Tensor, start: torch.Tensor, grad: torch.Tensor, step: float) -> torch.Tensor:
    """``log q(to | start)`` up to a constant, for ``to ~ N(start + step * grad, 2 * step * I)``."""
    return -(to - start - step * grad).square().sum(1) / (4.0 * step)


def mala(log_density: Objective, init: torch.Tensor, *, bursts: int, steps: int, step_size: float = 0.3,
         target_accept: float = 0.6, generator: torch.Generator | None = None,
         step_context: Callable[[], AbstractContextManager] | None = None) -> MalaResult:
    """Metropolis-adjusted Langevin over P independent chains at once.

    Proposal ``theta' = theta + h * grad log p(theta) + sqrt(2 h) * xi``, ``xi ~ N(0, I)``, accepted with
    probability ``min(1, p(theta') q(theta | theta') / (p(theta) q(theta' | theta)))`` using the
    asymmetric Langevin proposal densities ``q``. The chains run ``bursts`` bursts of ``steps`` steps;
    after each burst the step size ``h``, **one shared by all chains**, is multiplied by
    ``exp(acceptance - target_accept)`` (acceptance over all chains and steps of the burst). Within a
    burst the kernel is a proper MH kernel that leaves ``p`` invariant. A proposal whose log density or
    gradient is not finite is rejected.

    Args:
        log_density: maps (P, D) to (P,) log densities (up to constants), differentiable.
        init: (P, D) initial states; their log densities must be finite.
        bursts: number of bursts (the reference: 300).
        steps: steps per burst (the reference: 10).
        step_size: initial ``h`` (the reference: 0.3).
        target_accept: acceptance rate the step size is adapted towards, in (0, 1).
        generator: the source of every random draw.
        step_context: a context-manager factory entered around each step (each runs the same
            operations on tensors of the same shapes), e.g. ``FlopMeter.repeats()``.

    Returns:
        :class:`MalaResult`: final states, their log densities, and the last burst's acceptance rate.

    Raises:
        ConfigError: a bad argument, or an initial log density that is not finite.
    """
    _check_init(init)
    positive_int("bursts", bursts)
    positive_int("steps", steps)
    h = number("step_size", step_size, 0, low_open=True)
    target_accept = number("target_accept", target_accept, 0, 1, low_open=True, high_open=True)
    theta = init.detach().clone()
    logp, grad = _value_and_grad(log_density, theta)
    if not bool(torch.isfinite(logp).all()):
        raise ConfigError("log_density(init) must be finite for every chain, got "
                          f"{int((~torch.isfinite(logp)).sum())} non-finite value(s)")
    grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
    chains = theta.shape[0]
    acceptance = 0.0
    step_context = step_context or nullcontext
    for burst in range(bursts):
        accepted = torch.zeros((), dtype=torch.float64)
        for _ in range(steps):
            noise = torch.randn(theta.shape, generator=generator, dtype=theta.dtype, device=theta.device)
            uniform = torch.rand(chains, generator=generator, dtype=theta.dtype, device=theta.device)
            proposal = theta + h * grad + math.sqrt(2.0 * h) * noise
            with step_context():
                logp_new, grad_new = _value_and_grad(log_density, proposal)
            log_ratio = (logp_new + _log_proposal(theta, proposal, grad_new, h)
                         - logp - _log_proposal(proposal, theta, grad, h))
            finite = torch.isfinite(log_ratio) & torch.isfinite(grad_new).all(1)
            accept = finite & (torch.log(uniform) < torch.where(finite, log_ratio, torch.zeros_like(log_ratio)))
            theta = torch.where(accept[:, None], proposal, theta)
            logp = torch.where(accept, logp_new, logp)
            grad = torch.where(accept[:, None], grad_new, grad)
            accepted = accepted + accept.sum()
        acceptance = float(accepted) / (steps * chains)
        h *= math.exp(acceptance - target_accept)
        logger.debug("mala burst %d: acceptance %.3f, step size now %.3g", burst, acceptance, h)
    return MalaResult(theta, logp, acceptance)


def gradient_ascent(objective: Objective, init: torch.Tensor, *, steps: int, lr: float,
                    generator: torch.Generator | None = None,
                    step_context: Callable[[], AbstractContextManager] | None = None) -> AscentResult:
    """P independent gradient ascents at once with Adam (betas 0.9, 0.999) on ``objective(theta).sum()``.

    Adam acts element-wise and each chain's value depends only on its own row, so the chains do not
    interact. Non-finite gradient entries are replaced by 0.

    Args:
        objective: maps (P, D) to (P,) values to maximise, differentiable.
        init: (P, D) initial states.
        steps: number of Adam steps.
        lr: Adam learning rate, > 0.
        generator: unused (the ascent is deterministic); accepted so that searches share a signature.
        step_context: as :func:`mala`'s, entered around each step's objective and gradient.

    Returns:
        :class:`AscentResult`: the final states and their objective values.

    Raises:
        ConfigError: a bad argument.
    """
    del generator
    _check_init(init)
    positive_int("steps", steps)
    lr = number("lr", lr, 0, low_open=True)
    theta = init.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=lr)
    step_context = step_context or nullcontext
    for _ in range(steps):
        with step_context():
            _, grad = _value_and_grad(objective, theta)
        theta.grad = -torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
        optimizer.step()
    states = theta.detach()
    with torch.no_grad():
        values = objective(states).detach()
    return AscentResult(states, values)


def _check_scores(scores: torch.Tensor) -> torch.Tensor:
    if not isinstance(scores, torch.Tensor) or scores.ndim != 1 or scores.numel() == 0:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ConfigError(f"scores must be a non-empty 1-D tensor, got {shape}")
    scores = scores.detach().to(torch.float64)
    if bool(torch.isnan(scores).any()) or bool((scores == math.inf).any()):
        raise ConfigError(f"scores must not be NaN or +inf (-inf means 'never choose'), got {scores.tolist()}")
    if not bool(torch.isfinite(scores).any()):
        raise ConfigError(f"at least one score must be finite, got {scores.tolist()}")
    return scores


def best_choice(scores: torch.Tensor) -> tuple[int, float]:
    """Return ``(argmax, max)`` of the scores (the first maximum); -inf scores are never chosen.

    Raises:
        ConfigError: ``scores`` is not a non-empty 1-D tensor, holds NaN or +inf, or is all -inf.
    """
    scores = _check_scores(scores)
    index = int(torch.argmax(scores))
    return index, float(scores[index])


def softmax_choice(scores: torch.Tensor, temperature: float,
                   generator: torch.Generator | None = None) -> tuple[int, float]:
    """Sample an index from ``w = softmax(scores / temperature)``; return it and ``sum_i w_i scores_i``.

    The reference's choice among proposals: the mean is what the acceptance test uses, the sampled
    index the unit added. Scores of -inf get weight 0. ``temperature = 0`` is the limit: the weights
    concentrate on the maxima and the result is :func:`best_choice`.

    Args:
        scores: (P,) proposal scores.
        temperature: ``>= 0`` and finite.
        generator: the source of the random draw.

    Returns:
        ``(index, weighted mean score)``.

    Raises:
        ConfigError: ``temperature`` is negative or not finite; ``scores`` is not a non-empty 1-D
            tensor, holds NaN or +inf, or is all -inf.
    """
    temperature = number("temperature", temperature, 0)
    scores = _check_scores(scores)
    if temperature == 0:
        return best_choice(scores)
    finite = torch.isfinite(scores)
    top = scores[finite].max()
    weights = torch.softmax((scores - top) / temperature, dim=0)  # exp(-inf) = 0 for -inf scores
    index = int(torch.multinomial(weights, 1, generator=generator))
    mean = float((weights[finite] * scores[finite]).sum())
    return index, mean

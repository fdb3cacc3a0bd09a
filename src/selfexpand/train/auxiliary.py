"""Auxiliary losses: terms a model's own modules add to the training objective.

Any submodule of the model (typically a unit modulator) that defines ``auxiliary_loss() -> scalar
tensor`` contributes it: the trainer minimises ``task_loss + sum of auxiliary losses`` on every
batch. This is how the size losses of ALGORITHMS.md §4 enter training (``lambda (N - N_inf)^2`` of
the size weight, ``0.32 (c - 1)^2`` of the controller) without the trainer knowing about them.
The recorded ``train_loss`` and every validation or test figure stay the task loss alone.
"""

from __future__ import annotations

import torch

__all__ = ["auxiliary_loss", "auxiliary_terms"]


def auxiliary_terms(model: torch.nn.Module) -> list:
    """The ``auxiliary_loss`` methods of the model's modules. The module tree changes only when the
    model grows, so a training loop looks them up once per epoch, not once per batch."""
    return [term for module in model.modules() if callable(term := getattr(module, "auxiliary_loss", None))]


def auxiliary_loss(model: torch.nn.Module, terms: list | None = None) -> torch.Tensor | None:
    """The sum of ``module.auxiliary_loss()`` over the model's modules that define it (or over
    ``terms`` from :func:`auxiliary_terms`), or None when there is none."""
    total = None
    for term in auxiliary_terms(model) if terms is None else terms:
        value = term()
        total = value if total is None else total + value
    return total

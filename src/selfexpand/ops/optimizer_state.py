"""Optimizer state carried across growth (DESIGN.md "Optimizer state is carried").

When a parameter is replaced by a resized one, its state is resized with it: old entries keep their
state exactly, new entries start with first moment / momentum 0 and second moment equal to the mean of
the tensor's existing second moments (0 if it had none); the step count is kept. A connection whose
storage changes (``graph.sparse``) keeps each live edge's state exactly; a masked entry it gains starts
as a new one. Works for torch's
SGD, Adam, AdamW and RMSprop (and any optimizer whose per-parameter state holds tensors shaped like
the parameter plus scalars).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SECOND_MOMENT_KEYS", "resize_like", "carry_state", "zero_first_moments"]

# Per-parameter state tensors that estimate a second moment; any other parameter-shaped state
# tensor (exp_avg, momentum_buffer, grad_avg, ...) is a first moment and starts at 0.
SECOND_MOMENT_KEYS = frozenset({"exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum"})


def resize_like(old: torch.Tensor, sources: tuple[torch.Tensor, ...], fill: float) -> torch.Tensor:
    """A new tensor whose entry ``i`` (per dimension) is ``old[sources[d][i]]``, or ``fill`` where -1.

    Args:
        old: the old tensor (1-D or 2-D).
        sources: one 1-D index tensor per dimension, ``-1`` marking a new position; or one tensor of
            the new shape holding each new entry's flat index into ``old`` (a storage change,
            ``graph.sparse``: dense to sparse or back).
        fill: value of new entries.
    """
    if len(sources) != old.dim() or sources[0].dim() != 1:
        flat = sources[0]
        padded = torch.cat([old.reshape(-1), old.new_full((1,), fill)])
        return padded[torch.where(flat >= 0, flat, old.numel())]
    # One padding slot per dimension holds ``fill``; -1 sources point at it. ``index_select`` per
    # dimension is several times faster than 2-D advanced indexing on CPU.
    padded = old.new_full(tuple(n + 1 for n in old.shape), fill)
    padded[tuple(slice(0, n) for n in old.shape)] = old
    for dim, (source, n) in enumerate(zip(sources, old.shape)):
        padded = padded.index_select(dim, torch.where(source >= 0, source, n))
    return padded


def _find(optimizer: torch.optim.Optimizer, param: nn.Parameter):
    for group in optimizer.param_groups:
        for i, p in enumerate(group["params"]):
            if p is param:
                return group, i
    return None, None


def carry_state(
    optimizer: torch.optim.Optimizer | None,
    replaced: list[tuple[nn.Parameter, nn.Parameter, tuple[torch.Tensor, ...]]],
    added: list[tuple[nn.Parameter, nn.Parameter | None]] = (),
    removed: list[nn.Parameter] = (),
) -> None:
    """Make ``optimizer`` track the new tensors after a growth op.

    Args:
        replaced: ``(old, new, sources)``: ``new`` replaces ``old``; ``sources`` as in :func:`resize_like`.
        added: ``(new, sibling)``: a brand-new parameter joins the group of ``sibling`` (group 0 if
            None or untracked); it starts with fresh state.
        removed: parameters that leave the optimizer with their state.
    """
    if optimizer is None:
        return
    for old, new, sources in replaced:
        group, i = _find(optimizer, old)
        if group is None:
            continue
        group["params"][i] = new
        state = optimizer.state.pop(old, None)
        if not state:
            continue
        fresh = {}
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == old.shape and value.dim() > 0:
                if key in SECOND_MOMENT_KEYS:
                    fill = float(value.float().mean()) if value.numel() else 0.0
                else:
                    fill = 0.0
                fresh[key] = resize_like(value, sources, fill)
            else:
                fresh[key] = value
        optimizer.state[new] = fresh
    for new, sibling in added:
        group = _find(optimizer, sibling)[0] if sibling is not None else None
        (group or optimizer.param_groups[0])["params"].append(new)
    for old in removed:
        group, i = _find(optimizer, old)
        if group is not None:
            del group["params"][i]
        optimizer.state.pop(old, None)


def zero_first_moments(optimizer: torch.optim.Optimizer | None, param: nn.Parameter,
                       entries: torch.Tensor) -> None:
    """Set the first-moment state of ``param`` to 0 at boolean ``entries`` (used when masking),
    so that a masked entry (stored as 0, gradient 0) takes no update, weight decay included."""
    if optimizer is None or param not in optimizer.state:
        return
    for key, value in optimizer.state[param].items():
        if torch.is_tensor(value) and value.shape == param.shape and key not in SECOND_MOMENT_KEYS:
            value[entries] = 0

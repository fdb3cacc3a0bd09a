"""The checkpoint half of the Lightning integration (``selfexpand.lightning``): finding a module's
:class:`~selfexpand.graph.GrowableNet`, saving its architecture in a Lightning checkpoint, rebuilding
it before Lightning loads the weights, and the optimizer's parameter order.

Imports no ``lightning``: everything here works on plain ``nn.Module`` objects and checkpoint dicts.

**The architecture.** ``checkpoint["selfexpand"]`` holds ``{"format": FORMAT, "net_attr": "net",
"spec": net.spec()}``: plain data, which ``torch.load(..., weights_only=True)`` (Lightning's default
on torch >= 2.6) reads. :func:`restore_architecture` replaces the module's network by a skeleton of the
saved spec (``GrowableNet.from_spec``), on the old network's device and dtype, so that the module's
state dict, grown tensors included, then loads strictly.

**The optimizer's order.** A growth op puts a resized parameter where the old one was in its group
and appends a new parameter to its sibling's group, so after growth the optimizer's order is no longer
the module's. Lightning restores an optimizer's state by position, into the optimizer that a fresh
``configure_optimizers`` builds in the module's order; :func:`reorder_optimizer` puts the fresh
optimizer's parameters back into the saved order (by name) first, so every state lands on its tensor.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from .errors import CheckpointError, ConfigError
from .graph.network import GrowableNet

__all__ = ["CHECKPOINT_KEY", "FORMAT", "find_net", "save_architecture", "restore_architecture",
           "optimizer_param_names", "reorder_optimizer"]

log = logging.getLogger("selfexpand.lightning")

CHECKPOINT_KEY = "selfexpand"
FORMAT = "selfexpand.lightning/1"


def _get(module: nn.Module, path: str):
    for name in path.split("."):
        module = getattr(module, name, None)
        if module is None:
            return None
    return module


def _set(module: nn.Module, path: str, value: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(_get(module, parent) if parent else module, name, value)


def find_net(module: nn.Module, net_attr: str | None = None) -> str:
    """The dotted attribute path of ``module``'s :class:`GrowableNet`: ``net_attr`` when given, else
    ``net`` when that is one, else the first ``GrowableNet`` among ``module.named_modules()``.

    Raises:
        ConfigError: ``net_attr`` is not a ``GrowableNet`` of the module, or there is none.
    """
    if net_attr is not None:
        found = _get(module, net_attr)
        if not isinstance(found, GrowableNet):
            raise ConfigError(f"net_attr must name a GrowableNet attribute of {type(module).__name__}, got "
                              f"net_attr={net_attr!r} ({type(found).__name__ if found is not None else 'missing'})")
        return net_attr
    if isinstance(getattr(module, "net", None), GrowableNet):
        return "net"
    for name, child in module.named_modules():
        if name and isinstance(child, GrowableNet):
            return name
    raise ConfigError(f"{type(module).__name__} holds no GrowableNet: searched the attribute 'net' and every "
                      f"submodule ({len(list(module.modules())) - 1} of them); give the LightningModule a "
                      f"GrowableNet attribute, or name it with net_attr=")


def save_architecture(module: nn.Module, checkpoint: dict, net_attr: str | None = None) -> None:
    """Write the network's spec into ``checkpoint`` (under :data:`CHECKPOINT_KEY`). Call it from a
    module's own ``on_save_checkpoint`` when its checkpoints are weights-only (``GrowthCallback``
    writes it into every full checkpoint)."""
    path = find_net(module, net_attr)
    checkpoint[CHECKPOINT_KEY] = {"format": FORMAT, "net_attr": path, "spec": _get(module, path).spec()}


def restore_architecture(module: nn.Module, checkpoint: dict) -> bool:
    """Give ``module`` the network architecture saved in ``checkpoint``, before its state dict loads:
    the network is replaced (same attribute) by a skeleton of the saved spec, on the old network's
    device and dtype, when its spec differs. ``GrowthCallback`` calls it during ``fit``; call it from
    your module's ``on_load_checkpoint`` for ``LightningModule.load_from_checkpoint``. Returns whether
    the network was replaced (False: no architecture in the checkpoint, or the same one).

    Raises:
        CheckpointError: an entry of another format, or a network attribute the module lacks.
    """
    entry = checkpoint.get(CHECKPOINT_KEY)
    if entry is None:
        return False
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint[{CHECKPOINT_KEY!r}] is not a selfexpand Lightning entry: expected "
                              f"format {FORMAT!r}, got {entry.get('format') if isinstance(entry, dict) else entry!r}")
    path = entry["net_attr"]
    old = _get(module, path)
    if not isinstance(old, GrowableNet):
        raise CheckpointError(f"the checkpoint's network is {type(module).__name__}.{path}, which is "
                              f"{type(old).__name__ if old is not None else 'missing'}, not a GrowableNet")
    if old.spec() == entry["spec"]:
        return False
    reference = next(iter(old.parameters()), None)
    new = type(old).from_spec(entry["spec"])
    if reference is not None:
        new = new.to(device=reference.device, dtype=reference.dtype)
    new.train(old.training)
    _set(module, path, new)
    log.info("rebuilt %s.%s from the checkpoint's architecture: widths %s -> %s", type(module).__name__, path,
             old.widths(), new.widths())
    return True


def optimizer_param_names(optimizer: torch.optim.Optimizer, module: nn.Module) -> list[list[str | None]]:
    """Per parameter group, the module's name of each parameter in the optimizer's order (None: a
    tensor the module does not hold)."""
    names = {id(p): n for n, p in module.named_parameters()}
    return [[names.get(id(p)) for p in group["params"]] for group in optimizer.param_groups]


def reorder_optimizer(optimizer: torch.optim.Optimizer, module: nn.Module, saved: list[list[str | None]]) -> None:
    """Put the parameters of each of ``optimizer``'s groups into the ``saved`` order (names from
    :func:`optimizer_param_names`), before a saved optimizer state loads by position. A freshly built
    optimizer has no state yet; nothing but the order changes.

    Raises:
        CheckpointError: the groups do not hold the same parameters by name as when saved.
    """
    current = optimizer_param_names(optimizer, module)
    if current == saved:
        return
    params = dict(module.named_parameters())
    if len(current) != len(saved) or any(sorted(map(str, a)) != sorted(map(str, b)) for a, b in zip(current, saved)) \
            or any(name is None for group in saved for name in group):
        raise CheckpointError(f"the optimizer that configure_optimizers built does not hold the parameters the "
                              f"checkpoint's optimizer held (by name, per group): {len(current)} group(s) of sizes "
                              f"{[len(g) for g in current]} now, {[len(g) for g in saved]} saved")
    for group, names in zip(optimizer.param_groups, saved):
        group["params"] = [params[name] for name in names]

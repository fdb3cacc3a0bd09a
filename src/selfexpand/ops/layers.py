"""Depth ops: insert a layer in place of a connection (``src -> new -> tgt``).

``insert_layer(net, connection, optimizer=opt)`` with no values inserts an identity layer (signed for
ReLU), so the function is unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, GrowthError
from ..graph.activations import make_activation
from ..graph.parts import Layer
from ..validators import positive_int
from .checks import require_connection, require_tensor
from .edit import Edit
from .event import GrowthEvent
from .storage import on_dense_storage

__all__ = ["insert_layer", "insert_identity_layer", "identity_layer_values"]


@on_dense_storage
def insert_layer(net, connection: str, size: int | None = None, *, weight_in: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None, weight_out: torch.Tensor | None = None, activation="relu",
                 mask_out: torch.Tensor | None = None, provisional_out: torch.Tensor | None = None,
                 optimizer=None) -> GrowthEvent:
    """Replace ``connection`` (``src -> tgt``) by ``src -> new -> tgt`` with the given values.

    The new layer reads the same source units as the connection did (``weight_in``: ``(size,
    n_cols)``) and writes the same target units (``weight_out``: ``(n_rows, size)``; optional 0/1
    ``mask_out`` of the same shape; optional boolean ``provisional_out`` marking eps-born edges). It is
    placed just before ``tgt`` in the topological order; all its units are marked ``grown``.

    Default (``weight_in`` and ``weight_out`` both omitted): an identity layer, so the function is
    unchanged for every input (:func:`identity_layer_values`): with an activation that is the identity
    (``"identity"``, ``"rational"`` at its start values) ``size = n_cols`` units ``W_in = I``; with ReLU
    ``size = 2 n_cols`` units, ``relu(x) - relu(-x) = x`` (signed). ``size`` may then be omitted; the
    connection's weight, mask and provisional marks move to ``weight_out``. ``bias`` defaults to zeros.

    Raises:
        GrowthError / ConfigError: unknown connection, bad size or shapes, non-finite values; for the
        default, an activation with no exact identity (tanh, ...), a ``size`` other than the identity's,
        or ``bias`` / ``mask_out`` / ``provisional_out`` given without the weights.
    """
    require_connection(net, connection)
    old = net.connections[connection]
    n_rows, n_cols = old.shape
    act = make_activation(activation)
    if weight_in is None and weight_out is None:
        size, values = _identity_default(net, connection, size, act, bias, mask_out, provisional_out)
        weight_in, bias, weight_out = values["weight_in"], values["bias"], values["weight_out"]
        mask_out, provisional_out = values["mask_out"], values["provisional_out"]
    elif weight_in is None or weight_out is None:
        raise ConfigError("insert_layer needs weight_in and weight_out together (or neither, for the "
                          f"identity default), got only {'weight_in' if weight_out is None else 'weight_out'}")
    if size is None:
        size = weight_in.shape[0] if torch.is_tensor(weight_in) else size
    positive_int("size", size)
    if bias is None:
        bias = torch.zeros(size, device=old.weight.device, dtype=old.weight.dtype)
    require_tensor("weight_in", weight_in, (size, n_cols))
    require_tensor("bias", bias, (size,))
    require_tensor("weight_out", weight_out, (n_rows, size))
    if mask_out is not None:
        require_tensor("mask_out", mask_out, (n_rows, size))
    if provisional_out is not None:
        require_tensor("provisional_out", provisional_out, (n_rows, size))
    device = old.weight.device
    edit = Edit(net, optimizer, "insert_layer", connection)
    live_before = int(old.live().sum())
    name = net.new_layer_name()
    layer = Layer(size, act).to(device=device, dtype=old.weight.dtype)
    layer.grown = torch.ones(size, dtype=torch.bool, device=device)
    with torch.no_grad():
        layer.bias.copy_(bias)
    net.add_layer(name, layer, before=old.target)
    del net.connections[connection]
    edit.remove_param(old.weight)
    c_in = net.add_connection(old.source, name, weight_in.detach().to(old.weight).clone(),
                              in_index=old.in_index)
    w_out = weight_out.detach().to(old.weight).clone()
    if mask_out is not None:
        w_out = w_out * mask_out.to(w_out)
    c_out = net.add_connection(name, old.target, w_out, out_index=old.out_index,
                               mask=None if mask_out is None else mask_out.to(device),
                               provisional=None if provisional_out is None else provisional_out.to(device))
    for param in (layer.bias, *layer.activation.parameters(), net.connections[c_in].weight,
                  net.connections[c_out].weight):
        edit.add_param(param, old.weight)
    live_after = size * n_cols + int(net.connections[c_out].live().sum())
    return edit.commit(units_added=size, edges_added=live_after, edges_removed=live_before,
                       details={"layer": name, "connections": [c_in, c_out]})


def _is_identity(act) -> bool:
    """Whether ``act`` returns its input unchanged (probed on values of both signs, large ones too)."""
    param = next(act.parameters(), None)
    probe = torch.tensor([-1e4, -3.0, -1.0, -0.25, 0.0, 0.25, 1.0, 3.0, 1e4],
                         device=None if param is None else param.device,
                         dtype=None if param is None else param.dtype)
    try:
        with torch.no_grad():
            return torch.equal(act(probe), probe)
    except Exception:  # an activation that cannot take the probe is not the identity
        return False


def _identity_default(net, connection, size, act, bias, mask_out, provisional_out):
    """``(size, values)`` of :func:`insert_layer`'s identity default, after checking that it applies."""
    given = [name for name, value in (("bias", bias), ("mask_out", mask_out),
                                      ("provisional_out", provisional_out)) if value is not None]
    if given:
        raise ConfigError(f"{', '.join(given)} given without weight_in and weight_out; give the weights too, "
                          "or nothing for the identity default")
    if _is_identity(act):
        values = identity_layer_values(net, connection)
    elif isinstance(act, nn.ReLU):
        values = identity_layer_values(net, connection, signed=True)
    else:
        raise GrowthError(f"insert_layer has no identity default for the activation {type(act).__name__} "
                          "(only ReLU and identity-valued activations); give weight_in, bias and weight_out")
    n = values.pop("size")
    if size is not None and size != n:
        raise ConfigError(f"size must be {n} for the identity default of {type(act).__name__} on "
                          f"{connection!r} (or omitted), got size={size!r}")
    return n, values


def identity_layer_values(net, connection: str, *, signed: bool = False) -> dict:
    """Values that make :func:`insert_layer` preserve the function with a ReLU-like layer.

    Unsigned: ``relu(I x) = x`` holds for non-negative inputs (ReLU outputs, pixels in [0, 1]).
    Signed (exact for any input): two units per input, ``relu(x) - relu(-x) = x``.
    """
    require_connection(net, connection)
    conn = net.connections[connection]
    n_rows, n_cols = conn.shape
    eye = torch.eye(n_cols, device=conn.weight.device, dtype=conn.weight.dtype)
    w = conn.effective_weight().detach()
    mask, provisional = conn.mask, conn.provisional
    if conn.sparse:  # the dense view of its live edges (graph.sparse)
        mask = conn.live().to(w.dtype)
        provisional = None if provisional is None else conn.scatter(provisional)
    if signed:
        eye, w = torch.cat([eye, -eye]), torch.cat([w, -w], 1)
        mask = None if mask is None else torch.cat([mask, mask], 1)
        provisional = None if provisional is None else torch.cat([provisional, provisional], 1)
    return {"size": eye.shape[0], "weight_in": eye, "bias": torch.zeros(eye.shape[0], device=w.device),
            "weight_out": w, "mask_out": mask, "provisional_out": provisional}


@on_dense_storage
def insert_identity_layer(net, connection: str, *, signed: bool = False, activation="relu",
                          optimizer=None) -> GrowthEvent:
    """Insert an identity-initialised layer in place of ``connection`` (see :func:`identity_layer_values`)."""
    values = identity_layer_values(net, connection, signed=signed)
    return insert_layer(net, connection, values.pop("size"), activation=activation, optimizer=optimizer,
                        **values)



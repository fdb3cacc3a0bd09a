"""Depth ops: insert a layer in place of a connection (``src -> new -> tgt``)."""

from __future__ import annotations

import torch

from ..graph.parts import Layer
from ..validators import positive_int
from .checks import require_connection, require_tensor
from .edit import Edit
from .event import GrowthEvent

__all__ = ["insert_layer", "insert_identity_layer", "identity_layer_values"]


def insert_layer(net, connection: str, size: int, *, weight_in: torch.Tensor, bias: torch.Tensor,
                 weight_out: torch.Tensor, activation="relu", mask_out: torch.Tensor | None = None,
                 provisional_out: torch.Tensor | None = None,
                 optimizer=None) -> GrowthEvent:
    """Replace ``connection`` (``src -> tgt``) by ``src -> new -> tgt`` with the given values.

    The new layer reads the same source units as the connection did (``weight_in``: ``(size,
    n_cols)``) and writes the same target units (``weight_out``: ``(n_rows, size)``; optional 0/1
    ``mask_out`` of the same shape; optional boolean ``provisional_out`` marking eps-born edges). It is
    placed just before ``tgt`` in the topological order; all its units are marked ``grown``.

    Raises:
        GrowthError / ConfigError: unknown connection, bad size or shapes, non-finite values.
    """
    require_connection(net, connection)
    positive_int("size", size)
    old = net.connections[connection]
    n_rows, n_cols = old.shape
    require_tensor("weight_in", weight_in, (size, n_cols))
    require_tensor("bias", bias, (size,))
    require_tensor("weight_out", weight_out, (n_rows, size))
    if mask_out is not None:
        require_tensor("mask_out", mask_out, (n_rows, size))
    if provisional_out is not None:
        require_tensor("provisional_out", provisional_out, (n_rows, size))
    from ..graph.activations import make_activation

    act = make_activation(activation)
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
    if signed:
        eye, w = torch.cat([eye, -eye]), torch.cat([w, -w], 1)
        mask = None if mask is None else torch.cat([mask, mask], 1)
        provisional = None if provisional is None else torch.cat([provisional, provisional], 1)
    return {"size": eye.shape[0], "weight_in": eye, "bias": torch.zeros(eye.shape[0], device=w.device),
            "weight_out": w, "mask_out": mask, "provisional_out": provisional}


def insert_identity_layer(net, connection: str, *, signed: bool = False, activation="relu",
                          optimizer=None) -> GrowthEvent:
    """Insert an identity-initialised layer in place of ``connection`` (see :func:`identity_layer_values`)."""
    values = identity_layer_values(net, connection, signed=signed)
    return insert_layer(net, connection, values.pop("size"), activation=activation, optimizer=optimizer,
                        **values)



"""Depth op on conv graphs: insert a conv layer in place of a connection out of a feature map.

``insert_conv_layer(net, connection, optimizer=opt)`` replaces ``src -> tgt`` (a conv connection, or a
dense connection reading ``src``'s maps across the flatten boundary) by ``src -> new -> tgt``. The new
conv layer reads the same channels of ``src`` with ``k x k`` kernels, stride 1, padding ``k // 2`` (odd
``k``: the maps keep their size) and no pooling; the old connection's weight, stride, padding, mask
and written channels move to ``new -> tgt``.

With no values it is an identity layer: each kernel a centred 1 (``k x k``, 3 by default). With the
identity activation ``n`` channels ``x -> x``; with ReLU ``relu(x) = x`` holds for non-negative inputs
(``signed=False``: ``n`` channels) and the signed variant is exact for any input (``signed=True``, the
default for ReLU: ``2 n`` channels, ``relu(x) - relu(-x) = x``, outgoing kernels ``[W, -W]``).

**Batch norm.** With ``batch_norm=True`` the new layer's batch norm starts as the identity *in
evaluation mode*: running mean 0, running variance 1, weight ``sqrt(1 + eps)``, bias 0, so
``(x - 0) / sqrt(1 + eps) * sqrt(1 + eps) + 0 = x`` (to rounding). In *training mode* batch norm
normalises by the batch's own statistics, ``y = (x - mean_B) / sqrt(var_B + eps) * sqrt(1 + eps)``
per channel (over examples and positions): the function is then **not** preserved (each channel is
centred and scaled to about unit variance), and each training forward moves the running statistics
towards the batch's (``momentum``), so the evaluation-mode function changes after the first training
step too. Insert with ``batch_norm=False`` where exactness in training matters.
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError, GrowthError
from ..graph.activations import make_activation
from ..graph.conv import ConvConnection, ConvLayer, is_spatial, positions
from ..validators import positive_int
from .checks import require_connection, require_tensor
from .edit import Edit
from .event import GrowthEvent
from .layers import _is_identity
from .storage import on_dense_storage

__all__ = ["insert_conv_layer", "identity_conv_values"]


def _channels_read(net, conn) -> int:
    return net.layers[conn.source].size if conn.in_index is None else int(conn.in_index.numel())


def identity_conv_values(net, connection: str, *, kernel_size: int = 3, signed: bool = False) -> dict:
    """``{"channels", "weight_in", "weight_out", "mask_out"}`` of the identity layer that
    :func:`insert_conv_layer` inserts in place of ``connection`` (see the module docstring)."""
    conn = net.connections[connection]
    n, k = _channels_read(net, conn), int(kernel_size)
    w = conn.weight.detach()
    weight_in = torch.zeros(n, n, k, k, device=w.device, dtype=w.dtype)
    weight_in[torch.arange(n), torch.arange(n), k // 2, k // 2] = 1
    weight_out, mask = w.clone(), None if conn.mask is None else conn.mask.clone()
    if signed:
        weight_in = torch.cat([weight_in, -weight_in])
        weight_out = torch.cat([weight_out, -weight_out], 1)  # channel-major columns: new channels after
        mask = None if mask is None else torch.cat([mask, mask], 1)
    return {"channels": weight_in.shape[0], "weight_in": weight_in, "weight_out": weight_out, "mask_out": mask}


@on_dense_storage
def insert_conv_layer(net, connection: str, channels: int | None = None, *, kernel_size: int = 3,
                      weight_in: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                      weight_out: torch.Tensor | None = None, activation="relu", batch_norm: bool = False,
                      eps: float = 1e-5, signed: bool | None = None, optimizer=None) -> GrowthEvent:
    """Replace ``connection`` (out of a feature map) by a new conv layer between its ends.

    Args:
        channels: the new layer's channels (omit for the identity default).
        kernel_size: odd ``k`` of the new layer's incoming kernels (stride 1, padding ``k // 2``).
        weight_in: ``(channels, n_read, k, k)``; ``weight_out``: the old weight's shape with
            ``channels`` in dimension 1 (a conv connection), or ``(n_out, channels * P)`` (a dense
            reader, ``P`` the maps' positions). Both or neither (the identity default, module docstring).
        bias: ``(channels,)``, default zeros.
        batch_norm: give the new layer a batch norm, started as the identity in evaluation mode
            (module docstring: what training mode does).
        signed: for the identity default with ReLU: ``2 n`` channels exact for any input (default),
            or ``False``: ``n`` channels exact for non-negative inputs.

    Raises:
        GrowthError / ConfigError: unknown connection, a source that is not a feature map, an even or
            non-positive kernel size, wrong shapes, an activation with no identity default.
    """
    require_connection(net, connection)
    old = net.connections[connection]
    if not is_spatial(net, old.source):
        raise GrowthError(f"insert_conv_layer needs a connection out of a feature map; {connection!r} "
                          f"reads the flat layer {old.source!r} (use insert_layer)")
    k = positive_int("kernel_size", kernel_size)
    if k % 2 == 0:
        raise ConfigError(f"kernel_size must be odd (padding k // 2 keeps the size), got kernel_size={k}")
    act = make_activation(activation)
    conv_out = isinstance(old, ConvConnection)
    n_read, p = _channels_read(net, old), positions(net, old.source)
    mask_out = None
    if weight_in is None and weight_out is None:
        if signed is None:
            signed = not _is_identity(act)
        if signed and not isinstance(act, torch.nn.ReLU):
            raise GrowthError(f"insert_conv_layer has no identity default for {type(act).__name__} "
                              "(only ReLU and identity-valued activations); give weight_in and weight_out")
        if not signed and not (_is_identity(act) or isinstance(act, torch.nn.ReLU)):
            raise GrowthError(f"insert_conv_layer has no identity default for {type(act).__name__}")
        values = identity_conv_values(net, connection, kernel_size=k, signed=signed)
        if channels is not None and channels != values["channels"]:
            raise ConfigError(f"channels must be {values['channels']} for the identity default (or omitted), "
                              f"got channels={channels!r}")
        channels, weight_in, weight_out, mask_out = (values[key] for key in
                                                     ("channels", "weight_in", "weight_out", "mask_out"))
    elif weight_in is None or weight_out is None:
        raise ConfigError("insert_conv_layer needs weight_in and weight_out together (or neither)")
    elif old.mask is not None:
        raise GrowthError(f"connection {connection!r} is masked; give no values (the identity default "
                          "keeps its mask)")
    channels = positive_int("channels", weight_in.shape[0] if channels is None else channels)
    require_tensor("weight_in", weight_in, (channels, n_read, k, k))
    out_shape = (old.shape[0], channels, *old.shape[2:]) if conv_out else (old.shape[0], channels * p)
    require_tensor("weight_out", weight_out, out_shape)
    device, dtype = old.weight.device, old.weight.dtype
    bias = torch.zeros(channels) if bias is None else require_tensor("bias", bias, (channels,))

    edit = Edit(net, optimizer, "insert_conv_layer", connection)
    live_before = int(old.live().sum())
    name = net.new_layer_name()
    layer = ConvLayer(channels, act, batch_norm=batch_norm, eps=eps).to(device=device, dtype=dtype)
    layer.grown = torch.ones(channels, dtype=torch.bool, device=device)
    with torch.no_grad():
        layer.bias.copy_(bias)
        if layer.norm is not None:
            layer.norm.weight.fill_(math.sqrt(1 + eps))
    net.add_layer(name, layer, before=old.target)
    del net.connections[connection]
    edit.remove_param(old.weight)
    c_in = net.add_connection(old.source, name, weight_in.detach().to(device, dtype).clone(),
                              in_index=old.in_index, padding=k // 2)
    w_out = weight_out.detach().to(device, dtype).clone()
    geometry = dict(stride=old.stride, padding=old.padding) if conv_out else {}
    c_out = net.add_connection(name, old.target, w_out, out_index=old.out_index,
                               mask=None if mask_out is None else mask_out.to(device), **geometry)
    params = [layer.bias, *layer.activation.parameters(), net.connections[c_in].weight,
              net.connections[c_out].weight]
    if layer.norm is not None:
        params += [layer.norm.weight, layer.norm.bias]
    for param in params:
        edit.add_param(param, old.weight)
    live_after = int(weight_in.numel()) + int(net.connections[c_out].live().sum())
    return edit.commit(units_added=channels, edges_added=live_after, edges_removed=live_before,
                       details={"layer": name, "connections": [c_in, c_out]})

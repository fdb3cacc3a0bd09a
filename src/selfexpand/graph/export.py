"""Export a grown graph to plain PyTorch: standard modules of its final size, no selfexpand inside.

Masks are multiplied into the weights, modulator factors folded into the weights that read the
modulated units (a unit whose factor is 0 is dropped, a layer left with no unit with it), and every
front and activation is replaced by its plain form (:mod:`.plain`: the conv fronts by ``Conv2d`` /
``BatchNorm2d`` / ``MaxPool2d`` modules, the rational activation by a traced ``torch.fx.GraphModule``).

The result is

- an ``nn.Sequential`` (``Flatten`` or the front then ``Flatten``, then ``nn.Linear`` and activation
  modules) when the graph is a chain;
- else an :data:`ExportedGraph`, a ``torch.fx.GraphModule`` built node by node, whose generated
  ``forward`` (``exported.code``) calls only torch. Its attributes: ``front`` (when there is one),
  ``linear.<connection>`` (an ``nn.Linear``; it holds the target layer's bias when it is the first
  connection writing every unit of that layer), ``bias.<layer>`` (layers that no connection writes in
  full), ``act.<layer>`` (non-identity activations), ``index.<connection>_in`` / ``_out`` (long
  buffers: the source units read, the target units written). A layer's pre-activation is the sum of
  its connections' ``linear(x_source.index_select(1, in))``, added at ``out`` with ``index_add``.
  ``exported.meta["widths"]`` maps every layer of the graph to its exported width (0: dropped).

Conv graphs (``graph.conv``): a conv connection becomes an ``nn.Conv2d`` (its stride and padding,
the layer's bias when it is the first connection writing every channel), a conv layer's batch norm a
copy of its ``nn.BatchNorm2d`` (``norm.<layer>``), its pooling an ``nn.MaxPool2d`` / ``nn.AvgPool2d``
(``pool.<layer>``); a dense layer reading a feature map reads ``flatten(1)`` of its selected channels.
A conv chain exports as ``Conv2d, [BatchNorm2d], activation, [pool], [Dropout], ..., Flatten, Linear,
[BatchNorm1d], activation, [Dropout], ...``: a dense layer's batch norm becomes a copy of its
``nn.BatchNorm1d`` (reduced to the exported units), a layer's dropout rate an ``nn.Dropout``
(``drop.<layer>`` in a graph export).

Either one is saved with ``torch.save`` and loaded with ``torch.load(path, weights_only=False)``
where selfexpand is not installed, and works with ``torch.jit.script``, ``torch.export.export`` and
``torch.onnx.export(..., dynamo=True)``.
"""

from __future__ import annotations

import copy
import operator

import torch
import torch.fx as fx
from torch import nn

from ..errors import ConfigError
from .conv import ConvConnection, ConvLayer, is_spatial
from .plain import plain_module

__all__ = ["export_graph", "ExportedGraph"]

#: The type of a non-chain export (each instance is of its own subclass, so test with ``isinstance``).
ExportedGraph = fx.GraphModule


def _target(name: str, k: int, prefix: str) -> str:
    """A name usable as an attribute path: ``name`` when it is an identifier, else ``prefix + k``."""
    return name if name.isidentifier() else f"{prefix}{k}"


@torch.no_grad()
def export_graph(net) -> nn.Module:
    """See module docstring. The result is on the graph's device and dtype, in the graph's training mode.

    Raises:
        ConfigError: the output layer is modulated and its activation is not the identity (its factor
            cannot be folded into a weight).
    """
    out_layer = net.layers[net.output_name]
    if out_layer.modulator is not None and not isinstance(out_layer.activation, nn.Identity):
        raise ConfigError("cannot export a modulated output layer with a non-identity activation")
    device, dtype = out_layer.bias.device, out_layer.bias.dtype
    # the input layer holds no tensor (its mask is made on the CPU): bring every mask to the graph's device
    keep = {n: l.live_units().to(device) for n, l in net.layers.items()}
    keep[net.output_name] = torch.ones_like(keep[net.output_name])
    new_pos = {}
    for name, mask in keep.items():
        pos = torch.full((mask.numel(),), -1, dtype=torch.long, device=mask.device)
        pos[mask] = torch.arange(int(mask.sum()), device=mask.device)
        new_pos[name] = pos
    factor = {n: l.factor() for n, l in net.layers.items()}
    biases = {n: net.layers[n].bias.detach().clone() for n in net.order[1:]}
    edges = []
    for conn_name, conn in net.connections.items():
        cols = conn.source_units(net.layers[conn.source].size)
        rows = conn.target_units(net.layers[conn.target].size)
        w = conn.effective_weight().detach().clone()
        if factor[conn.source] is not None:
            w = w * factor[conn.source].detach()[cols][None, :]
        if conn.target == net.output_name and factor[conn.target] is not None:
            w = w * factor[conn.target].detach()[rows][:, None]
        col_keep = keep[conn.source][cols]
        w_col_keep = col_keep
        if w.dim() == 2 and w.shape[1] != cols.numel():  # the flatten boundary: channels x positions
            w_col_keep = col_keep.repeat_interleave(w.shape[1] // cols.numel())
        row_keep = keep[conn.target][rows]
        w = w[row_keep][:, w_col_keep]
        if w.numel() == 0:
            continue
        # a connection that read (wrote) all units still does: dropped units leave the layer too
        in_idx = None if conn.in_index is None else new_pos[conn.source][cols[col_keep]]
        out_idx = None if conn.out_index is None else new_pos[conn.target][rows[row_keep]]
        geometry = (conn.stride, conn.padding) if isinstance(conn, ConvConnection) else None
        edges.append((conn_name, conn.source, conn.target, w, in_idx, out_idx, geometry))
    if factor[net.output_name] is not None:
        biases[net.output_name] *= factor[net.output_name].detach()
    for n in net.order[1:]:
        biases[n] = biases[n][keep[n]]
    activations = {n: plain_module(net.layers[n].activation) for n in net.order[1:]}
    front = plain_module(net.front)
    chain = net.is_chain() and len(edges) == len(net.order) - 1 \
        and all(e[4] is None and e[5] is None for e in edges)
    if chain:
        exported = _sequential(net, edges, biases, activations, front, keep)
    else:
        exported = _graph_module(net, edges, biases, activations, front, keep)
    return exported.to(device=device, dtype=dtype).train(net.training)


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device,
                       dtype=weight.dtype)
    linear.weight.copy_(weight)
    if bias is not None:
        linear.bias.copy_(bias)
    return linear


def _conv(weight: torch.Tensor, bias: torch.Tensor | None, geometry) -> nn.Conv2d:
    stride, padding = geometry
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), stride, padding,
                     bias=bias is not None, device=weight.device, dtype=weight.dtype)
    conv.weight.copy_(weight)
    if bias is not None:
        conv.bias.copy_(bias)
    return conv


def _after_sum(layer, keep: torch.Tensor) -> tuple[list, list, list]:
    """A layer's batch norm (only its units ``keep``), pooling and dropout as plain ``(label, module)``
    lists; the activation comes between norm and pooling, the dropout last."""
    norm = [] if getattr(layer, "norm", None) is None else [("norm", _norm_copy(layer.norm, keep))]
    pool = getattr(layer, "pool", None)
    pool = [] if pool is None else [("pool", (nn.MaxPool2d if pool == "max" else nn.AvgPool2d)(layer.pool_size))]
    drop = [("drop", nn.Dropout(layer.dropout))] if getattr(layer, "dropout", 0.0) else []
    return norm, pool, drop


def _norm_copy(norm: nn.Module, keep: torch.Tensor) -> nn.Module:
    """A copy of batch norm ``norm`` reduced to its units ``keep`` (units dropped by the export)."""
    out = copy.deepcopy(norm)
    if bool(keep.all()):
        return out
    for attr in ("weight", "bias"):
        if getattr(out, attr) is not None:
            setattr(out, attr, nn.Parameter(getattr(out, attr).detach()[keep].clone()))
    for attr in ("running_mean", "running_var"):
        if getattr(out, attr) is not None:
            setattr(out, attr, getattr(out, attr)[keep].clone())
    out.num_features = int(keep.sum())
    return out


def _sequential(net, edges, biases, activations, front, keep) -> nn.Sequential:
    by_target = {e[2]: e for e in edges}
    spatial = is_spatial(net, net.input_name)
    modules: list[nn.Module] = [] if spatial else [front, nn.Flatten()] if front is not None else [nn.Flatten()]
    for name in net.order[1:]:
        edge = by_target[name]
        norm, pool, drop = _after_sum(net.layers[name], keep[name])
        if isinstance(net.layers[name], ConvLayer):
            modules.append(_conv(edge[3], biases[name], edge[6]))
        else:
            if spatial:
                modules.append(nn.Flatten())
                spatial = False
            modules.append(_linear(edge[3], biases[name]))
        modules.extend(m for _, m in norm)
        if not isinstance(activations[name], nn.Identity):
            modules.append(activations[name])
        modules.extend(m for _, m in pool + drop)
    return nn.Sequential(*modules)


def _graph_module(net, edges, biases, activations, front, keep) -> fx.GraphModule:
    """The fx graph of the DAG, node by node (see the module docstring for the attribute names)."""
    graph = fx.Graph()
    attrs: dict = {}
    x = graph.placeholder("input")  # the argument name of nn.Sequential.forward, as in a chain export
    if front is not None:
        attrs["front"] = front
        x = graph.call_module("front", (x,))
    if not is_spatial(net, net.input_name):
        x = graph.call_method("flatten", (x, 1))
    values = {net.input_name: x}
    for name in net.order[1:]:
        if not bool(keep[name].any()):
            continue  # no live unit: nothing reads it (its outgoing connections were dropped)
        layer_key = _target(name, net.order.index(name), "layer")
        full = [e for e in edges if e[2] == name and e[5] is None]  # first: the first holds the bias
        incoming = full + [e for e in edges if e[2] == name and e[5] is not None]
        pre = None
        conv = isinstance(net.layers[name], ConvLayer)
        for k, (conn_name, source, _, weight, in_idx, out_idx, geometry) in enumerate(incoming):
            key = _target(conn_name, k, f"{layer_key}_c")
            src = values[source]
            if in_idx is not None:
                attrs[f"index.{key}_in"] = in_idx
                src = graph.call_method("index_select", (src, 1, graph.get_attr(f"index.{key}_in")))
            if not conv and is_spatial(net, source):
                src = graph.call_method("flatten", (src, 1))
            with_bias = bool(full) and full[0][0] == conn_name
            bias = biases[name] if with_bias else None
            kind = "conv" if conv else "linear"
            attrs[f"{kind}.{key}"] = _conv(weight, bias, geometry) if conv else _linear(weight, bias)
            y = graph.call_module(f"{kind}.{key}", (src,))
            if out_idx is None:
                pre = y if pre is None else graph.call_function(operator.add, (pre, y))
                continue
            if pre is None:
                pre = _bias_base(graph, attrs, layer_key, biases[name], values[net.input_name], y, conv)
            attrs[f"index.{key}_out"] = out_idx
            pre = graph.call_method("index_add", (pre, 1, graph.get_attr(f"index.{key}_out"), y))
        if pre is None:
            pre = _bias_rows(graph, attrs, layer_key, biases[name], values[net.input_name])
        norm, pool, drop = _after_sum(net.layers[name], keep[name])
        for label, module in norm:
            attrs[f"{label}.{layer_key}"] = module
            pre = graph.call_module(f"{label}.{layer_key}", (pre,))
        if not isinstance(activations[name], nn.Identity):
            attrs[f"act.{layer_key}"] = activations[name]
            pre = graph.call_module(f"act.{layer_key}", (pre,))
        for label, module in pool + drop:
            attrs[f"{label}.{layer_key}"] = module
            pre = graph.call_module(f"{label}.{layer_key}", (pre,))
        values[name] = pre
    graph.output(values[net.output_name])
    graph.lint()
    exported = fx.GraphModule(attrs, graph, "ExportedGraph")
    exported.meta["widths"] = {n: int(keep[n].sum()) for n in net.order}
    return exported


def _bias_base(graph, attrs, layer_key, bias, x, y, conv):
    """The base that ``index_add`` writes into: the bias broadcast to ``(batch, n)``, or for a conv
    layer to ``(batch, C, H, W)`` with ``H, W`` those of the contribution ``y``."""
    if not conv:
        return _bias_rows(graph, attrs, layer_key, bias, x)
    attrs[f"bias.{layer_key}"] = nn.Parameter(bias.clone().view(1, -1, 1, 1))
    n, h, w = (graph.call_method("size", (y, d)) for d in (0, 2, 3))
    return graph.call_method("expand", (graph.get_attr(f"bias.{layer_key}"), n, -1, h, w))


def _bias_rows(graph, attrs, layer_key, bias, x):
    """``bias`` broadcast to ``(batch, n)`` (a base for ``index_add``), as graph nodes."""
    attrs[f"bias.{layer_key}"] = nn.Parameter(bias.clone())
    n = graph.call_method("size", (x, 0))
    return graph.call_method("expand", (graph.get_attr(f"bias.{layer_key}"), n, -1))

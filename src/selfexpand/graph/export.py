"""Export a grown graph to a plain ``nn.Module`` of its final size.

Masks are multiplied into the weights, modulator factors folded into the weights that read the
modulated units (a unit whose factor is 0 is dropped), and the result is an ``nn.Sequential`` of
``nn.Linear`` and activation modules when the graph is a chain, else an :class:`ExportedGraph`
holding plain dense weights.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

__all__ = ["export_graph", "ExportedGraph"]


class ExportedGraph(nn.Module):
    """Plain dense DAG: per layer, ``act(bias + sum_c x_src[:, idx] @ W_c.T)`` (scattered by ``out``)."""

    def __init__(self, order, sizes, activations, front, edges):
        super().__init__()
        self.order = list(order)
        self.front = front
        self.activations = nn.ModuleDict({n: a for n, a in activations.items()})
        self.biases = nn.ParameterDict()
        self.weights = nn.ParameterDict()
        self.wiring: list[tuple[str, str, str]] = []
        for name in self.order[1:]:
            self.biases[name] = nn.Parameter(torch.zeros(sizes[name]))
        for k, (source, target, weight, in_idx, out_idx) in enumerate(edges):
            key = f"c{k}"
            self.weights[key] = nn.Parameter(weight)
            self.register_buffer(f"{key}_in", in_idx)
            self.register_buffer(f"{key}_out", out_idx)
            self.wiring.append((key, source, target))

    def forward(self, x):
        if self.front is not None:
            x = self.front(x)
        if x.dim() > 2:
            x = x.flatten(1)
        acts = {self.order[0]: x}
        for name in self.order[1:]:
            pre = self.biases[name].expand(x.shape[0], -1)
            for key, source, target in self.wiring:
                if target != name:
                    continue
                src = acts[source]
                idx, out = getattr(self, f"{key}_in"), getattr(self, f"{key}_out")
                y = F.linear(src if idx is None else src.index_select(1, idx), self.weights[key])
                pre = pre + y if out is None else pre.index_add(1, out, y)
            acts[name] = self.activations[name](pre)
        return acts[self.order[-1]]


@torch.no_grad()
def export_graph(net) -> nn.Module:
    """See module docstring. The result is on the graph's device, in training mode of the graph."""
    out_layer = net.layers[net.output_name]
    if out_layer.modulator is not None and not isinstance(out_layer.activation, nn.Identity):
        raise ConfigError("cannot export a modulated output layer with a non-identity activation")
    # the input layer holds no tensor (its mask is made on the CPU): bring every mask to the graph's device
    keep = {n: l.live_units().to(out_layer.bias.device) for n, l in net.layers.items()}
    keep[net.output_name] = torch.ones_like(keep[net.output_name])
    new_pos = {}
    for name, mask in keep.items():
        pos = torch.full((mask.numel(),), -1, dtype=torch.long, device=mask.device)
        pos[mask] = torch.arange(int(mask.sum()), device=mask.device)
        new_pos[name] = pos
    factor = {n: l.factor() for n, l in net.layers.items()}
    biases = {n: net.layers[n].bias.detach().clone() for n in net.order[1:]}
    edges = []
    for conn in net.connections.values():
        src_n = net.layers[conn.source].size
        tgt_n = net.layers[conn.target].size
        cols = conn.source_units(src_n)
        rows = conn.target_units(tgt_n)
        w = conn.effective_weight().detach().clone()
        if factor[conn.source] is not None:
            w = w * factor[conn.source].detach()[cols][None, :]
        if conn.target == net.output_name and factor[conn.target] is not None:
            w = w * factor[conn.target].detach()[rows][:, None]
        col_keep = keep[conn.source][cols]
        row_keep = keep[conn.target][rows]
        w = w[row_keep][:, col_keep]
        new_cols = new_pos[conn.source][cols[col_keep]]
        new_rows = new_pos[conn.target][rows[row_keep]]
        if w.numel() == 0:
            continue
        # a connection that read (wrote) all units still does: dropped units leave the layer too
        in_idx = None if conn.in_index is None else new_cols
        out_idx = None if conn.out_index is None else new_rows
        edges.append((conn.source, conn.target, w, in_idx, out_idx))
    if factor[net.output_name] is not None:
        biases[net.output_name] *= factor[net.output_name].detach()
    sizes = {n: int(keep[n].sum()) for n in net.order}
    for n in net.order[1:]:
        biases[n] = biases[n][keep[n]]
    activations = {n: copy.deepcopy(net.layers[n].activation) for n in net.order[1:]}
    front = copy.deepcopy(net.front)
    chain = net.is_chain() and all(e[3] is None and e[4] is None for e in edges) \
        and len(edges) == len(net.order) - 1
    if chain:
        by_target = {e[1]: e for e in edges}
        modules: list[nn.Module] = [front] if front is not None else [nn.Flatten()]
        for name in net.order[1:]:
            w = by_target[name][2]
            linear = nn.Linear(w.shape[1], w.shape[0], device=w.device, dtype=w.dtype)
            linear.weight.copy_(w)
            linear.bias.copy_(biases[name])
            modules.append(linear)
            if not isinstance(activations[name], nn.Identity):
                modules.append(activations[name])
        return nn.Sequential(*modules).train(net.training)
    exported = ExportedGraph(net.order, sizes, activations, front, edges).to(
        device=out_layer.bias.device, dtype=out_layer.bias.dtype)
    for name in net.order[1:]:
        exported.biases[name].copy_(biases[name])
    return exported.train(net.training)

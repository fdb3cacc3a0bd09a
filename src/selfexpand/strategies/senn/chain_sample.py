"""Per-example layer inputs and output gradients of a chain network, for SENN's K-FAC scores.

One forward and one backward pass over a sample of training examples gives, for every non-input
layer ``L`` of a chain (each layer reads the whole previous one: ``GrowableNet.is_chain``):

- ``inputs[L]``: ``(N, n_src + 1)``, the outputs of the layer it reads, with a constant 1 appended
  for the bias (``a`` in ALGORITHMS.md §3);
- ``grads[L]``: ``(N, n_L)``, the per-example gradient of the loss with respect to ``L``'s
  pre-activation (``d``): the gradient of example ``i``'s own loss, not of the batch mean.

Everything is float64 on the CPU (the scores solve small, possibly ill-conditioned systems).

**Conv chains** (issue #24; a conv layer or an image input): a layer ``L`` read through a conv
connection gets one row per (example, position) pair (``conv_scores.patch_rows``): ``inputs[L]`` the
unfolded input patches with the 1, ``grads[L]`` the per-position gradients (example ``i``'s own loss),
``positions[L]`` its output positions; ``maps`` keeps every spatial layer's output map. ``outputs`` are
flattened channel-major (what a dense reader across the flatten boundary reads). Conv layers run in
evaluation mode (batch norm with its running statistics), as the dense layers do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ...errors import GrowthError
from ...graph.conv import ConvConnection
from .conv_scores import patch_rows, position_rows

__all__ = ["ChainSample", "chain_sample", "sample_rows"]


@dataclass
class ChainSample:
    """What one pass gathered (see the module docstring).

    Attributes:
        outputs: every layer's output (``h``), by name (the input layer's: the sampled inputs after
            the front, flattened), float64, no graph.
        inputs, grads: ``a`` and ``d`` for every non-input layer, by name.
        output_grad_sq: ``E ||dL/dy||^2``, the mean squared norm of the per-example output gradient.
    """

    outputs: dict[str, torch.Tensor]
    inputs: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor]
    output_grad_sq: float
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)


def sample_rows(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``size`` distinct row indices out of ``n`` (all of them, in order, when ``size >= n``)."""
    if size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:size].sort().values


def chain_sample(net, x: torch.Tensor, y: torch.Tensor, loss_fn) -> ChainSample:
    """Run ``net`` on ``(x, y)`` and gather every layer's ``a`` and per-example ``d``.

    ``loss_fn(outputs, targets)`` is the run's mean loss; per-example gradients are its gradients
    times the number of examples.

    Raises:
        GrowthError: the network is not a chain.
    """
    if not net.is_chain():
        raise GrowthError("SENN needs a chain network (every layer reads the whole previous layer only); "
                          f"this one has layers {net.order} and connections {list(net.connections)}")
    return _chain_sample(net, x, y, loss_fn)


def _chain_sample(net, x: torch.Tensor, y: torch.Tensor, loss_fn) -> ChainSample:
    """:func:`chain_sample`'s pass: a dense connection is one row per example (one position), a conv
    connection one row per (example, position) pair (module docstring)."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            h = net.front(x) if net.front is not None else x
            if h.dim() > 2 and getattr(net, "input_shape", None) is None:
                h = h.flatten(1)
        h = h.detach()
        acts, pres = {net.input_name: h}, {}
        for name in net.order[1:]:
            layer = net.layers[name]
            conn = net.incoming(name)[0]
            if isinstance(conn, ConvConnection):
                pre = F.conv2d(h, conn.effective_weight().detach(), layer.bias.detach(), conn.stride,
                               conn.padding).requires_grad_(True)
                pres[name] = pre
                h = layer.finish(pre)
            else:
                pre = F.linear(h.flatten(1), conn.effective_weight().detach(),
                               layer.bias.detach()).requires_grad_(True)
                pres[name] = pre
                h = layer.activation(pre)
                if layer.modulator is not None:
                    h = h * layer.modulator().detach()
            acts[name] = h
        loss = loss_fn(h, y) * x.shape[0]
        grads = torch.autograd.grad(loss, list(pres.values()), allow_unused=True)
    finally:
        net.train(was_training)
    acts = {k: v.detach().double().cpu() for k, v in acts.items()}
    outputs = {k: v.flatten(1) for k, v in acts.items()}
    maps = {k: v for k, v in acts.items() if v.dim() == 4}
    ones = torch.ones(x.shape[0], 1, dtype=torch.float64)
    inputs, d, positions = {}, {}, {}
    for (name, pre), g in zip(pres.items(), grads):
        conn = net.incoming(name)[0]
        g = (torch.zeros_like(pre) if g is None else g).detach().double().cpu()
        if isinstance(conn, ConvConnection):
            inputs[name] = patch_rows(maps[conn.source], conn.kernel_size, conn.stride, conn.padding)
            d[name] = position_rows(g)
            positions[name] = g.shape[2] * g.shape[3]
        else:
            inputs[name] = torch.cat([outputs[conn.source], ones], 1)
            d[name] = g
            positions[name] = 1
    out_grad = d[net.output_name]
    return ChainSample(outputs=outputs, inputs=inputs, grads=d, output_grad_sq=float(out_grad.pow(2).sum(1).mean()),
                       maps=maps, positions=positions)

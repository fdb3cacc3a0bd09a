"""Start networks of the size-by-gradient-descent methods (ALGORITHMS.md §4).

One hidden layer of ``n_max`` tanh units carrying a size modulator, every weight and bias drawn from
``U[-1, 1]`` (the paper's initialisation). :func:`size_net_init` is the single source of those
initial values: the growable network built here and the batched sweep engine draw the very same
numbers for the same seed, which is what lets a sweep be checked against runs made one by one.
"""

from __future__ import annotations

import torch

from ..validators import positive_int
from .network import GrowableNet
from .parts import Layer
from .size_modulators import ControllerMaskModulator, SizeWeightModulator

__all__ = ["size_net_init", "size_weight_net", "controller_mask_net"]


def size_net_init(n_in: int, n_max: int, n_out: int, seed: int, dtype: torch.dtype = torch.float32,
                  *, control_input: bool = False) -> dict[str, torch.Tensor]:
    """Initial values ``U[-1, 1]`` for seed ``seed``: ``w_in (n_max, n_in)``, ``b_hidden (n_max,)``,
    ``w_out (n_out, n_max)``, ``b_out (n_out,)``, drawn in this order in float64, then cast; with
    ``control_input``, then ``w_control (n_max,)``, the weights of the control scalar fed as an input
    (the reference's variant, batched sweeps only; the other values are unchanged by it).

    Raises:
        ConfigError: a size that is not a positive integer.
    """
    for name, value in (("n_in", n_in), ("n_max", n_max), ("n_out", n_out)):
        positive_int(name, value)
    gen = torch.Generator().manual_seed(int(seed))
    shapes = {"w_in": (n_max, n_in), "b_hidden": (n_max,), "w_out": (n_out, n_max), "b_out": (n_out,)}
    if control_input:
        shapes["w_control"] = (n_max,)
    return {k: (torch.rand(s, generator=gen, dtype=torch.float64) * 2 - 1).to(dtype) for k, s in shapes.items()}


def _net(n_in: int, n_out: int, n_max: int, modulator, seed: int) -> GrowableNet:
    values = size_net_init(n_in, n_max, n_out, seed)
    net = GrowableNet(n_in, n_out)
    name = net.new_layer_name()
    net.add_layer(name, Layer(n_max, "tanh", modulator=modulator), before="output")
    net.add_connection("input", name, values["w_in"])
    net.add_connection(name, "output", values["w_out"])
    with torch.no_grad():
        net.layers[name].bias.copy_(values["b_hidden"])
        net.layers["output"].bias.copy_(values["b_out"])
    return net


def size_weight_net(n_in: int, n_out: int, *, n_max: int = 9, dn: float = 1.0, n_inf: float = 5.0,
                    size_lambda: float = 0.1, n_start: float = 0.0, seed: int = 0) -> GrowableNet:
    """``n_in -> n_max tanh (gated by theta(N - m + 1)) -> n_out`` (method 1 of arXiv 2501.18012)."""
    mod = SizeWeightModulator(n_max, dn=dn, n_inf=n_inf, size_lambda=size_lambda, n_start=n_start)
    return _net(n_in, n_out, n_max, mod, seed)


def controller_mask_net(n_in: int, n_out: int, *, n_max: int = 10, size_weight: float = 0.32,
                        c_start: float = 1e-5, reference_defects: bool = False, seed: int = 0) -> GrowableNet:
    """``n_in -> n_max tanh (masked by the controller) -> n_out`` (method 2 of arXiv 2501.18012)."""
    mod = ControllerMaskModulator(n_max, size_weight=size_weight, c_start=c_start,
                                  reference_defects=reference_defects)
    return _net(n_in, n_out, n_max, mod, seed)

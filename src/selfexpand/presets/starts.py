"""Start networks: what a method begins from, with the settings that shape it.

``mlp`` (every method but SENN's and the size methods': ``hidden`` widths, ReLU, optionally behind a
fixed conv front), ``senn`` (tanh hidden layers, output weights at zero, as SENN's reference),
``size-weight`` and ``controller-mask`` (one hidden layer of ``n_max`` tanh units with the size
modulator, ALGORITHMS.md §4). Each value is drawn from the run's seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..errors import ConfigError
from ..graph import GrowableNet, front_for
from ..graph.size_nets import controller_mask_net, size_weight_net
from ..settings import Configurable, same_setting, setting
from ..validators import Boolean, Integer, IntegerList, Number, one_of

__all__ = ["STARTS", "start_class", "MLPStart", "SennStart", "SizeWeightStart", "ControllerMaskStart"]

@dataclass(eq=False)
class MLPStart(Configurable):
    """``[inputs, *hidden, outputs]`` with ReLU hidden layers, ``nn.Linear``-style values; behind
    ``front`` (a registered fixed front: ``conv``, ``conv-small``) when given.

    With ``conv`` (channels per block, e.g. ``[16, 32, 64]``) the network starts with growable conv
    blocks on the images (``GrowableNet.cnn``'s conventions: 3x3 kernels, stride 1, padding 1, batch
    norm, ReLU, 2x2 max pooling per block), then the ``hidden`` dense layers, then the output. Images
    only (``data.base.image_shape``: CIFAR-10's ``(3, 32, 32)``, MNIST's ``(1, 28, 28)``), no front.
    ``conv=[]`` (the default) builds exactly the dense network it always did."""

    name: ClassVar[str] = "mlp"
    takes_front: ClassVar[bool] = True
    hidden: list = setting(IntegerList(1), [], "hidden layer widths of the start network")
    conv: list = setting(IntegerList(1), [], "channels of the start network's conv blocks (3x3, batch norm, "
                                             "ReLU, 2x2 max pooling each; images only; [] none)")

    def build(self, data, seed: int, front: str | None = None) -> GrowableNet:
        if self.conv:
            if front is not None:
                raise ConfigError(f"conv={self.conv} builds growable conv blocks on the images; it cannot be "
                                  f"combined with the fixed front {front!r} (leave out one of them)")
            return GrowableNet.cnn(_image_shape(data), self.conv, self.hidden, data.n_outputs, seed=seed)
        if front is None:
            return GrowableNet.mlp([data.n_features, *self.hidden, data.n_outputs], seed=seed)
        module, spec = front_for(front, data.input_shape, data.preprocessing.get("raw_shape"),
                                 generator=torch.Generator().manual_seed(seed))
        return GrowableNet.mlp([module.out_features, *self.hidden, data.n_outputs], seed=seed, front=module,
                               front_spec=spec)


@dataclass(eq=False)
class SennStart(Configurable):
    """``[inputs, *hidden, outputs]`` with tanh hidden layers and the output layer's incoming weights at
    zero (SENN's reference); with ``conv``, tanh conv blocks first (``GrowableNet.cnn``'s conventions
    otherwise), as the reference's CNN experiments use tanh."""

    name: ClassVar[str] = "senn"
    takes_front: ClassVar[bool] = False
    hidden: list = same_setting(MLPStart, "hidden")
    conv: list = same_setting(MLPStart, "conv")

    def build(self, data, seed: int, front: str | None = None) -> GrowableNet:
        if self.conv:
            net = GrowableNet.cnn(_image_shape(data), self.conv, self.hidden, data.n_outputs, activation="tanh",
                                  seed=seed)
        else:
            net = GrowableNet.mlp([data.n_features, *self.hidden, data.n_outputs], activation="tanh", seed=seed)
        with torch.no_grad():
            for conn in net.incoming(net.output_name):
                conn.weight.zero_()
        return net


@dataclass(eq=False)
class SizeWeightStart(Configurable):
    """One hidden layer of ``n_max`` tanh units gated by ``theta(N - m + 1)`` (method 1)."""

    name: ClassVar[str] = "size-weight"
    takes_front: ClassVar[bool] = False
    n_max: int = setting(Integer(1), 9, "units of the hidden layer (the most the size weight can open)")
    n_inf: float = setting(Number(), 5.0, "the size the size loss pulls N towards")
    dn: float = setting(Number(0, low_open=True), 1.0, "width of the smooth step's ramp")
    n_start: float = setting(Number(), 0.0, "the size weight N at the start")
    size_lambda: float = setting(Number(0), 0.1, "weight of the size loss lambda (N - N_inf)^2", key="lambda")

    def build(self, data, seed: int, front: str | None = None) -> GrowableNet:
        return size_weight_net(data.n_features, data.n_outputs, n_max=self.n_max, dn=self.dn, n_inf=self.n_inf,
                               size_lambda=self.size_lambda, n_start=self.n_start, seed=seed)


@dataclass(eq=False)
class ControllerMaskStart(Configurable):
    """One hidden layer of ``n_max`` tanh units masked by a controller output ``c`` (method 2)."""

    name: ClassVar[str] = "controller-mask"
    takes_front: ClassVar[bool] = False
    n_max: int = setting(Integer(1), 10, "units of the hidden layer (the most the controller can open)")
    size_weight: float = setting(Number(0), 0.32, "weight of the size loss w (c - 1)^2")
    c_start: float = setting(Number(), 1e-5, "the controller output c at the start")
    reference_defects: bool = setting(Boolean(), False, "the reference code's two defects (c detached from the "
                                                        "task, one mask value for the layer)")

    def build(self, data, seed: int, front: str | None = None) -> GrowableNet:
        return controller_mask_net(data.n_features, data.n_outputs, n_max=self.n_max, size_weight=self.size_weight,
                                   c_start=self.c_start, reference_defects=self.reference_defects, seed=seed)


def _image_shape(data) -> tuple[int, int, int]:
    """``(C, H, W)`` of ``data``'s images: a 3-D ``input_shape``, else ``(1, H, W)`` from a 2-D ``raw_shape``
    (the rule of ``selfexpand.data.base.image_shape``, which ``runs`` applies to the data itself)."""
    raw = data.preprocessing.get("raw_shape")
    if len(data.input_shape) == 3:
        return tuple(data.input_shape)
    if raw is not None and len(raw) == 2 and int(raw[0]) * int(raw[1]) == data.n_features:
        return (1, int(raw[0]), int(raw[1]))
    raise ConfigError(f"dataset {data.name!r} has no image shape (input_shape={list(data.input_shape)}): a conv "
                      f"start (conv=[...]) needs images such as mnist or cifar10")


STARTS: dict[str, type] = {cls.name: cls for cls in (MLPStart, SennStart, SizeWeightStart, ControllerMaskStart)}


def start_class(name: str) -> type:
    """The start network class called ``name``.

    Raises:
        ConfigError: an unknown name (the message lists the known ones).
    """
    return STARTS[one_of("start", name, sorted(STARTS))]

"""Fixed fronts: conv extractors whose flattened output is the graph's input layer.

A front trains with the rest of the network but never grows (DESIGN.md, "The growable network").
Two are registered at import, named in a spec as ``{"type": name, "in_shape": [C, H, W]}``:

- ``conv``: the SWE reference's CIFAR extractor (ALGORITHMS.md §2), channels 32-32-pool-64-64-pool.
  On ``[3, 32, 32]``: 4096 features, 65,760 params; 7.5-12 s per epoch on the CIFAR-10 subset
  (3200 training images, batch 100, Adam, a linear head, validation included; torch's default
  2 threads on the project's 2-core CPU machine).
- ``conv-small``: channels 16-pool-32-pool-pool, for CPUs. On ``[3, 32, 32]``: 512 features,
  5,136 params; about 1.5 s per epoch under the same conditions. Dropping the last pool (2048
  features) costs the same time but makes the first growable connection 4 times larger.

Every conv is 3x3 with padding 1 and no bias (the batch norm after it has its own shift), followed by
batch norm and ReLU; every pool is a 2x2 max pool (an odd size is floored, as ``nn.MaxPool2d`` does).
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils import skip_init

from ..errors import ConfigError
from .spec import FRONTS, register_front

__all__ = ["ConvFront", "REFERENCE_PLAN", "SMALL_PLAN", "conv_front", "small_conv_front", "front_for"]

POOL = "pool"
REFERENCE_PLAN = (32, 32, POOL, 64, 64, POOL)
SMALL_PLAN = (16, POOL, 32, POOL, POOL)


class ConvFront(nn.Module):
    """conv3x3-BN-ReLU blocks and 2x2 max pools, then flatten.

    Args:
        in_shape: ``[C, H, W]`` of one example. Inputs may be ``(N, C, H, W)``, flat
            ``(N, C*H*W)``, or ``(N, H, W)`` when ``C == 1``.
        plan: the steps in order: an int is a conv block with that many output channels, ``"pool"``
            a 2x2 max pool.
        name: the front's registered name, for messages.

    Attributes:
        out_features: number of output features per example (no forward pass needed).

    Raises:
        ConfigError: ``in_shape`` is not three positive integers, or the image is smaller than
            ``2 ** pools`` on a side.
    """

    def __init__(self, in_shape: Sequence[int], plan: Sequence = SMALL_PLAN, *, name: str = "conv"):
        super().__init__()
        pools = sum(step == POOL for step in plan)
        self.in_shape = _check_in_shape(in_shape, pools, name)
        self.plan = tuple(plan)
        channels, height, width = self.in_shape
        steps: list[nn.Module] = []
        for step in self.plan:
            if step == POOL:
                steps.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            else:
                # skip_init: the values are drawn once, by reset_parameters below
                steps += [skip_init(nn.Conv2d, channels, int(step), 3, padding=1, bias=False),
                          skip_init(nn.BatchNorm2d, int(step)), nn.ReLU()]
                channels = int(step)
        self.body = nn.Sequential(*steps)
        self.out_features = channels * height * width
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw fresh values: conv weights ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (torch's default,
        Kaiming-uniform with ``a = sqrt(5)``), batch norm scale 1 and shift 0, running statistics
        reset. Draws come from ``generator`` (on the CPU), else from torch's global generator."""
        for module in self.body:
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                bound = 1 / math.sqrt(fan_in)
                draw = (torch.rand(module.weight.shape, generator=generator) * 2 - 1) * bound
                module.weight.copy_(draw)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(1.0)
                module.bias.zero_()
                module.reset_running_stats()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels, height, width = self.in_shape
        if x.dim() == 2 and x.shape[1] == channels * height * width:
            x = x.reshape(x.shape[0], channels, height, width)
        elif x.dim() == 3 and channels == 1 and tuple(x.shape[1:]) == (height, width):
            x = x.unsqueeze(1)
        elif tuple(x.shape[1:]) != self.in_shape:
            raise ConfigError(f"inputs must be (N, {channels}, {height}, {width}) or (N, "
                              f"{channels * height * width}) for in_shape {list(self.in_shape)}, "
                              f"got shape {tuple(x.shape)}")
        return self.body(x).flatten(1)

    def plain(self) -> nn.Sequential:
        """A copy made of torch modules only (for ``GrowableNet.export``): ``Flatten``, ``Unflatten`` to
        ``in_shape``, the body's conv, batch norm, ReLU and pool modules, ``Flatten``. It takes the same
        input forms; an input of another size fails in ``Unflatten`` (torch's error, not a ConfigError)."""
        return nn.Sequential(nn.Flatten(1), nn.Unflatten(1, self.in_shape), *copy.deepcopy(self.body),
                             nn.Flatten(1)).train(self.training)

    def extra_repr(self) -> str:
        return f"in_shape={list(self.in_shape)}, out_features={self.out_features}"


def conv_front(in_shape: Sequence[int]) -> ConvFront:
    """The reference's extractor (:data:`REFERENCE_PLAN`), registered as ``conv``."""
    return ConvFront(in_shape, REFERENCE_PLAN, name="conv")


def small_conv_front(in_shape: Sequence[int]) -> ConvFront:
    """The cheap extractor (:data:`SMALL_PLAN`), registered as ``conv-small``."""
    return ConvFront(in_shape, SMALL_PLAN, name="conv-small")


register_front("conv", conv_front)
register_front("conv-small", small_conv_front)


def front_for(name: str, input_shape: Sequence[int], raw_shape: Sequence[int] | None = None, *,
              generator: torch.Generator | None = None) -> tuple[nn.Module, dict]:
    """The front ``name`` for a dataset, and its spec (``{"type": name, "in_shape": [C, H, W]}``).

    ``in_shape`` is ``input_shape`` when that has three dimensions; ``[1, H, W]`` when the input is
    flat and the source's ``raw_shape`` is ``[H, W]`` (MNIST's 784 values from 28x28 images).

    Args:
        name: a registered front (``conv``, ``conv-small``, or one added with ``register_front``).
        input_shape: the dataset's per-example model input shape.
        raw_shape: the dataset's per-example shape in its source files, if it has one.
        generator: draws the front's values when given (:func:`selfexpand.graph.init.reset_front`).

    Raises:
        ConfigError: an unknown name, or inputs that are not images.
    """
    if name not in FRONTS:
        raise ConfigError(f"front must be one of {sorted(FRONTS)}, got front={name!r}")
    shape = [int(s) for s in input_shape]
    raw = [int(s) for s in raw_shape] if raw_shape else None
    if len(shape) == 3:
        in_shape = shape
    elif len(shape) == 1 and raw is not None and len(raw) == 2 and raw[0] * raw[1] == shape[0]:
        in_shape = [1, *raw]
    else:
        raise ConfigError(f"front {name!r} needs image inputs ([C, H, W], or flat values with a 2-D "
                          f"raw_shape), got input_shape={shape}" + (f", raw_shape={raw}" if raw else ""))
    spec = {"type": name, "in_shape": in_shape}
    front = FRONTS[name](in_shape=in_shape)
    if generator is not None:
        from .init import reset_front

        reset_front(front, generator)
    return front, spec


def _check_in_shape(in_shape, pools: int, name: str) -> tuple[int, int, int]:
    values = list(in_shape) if isinstance(in_shape, (list, tuple)) else None
    if values is None or len(values) != 3 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ConfigError(f"front {name!r} needs in_shape [C, H, W] of three positive integers, "
                          f"got in_shape={in_shape!r}")
    smallest = 2 ** pools
    if values[1] < smallest or values[2] < smallest:
        raise ConfigError(f"front {name!r} halves the image {pools} times, so H and W must be at least "
                          f"{smallest}, got in_shape={values}")
    return tuple(values)

"""``NonNegativeBiases``: the SWE reference's start, every bias made non-negative (``abs``) once.

With ReLU units a negative bias makes a unit more likely to start (and stay) dead; the reference
code applies ``abs`` to the initial network's biases before training (ALGORITHMS.md §2). Only at the
start of a fresh run (epoch 0), never on resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...settings import setting
from ...validators import Boolean
from ..base import GrowthPart
from ..registry import register_part

__all__ = ["NonNegativeBiases"]


@register_part
@dataclass(eq=False)
class NonNegativeBiases(GrowthPart):
    """At epoch 0, replace every layer's bias ``b`` by ``|b|`` (in place: optimizer state unaffected)."""

    name = "nonnegative-biases"
    nonnegative_biases: bool = setting(Boolean(), True, "make every bias non-negative at the start (the SWE "
                                                        "reference)")

    @torch.no_grad()
    def on_train_begin(self, ctx, **kwargs) -> None:
        if ctx.epoch != 0 or not self.nonnegative_biases:
            return
        for layer in ctx.model.layers.values():
            if layer.bias is not None:
                layer.bias.abs_()

"""Recorders: callbacks that add figures to each epoch's history record, before the run directory
stores it (``selfexpand.runs`` puts them ahead of its writer).

- :class:`InactivityRecorder`: the inactivity figures on the validation split (DESIGN.md glossary).
- :class:`SizeControlRecorder`: for layers with a size modulator (size weight, controller mask), the
  control value (``N`` or ``c``) and the number of live units: the size methods grow through the
  optimizer, with no trigger, selector or initializer, so this is where their growth shows.

Both run at ``on_epoch_end``, after the epoch's growth step: the figures describe the network the
next epoch trains (new units just added included). After an epoch whose loss is not finite (the run
stops, :attr:`~selfexpand.train.trainer.Trainer.failure`) there are no inactivity figures: the
network's outputs are not numbers.
"""

from __future__ import annotations

import math

from ..report.inactivity import inactivity, inactivity_fields
from ..validators import positive_int
from .callbacks import Callback

__all__ = ["InactivityRecorder", "SizeControlRecorder"]


class InactivityRecorder(Callback):
    """Adds :func:`~selfexpand.report.inactivity.inactivity_fields` on the validation split.

    Args:
        batch_size: rows per forward pass of the analysis.
    """

    def __init__(self, batch_size: int = 4096):
        self.batch_size = positive_int("batch_size", batch_size)

    def on_epoch_end(self, ctx, record: dict, **kwargs) -> None:
        if not all(math.isfinite(record.get(k, 0.0)) for k in ("train_loss", "val_loss")):
            return
        record.update(inactivity_fields(inactivity(ctx.model, ctx.data.x_val, self.batch_size)))


class SizeControlRecorder(Callback):
    """Adds ``size_control`` ``{layer: value}`` and ``live_units`` ``{layer: n}`` when the network has
    size-modulated layers (nothing otherwise)."""

    def on_epoch_end(self, ctx, record: dict, **kwargs) -> None:
        values, live = {}, {}
        for name, layer in ctx.model.layers.items():
            modulator = getattr(layer, "modulator", None)
            if modulator is None or not hasattr(modulator, "live_count"):
                continue
            values[name] = float(next(iter(modulator.parameters())).detach())
            live[name] = modulator.live_count()
        if values:
            record["size_control"] = values
            record["live_units"] = live

"""``SizeControlRecorder``: writes the size weight / controller output and the live width into the history.

The size-by-gradient-descent methods (ALGORITHMS.md §4) grow with no trigger, selector or
initializer: the optimizer moves the control scalar like any weight. This part only records, after
every epoch, each sized layer's control value (``N`` or ``c``) and its number of live units, so that
``history.jsonl`` shows the growth.
"""

from __future__ import annotations

from .base import GrowthPart

__all__ = ["SizeControlRecorder"]


class SizeControlRecorder(GrowthPart):
    """Adds ``size_control`` ``{layer: value}`` and ``live_units`` ``{layer: n}`` to each epoch record."""

    def on_epoch_end(self, ctx) -> list:
        values, live = {}, {}
        for name, layer in ctx.model.layers.items():
            modulator = getattr(layer, "modulator", None)
            if modulator is None or not hasattr(modulator, "live_count"):
                continue
            scalar = next(iter(modulator.parameters()))
            values[name] = float(scalar.detach())
            live[name] = modulator.live_count()
        epochs = ctx.history.records
        if values and epochs and epochs[-1].get("type") == "epoch":
            epochs[-1]["size_control"] = values
            epochs[-1]["live_units"] = live
        return []

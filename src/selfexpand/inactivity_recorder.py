"""``InactivityRecorder``: the inactivity figures of every epoch, in the epoch's history record.

A callback of its own module because ``report`` imports nothing above itself and the callback base
class lives in ``train``. ``runs.py`` places it before the run directory writer, so the figures
reach ``history.jsonl`` with the record they belong to.
"""

from __future__ import annotations

from .report.inactivity import inactivity, inactivity_fields
from .train.callbacks import Callback

__all__ = ["InactivityRecorder"]


class InactivityRecorder(Callback):
    """Adds :func:`inactivity_fields` on the validation split to each epoch record.

    The trainer calls ``on_epoch_end`` after the epoch's growth step, so the figures describe the
    network as the epoch leaves it: the one the next epoch trains (new units just added included).

    Args:
        batch_size: rows per forward pass of the analysis.
    """

    def __init__(self, batch_size: int = 4096):
        self.batch_size = batch_size

    def on_epoch_end(self, ctx, record: dict, **kwargs) -> None:
        record.update(inactivity_fields(inactivity(ctx.model, ctx.data.x_val, self.batch_size)))

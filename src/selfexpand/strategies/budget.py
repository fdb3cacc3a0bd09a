"""Epoch counts that keep their shape at any run length (issue #22).

A part whose settings count epochs (a plateau's gap and window, a round's patience, a check's
cooldown, a timetable's epochs) also declares ``tuned_epochs``: the run length its counts are written
for. In a run of ``T`` epochs a count ``c`` becomes ``round(c * T / tuned_epochs)`` (at least 1 when
``c`` is), and a per-epoch rate (the plateau threshold, a change of the validation loss per epoch)
becomes ``rate * tuned_epochs / T``: a preset tuned at 64 epochs grows at the same fractions of a
10-epoch run. ``tuned_epochs`` null keeps every count as written (runs stored before this existed).
A method's row gives ``tuned_epochs`` its own ``epochs`` (``selfexpand.presets.resolve``).
"""

from __future__ import annotations

import math

from ..settings import setting
from ..validators import Integer, Optional

__all__ = ["tuned_epochs_setting", "run_length", "scale_epochs", "scale_rate"]

TUNED_EPOCHS_HELP = ("the run length the part's epoch counts are written for: in a run of T epochs each count "
                     "scales by T / tuned_epochs (null: counts are epochs as written; a method's row sets its "
                     "own epochs)")


def tuned_epochs_setting():
    """The ``tuned_epochs`` field of a part whose settings count epochs."""
    return setting(Optional(Integer(1)), None, TUNED_EPOCHS_HELP)


def run_length(ctx) -> int:
    """The run's budget of epochs (0: unknown, e.g. a context built by hand)."""
    return int(getattr(ctx, "epochs_total", 0) or 0)


def _ratio(tuned: int | None, total: int) -> float | None:
    return None if tuned is None or total <= 0 else total / tuned


def scale_epochs(count: int, tuned: int | None, total: int) -> int:
    """``count`` epochs of a run of ``tuned`` epochs, in a run of ``total`` (rounded half up; a
    positive count stays at least 1; unchanged when either length is unknown)."""
    ratio = _ratio(tuned, total)
    if ratio is None or count == 0:
        return count
    return max(1, math.floor(count * ratio + 0.5))


def scale_rate(rate: float, tuned: int | None, total: int) -> float:
    """A per-epoch ``rate`` of a run of ``tuned`` epochs, in a run of ``total``."""
    ratio = _ratio(tuned, total)
    return rate if ratio is None else rate / ratio

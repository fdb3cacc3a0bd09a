"""WHEN to grow: the built-in triggers (importing this package registers them)."""

from .checks import CheckTrigger
from .interval import IntervalTrigger, ScheduleTrigger
from .plateau import PlateauTrigger
from .rounds import RoundsTrigger

__all__ = ["CheckTrigger", "IntervalTrigger", "ScheduleTrigger", "PlateauTrigger", "RoundsTrigger"]

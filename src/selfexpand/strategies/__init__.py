"""Growth strategies: WHEN (``triggers``), WHERE (``selectors``), HOW (``initializers``), helper parts
(``helpers``), SENN's mathematics (``senn``), and the shape helpers several share (``topology``,
``unit_values``).

Write your own part by subclassing :class:`Trigger`, :class:`Selector` or :class:`Initializer` as a
dataclass whose settings are made with :func:`selfexpand.settings.setting`, and register it with
:func:`register_part` (docs/guide.md, "Write your own part"). Importing this package registers the
built-in parts.
"""

from . import helpers, initializers, selectors, triggers  # noqa: F401  (registers the built-in parts)
from .base import GROWS, Decision, GrowthPart, Initializer, Selector, Site, Trigger
from .method import GrowthMethod
from .registry import PART_KINDS, part_class, part_names, register_part

__all__ = ["Trigger", "Selector", "Initializer", "GrowthPart", "Site", "Decision", "GrowthMethod", "GROWS",
           "register_part", "part_class", "part_names", "PART_KINDS"]

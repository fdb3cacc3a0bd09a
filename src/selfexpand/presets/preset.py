"""``Preset``: a published method as plain data, the parts it is made of and its settings per dataset.

Imports nothing but the standard library and :mod:`selfexpand.spaces`: the rows can be read (and a
method listing made) without torch. ``selfexpand.presets`` resolves a preset's row into a run's
configuration and builds its parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ..spaces import Space

__all__ = ["Preset", "TABLE_ROW", "ANY_ROW"]

ANY_ROW = "*"  # the row for a dataset the preset has no row of its own for
TABLE_ROW = "table"  # the row for the user's own CSV / NPZ files


@dataclass(frozen=True)
class Preset:
    """A method by name.

    Attributes:
        name: the method name (``--method``).
        summary: one line for the method listing.
        rows: dataset -> settings; ``"*"`` (required) for any other dataset, ``"table"`` for CSV / NPZ
            files. A row holds training settings (epochs, lr, ...), the start network's, and those
            of the parts below; every key must be declared by one of them.
        trigger, selector, initializer: registered part names (None: the method has none).
        helpers: registered helper parts that run with the method (``nonnegative-biases``).
        start: the start network (``mlp``, ``senn``, ``size-weight``, ``controller-mask``).
        space: setting -> the search space ``selfexpand search`` uses for this method instead of the one
            its part declares (:mod:`selfexpand.spaces`); ``None`` fixes the setting at the row's value.
    """

    name: str
    summary: str
    rows: Mapping[str, Mapping] = field(default_factory=dict)
    trigger: str | None = None
    selector: str | None = None
    initializer: str | None = None
    helpers: tuple[str, ...] = ()
    start: str = "mlp"
    space: Mapping[str, Space | None] = field(default_factory=dict)

    def parts(self) -> dict[str, str | None]:
        """``{"trigger": ..., "selector": ..., "initializer": ...}``."""
        return {"trigger": self.trigger, "selector": self.selector, "initializer": self.initializer}

    def row_key(self, dataset: str) -> str:
        """The row a dataset (a name, or a path to a CSV / NPZ file) reads."""
        text = str(dataset).strip().lower()
        if text.endswith((".csv", ".npz")):
            return TABLE_ROW if TABLE_ROW in self.rows else ANY_ROW
        return text if text in self.rows else ANY_ROW

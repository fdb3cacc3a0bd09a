"""``GrowthEvent``: what one growth operation did."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..events import event_line

__all__ = ["GrowthEvent"]


@dataclass
class GrowthEvent:
    """The record every op returns (and the trainer writes to ``history.jsonl``).

    Attributes:
        kind: the op (``add_units``, ``remove_units``, ``insert_layer``, ``split_edges``,
            ``prune_edges``, ``compact``).
        site: where (a layer or connection name).
        units_added / units_removed / edges_added / edges_removed: counts of live units and weights.
        params_before / params_after: ``params`` (DESIGN.md counts) around the op.
        seconds: wall time of the op, optimizer carry-over included.
        details: JSON-able extras (new layer name, ...).
    """

    kind: str
    site: str
    units_added: int = 0
    units_removed: int = 0
    edges_added: int = 0
    edges_removed: int = 0
    params_before: int = 0
    params_after: int = 0
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """This event in one line of text (:func:`selfexpand.events.event_line`)."""
        return event_line(self.to_dict())

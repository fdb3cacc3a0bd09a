"""``History``: one record per epoch and one per growth event, in order (``history.jsonl``).

JSON written by a run never holds ``NaN`` or ``Infinity`` (not JSON; many readers refuse them): a
non-finite float is written as ``null`` (:func:`json_safe`, :func:`to_json`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["History", "json_safe", "to_json"]


def json_safe(value):
    """``value`` with every non-finite float (NaN, +-inf) replaced by None, in lists and dicts too."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def to_json(value, **kwargs) -> str:
    """``json.dumps`` of :func:`json_safe` ``(value)``, refusing any ``NaN`` literal."""
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)


class History:
    """An append-only list of JSON-able records, each with a ``type`` (``epoch`` or ``growth``)."""

    def __init__(self, records: list[dict] | None = None):
        self.records: list[dict] = list(records or [])

    def append(self, record: dict) -> None:
        self.records.append(record)

    def epochs(self) -> list[dict]:
        return [r for r in self.records if r["type"] == "epoch"]

    def growth(self) -> list[dict]:
        return [r for r in self.records if r["type"] == "growth"]

    def values(self, key: str) -> list:
        """``key`` of every epoch record, in order (e.g. ``val_loss``)."""
        return [r[key] for r in self.epochs()]

    def write_jsonl(self, path: str | Path) -> None:
        """Write every record, one JSON object a line (non-finite floats as ``null``), atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(to_json(r) + "\n" for r in self.records))
        tmp.replace(path)

    def state_dict(self) -> dict:
        return {"records": self.records}

    def load_state_dict(self, state: dict) -> None:
        self.records = list(state["records"])

"""``History``: one record per epoch and one per growth event, in order (``history.jsonl``)."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["History"]


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
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records))
        tmp.replace(path)

    def state_dict(self) -> dict:
        return {"records": self.records}

    def load_state_dict(self, state: dict) -> None:
        self.records = list(state["records"])

"""The text of a growth event: one line from its record (a ``GrowthEvent.to_dict()`` or a growth
record of ``history.jsonl``), shared by the progress bar and ``selfexpand inspect``."""

from __future__ import annotations

__all__ = ["event_line"]


def _counts(added: int, removed: int, noun: str) -> str:
    if removed and not added:
        return f"-{removed} {noun}"
    if removed:
        return f"+{added}/-{removed} {noun}"
    return f"+{added} {noun}"


def event_line(record: dict) -> str:
    """One growth event in one line: what it did, where, the layer it made, and the counts.

    ``record`` is :meth:`GrowthEvent.to_dict` or a growth record of ``history.jsonl`` (the same keys;
    missing counts read as 0). A new layer is named (``split_edges at output, new layer h1: ...``);
    a prune that pays for a split says so; stored params are shown where the record carries them
    (compactions recorded by the edge-expansion parts do).

    >>> event_line({"kind": "split_edges", "site": "output", "units_added": 8, "edges_added": 96,
    ...             "edges_removed": 8, "params_before": 690, "params_after": 786,
    ...             "details": {"layer": "h1"}})
    'split_edges at output, new layer h1: +8 units, +96/-8 edges, params 690 -> 786'
    """
    details = record.get("details") or {}
    head = f"{record.get('kind', '?')} at {record.get('site', '?')}"
    if details.get("layer"):
        head += f", new layer {details['layer']}"
    parts = [_counts(record.get("units_added", 0), record.get("units_removed", 0), "units"),
             f"+{record.get('edges_added', 0)}/-{record.get('edges_removed', 0)} edges",
             f"params {record.get('params_before', 0)} -> {record.get('params_after', 0)}"]
    if "stored_params_before" in details and "stored_params_after" in details:
        parts.append(f"stored {details['stored_params_before']} -> {details['stored_params_after']}")
    line = f"{head}: {', '.join(parts)}"
    if details.get("pays_for_split"):
        line += " (pays for a split)"
    return line

"""``selfexpand inspect``: a run's architecture, counts and growth events as plain text."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["describe_run", "describe_graph"]


def describe_graph(net) -> list[str]:
    """One line per layer (size, activation) and per connection (shape, live edges)."""
    lines = ["layers (topological order):"]
    for name in net.order:
        layer = net.layers[name]
        act = "" if layer.is_input else f" {type(layer.activation).__name__}"
        mod = "" if layer.modulator is None else f" modulator={layer.modulator.spec_name}"
        lines.append(f"  {name:<10} {layer.size:>6} units{act}{mod}")
    lines.append("connections:")
    for name, c in net.connections.items():
        live = int(c.live().sum())
        lines.append(f"  {c.source:>8} -> {c.target:<8} stored {c.shape[0]}x{c.shape[1]:<6} live {live}")
    return lines


def describe_run(run_dir: str | Path) -> str:
    """The text ``selfexpand inspect RUN_DIR`` prints."""
    from ..checkpoint import load_checkpoint
    from ..errors import DataError
    from .summary import GROWING_KINDS

    run_dir = Path(run_dir)
    model_path = run_dir / "model.safetensors"
    if not model_path.exists():
        model_path = run_dir / "checkpoint" / "last.safetensors"
    if not model_path.exists():
        raise DataError(f"{run_dir}: no model.safetensors or checkpoint; is it a run directory?")
    net = load_checkpoint(model_path).model
    lines = [f"run {run_dir}"]
    summary = run_dir / "summary.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        lines.append(f"method {s['method']}, dataset {s['dataset']}, seed {s['seed']}, epochs {s['epochs']}, "
                     f"test {s['metric_name']} {s['test_metric']:.4f}")
    lines += describe_graph(net)
    counts = net.counts()
    lines.append("counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    history = run_dir / "history.jsonl"
    if history.exists():
        records = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
        growth = [r for r in records if r["type"] == "growth"]
        grown = sum(r["kind"] in GROWING_KINDS for r in growth)  # as summary.json counts them
        lines.append(f"growth events: {grown} (events of any kind, pruning and compaction included: "
                     f"{len(growth)})")
        for g in growth:
            lines.append(f"  epoch {g['epoch']:>4} {g['kind']:<12} {g['site']:<10} +{g['units_added']} units "
                         f"+{g['edges_added']}/-{g['edges_removed']} edges params {g['params_before']} -> "
                         f"{g['params_after']}")
    return "\n".join(lines)

"""``selfexpand inspect``: a run's architecture, counts, inactivity and growth events as plain text.

The inactivity figures are the ones stored by the run (``summary.json``: the final model on the
validation split; for an unfinished run, the last epoch record of ``history.jsonl``, which describes
the checkpoint saved with it), not recomputed: inspecting needs no dataset.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["describe_run", "describe_graph", "describe_inactivity", "describe_compute"]


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


def describe_inactivity(figures: dict | None, source: str) -> list[str]:
    """A table of units / new / dead / silent / inactive per hidden layer from stored figures
    (the ``inactivity`` and fraction keys of a summary or an epoch record)."""
    layers = (figures or {}).get("inactivity")
    if layers is None:
        return ["inactivity: not recorded by this run"]
    lines = [f"inactivity ({source}):",
             f"  {'layer':<10} {'units':>6} {'new':>6} {'dead':>6} {'silent':>6} {'inactive':>8} "
             f"{'new inactive':>12}"]
    for name, c in layers.items():
        lines.append(f"  {name:<10} {c['units']:>6} {c['new_units']:>6} {c['dead']:>6} {c['silent']:>6} "
                     f"{c['inactive']:>8} {c['new_inactive']:>12}")

    def fraction(key, none):
        value = figures.get(key)
        return f"n/a ({none})" if value is None else f"{value:.4f}"

    lines.append(f"  inactive_units_fraction {fraction('inactive_units_fraction', 'no hidden units')}, "
                 f"inactive_new_units_fraction {fraction('inactive_new_units_fraction', 'no new units')}")
    lines.append("  (dead: output std < 1e-6, or ReLU output 0 on >= 99 % of rows; "
                 "silent: outgoing norm < 1 % of the layer's median)")
    return lines


def describe_compute(totals: dict, source: str) -> list[str]:
    """The run's compute (``train_flops``, ``live_train_flops``, ``growth_flops``) in GFLOPs."""
    if all(totals.get(k) is None for k in ("train_flops", "live_train_flops", "growth_flops")):
        return ["compute: not recorded by this run"]

    def giga(key):
        value = totals.get(key)
        return "n/a" if value is None else f"{value / 1e9:.4g}"

    return [f"compute ({source}): train {giga('train_flops')} GFLOPs (live entries {giga('live_train_flops')}), "
            f"growth {giga('growth_flops')} GFLOPs",
            "  (2mnk over the matrix products and convolutions, forward and backward; elementwise work "
            "not counted)"]


def describe_run(run_dir: str | Path) -> str:
    """The text ``selfexpand inspect RUN_DIR`` prints."""
    from ..checkpoint import load_checkpoint
    from ..errors import DataError
    from .summary import GROWING_KINDS, flop_totals

    run_dir = Path(run_dir)
    model_path = run_dir / "model.safetensors"
    if not model_path.exists():
        model_path = run_dir / "checkpoint" / "last.safetensors"
    if not model_path.exists():
        raise DataError(f"{run_dir}: no model.safetensors or checkpoint; is it a run directory?")
    net = load_checkpoint(model_path).model
    lines = [f"run {run_dir}"]
    summary = run_dir / "summary.json"
    s = None
    if summary.exists():
        s = json.loads(summary.read_text())
        lines.append(f"method {s['method']}, dataset {s['dataset']}, seed {s['seed']}, epochs {s['epochs']}, "
                     f"test {s['metric_name']} {s['test_metric']:.4f}")
    lines += describe_graph(net)
    counts = net.counts()
    lines.append("counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    history = run_dir / "history.jsonl"
    records = []
    if history.exists():
        records = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    if s is not None and s.get("inactivity") is not None:
        lines += describe_inactivity(s, "final model, validation set")
    else:
        epochs = [r for r in records if r["type"] == "epoch"]
        last = epochs[-1] if epochs else None
        source = f"model after epoch {last['epoch']}, validation set" if last else ""
        lines += describe_inactivity(last, source)
    if s is not None and any(k in s for k in ("train_flops", "growth_flops")):
        lines += describe_compute(s, "run totals")
    else:
        last = max((r["epoch"] for r in records if r["type"] == "epoch"), default=0)
        lines += describe_compute(flop_totals(records), f"epochs 1-{last} of history.jsonl")
    if history.exists():
        growth = [r for r in records if r["type"] == "growth"]
        grown = sum(r["kind"] in GROWING_KINDS for r in growth)  # as summary.json counts them
        lines.append(f"growth events: {grown} (events of any kind, pruning and compaction included: "
                     f"{len(growth)})")
        for g in growth:
            lines.append(f"  epoch {g['epoch']:>4} {g['kind']:<12} {g['site']:<10} +{g['units_added']} units "
                         f"+{g['edges_added']}/-{g['edges_removed']} edges params {g['params_before']} -> "
                         f"{g['params_after']}")
    return "\n".join(lines)

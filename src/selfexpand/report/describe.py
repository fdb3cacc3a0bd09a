"""``selfexpand inspect``: a run's architecture, counts, inactivity and growth events as plain text.

The inactivity figures are the ones stored by the run (``summary.json``: the final model on the
validation split; for an unfinished run, the last epoch record of ``history.jsonl``, which describes
the checkpoint saved with it), not recomputed: inspecting needs no dataset.

Inspecting needs the model (``model.safetensors``, or the checkpoint of an unfinished run), which must
be the run's own (``selfexpand.checkpoint.load_run_file``). A damaged ``summary.json`` or a damaged
line of ``history.jsonl`` (a run killed while writing it) is left out with a logged warning.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from ..events import event_line

log = logging.getLogger("selfexpand.report")

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


def _summary(path: Path) -> dict | None:
    """``summary.json`` if it is readable and has the keys shown (None otherwise, with a warning)."""
    if not path.exists():
        return None
    try:
        s = json.loads(path.read_bytes().decode("utf-8"))
        if isinstance(s, dict) and all(k in s for k in ("method", "dataset", "seed", "epochs", "metric_name")):
            return s
        problem = "not a run summary (a JSON object with method, dataset, seed, epochs, metric_name)"
    except (OSError, ValueError) as exc:
        problem = f"not readable JSON ({exc})"
    log.warning("%s: %s; left out", path, problem)
    return None


def _records(path: Path) -> list[dict]:
    """The records of ``history.jsonl``; a line that is not a record is left out with a warning."""
    if not path.exists():
        return []
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        log.warning("%s: cannot be read (%s); left out", path, exc.strerror)
        return []
    records, bad = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        ok = isinstance(record, dict) and record.get("type") in ("epoch", "growth") and \
            isinstance(record.get("epoch"), int)
        if ok and record["type"] == "growth":
            ok = all(k in record for k in ("kind", "site", "units_added", "edges_added", "edges_removed",
                                           "params_before", "params_after"))
        (records if ok else bad).append(record if ok else number)
    if bad:
        log.warning("%s: line%s %s %s not a history record (cut short when the run was stopped?); left out",
                    path, "s" if len(bad) > 1 else "", ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else ""),
                    "are" if len(bad) > 1 else "is")
    return records


def _number(value, digits: int = 4) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return "n/a"


def describe_run(run_dir: str | Path) -> str:
    """The text ``selfexpand inspect RUN_DIR`` prints.

    Raises:
        DataError: no model file (not a run directory) or a damaged ``run.json``.
        CheckpointError / RunIdentityError: a damaged model file, or another run's.
    """
    from ..checkpoint import load_run_file
    from ..errors import DataError
    from .summary import GROWING_KINDS, flop_totals

    run_dir = Path(run_dir)
    name = "model.safetensors"
    if not (run_dir / name).exists():
        name = "checkpoint/last.safetensors"
    if not (run_dir / name).exists():
        raise DataError(f"{run_dir}: no model.safetensors or checkpoint; is it a run directory?")
    net = load_run_file(run_dir, name).model
    lines = [f"run {run_dir}"]
    s = _summary(run_dir / "summary.json")
    if s is not None:
        lines.append(f"method {s['method']}, dataset {s['dataset']}, seed {s['seed']}, epochs {s['epochs']}, "
                     f"test {s['metric_name']} {_number(s.get('test_metric'))}")
        stopped = s.get("stopped")
        if isinstance(stopped, dict):
            lines.append(f"stopped at epoch {stopped.get('epoch')}: {stopped.get('reason')} (last good checkpoint: "
                         f"epoch {stopped.get('kept_epoch')})")
        for warning in s.get("warnings") or ():
            lines.append(f"warning: {warning}")
    lines += describe_graph(net)
    counts = net.counts()
    lines.append("counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    history = run_dir / "history.jsonl"
    records = _records(history)

    def inactivity_lines():
        if s is not None and isinstance(s.get("inactivity"), dict):
            return describe_inactivity(s, "final model, validation set")
        epochs = [r for r in records if r["type"] == "epoch" and isinstance(r.get("inactivity"), dict)]
        last = epochs[-1] if epochs else None
        return describe_inactivity(last, f"model after epoch {last['epoch']}, validation set" if last else "")

    def compute_lines():
        if s is not None and any(k in s for k in ("train_flops", "growth_flops")):
            return describe_compute(s, "run totals")
        last = max((r["epoch"] for r in records if r["type"] == "epoch"), default=0)
        return describe_compute(flop_totals(records), f"epochs 1-{last} of history.jsonl")

    def growth_lines():
        growth = [r for r in records if r["type"] == "growth"]
        grown = sum(r["kind"] in GROWING_KINDS for r in growth)  # as summary.json counts them
        return [f"growth events: {grown} (events of any kind, pruning and compaction included: {len(growth)})"] + [
            f"  epoch {g['epoch']:>4} {event_line(g)}" for g in growth]

    lines += _guarded(inactivity_lines, "inactivity", run_dir)
    lines += _guarded(compute_lines, "compute", run_dir)
    if history.exists():
        lines += _guarded(growth_lines, "growth events", run_dir)
    return "\n".join(lines)


def _guarded(make, what: str, run_dir: Path) -> list[str]:
    """``make()``, or a line saying the stored figures are damaged (a hand-edited file)."""
    try:
        return make()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("%s: the stored %s figures are damaged (%s: %s); left out", run_dir, what,
                    type(exc).__name__, exc)
        return [f"{what}: the stored figures are damaged (summary.json / history.jsonl)"]

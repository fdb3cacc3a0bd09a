"""The static front and the sweep (DESIGN.md glossary).

A **family** is the methods of a bench whose runs start from the same network (start network, its
hidden widths, its fixed front). Its **front** is ``FRONT_POINTS`` static networks whose ``params`` are
geometric from the start's to twice the largest grown ``params`` of the family, hidden widths scaled
uniformly from the start's (a start with no hidden layer: the start itself, then one hidden layer whose
width gives the ``params``). Each is trained the full budget with the settings of the family's first
method, per seed, like a static twin. The **sweep** is what a user does without growth: train every
size, keep the one with the best validation metric (never the test metric), pay for all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .rows import kind_of, ok

__all__ = ["FRONT_POINTS", "Family", "families", "front_params", "front_widths", "front_at", "sweep_pick",
           "write_templates", "front_rows", "sweeps"]

FRONT_POINTS = 5

#: start networks whose hidden widths the front scales, and their hidden activation
_SCALABLE = {"mlp": "relu", "senn": "tanh"}


@dataclass
class Family:
    """Methods sharing one start network; ``runs``: their successful grown runs' rows."""

    key: tuple
    methods: list[str] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "+".join(self.methods)

    @property
    def start(self) -> str:
        return self.key[0]

    @property
    def hidden(self) -> list[int]:
        return list(self.key[1])

    @property
    def scalable(self) -> bool:
        return self.start in _SCALABLE

    def reference(self, seed: int) -> dict | None:
        """The run whose settings, data and seed the front copies for ``seed`` (the first method's)."""
        return next((r for r in self.runs if r["seed"] == seed), None)


def families(rows: list[dict], starts: dict[str, tuple]) -> list[Family]:
    """The families of the successful grown runs in ``rows``, in the order their methods first come.

    Args:
        starts: method -> its start key ``(start network, hidden widths, front)``.
    """
    out: dict[tuple, Family] = {}
    for row in rows:
        if row.get("kind") != "grown" or not ok(row) or row["method"] not in starts:
            continue
        fam = out.setdefault(starts[row["method"]], Family(starts[row["method"]]))
        if row["method"] not in fam.methods:
            fam.methods.append(row["method"])
        fam.runs.append(row)
    return list(out.values())


def front_params(start: int, largest: int, points: int = FRONT_POINTS) -> list[float]:
    """``points`` target ``params``, geometric from ``start`` to ``2 * largest``."""
    top = max(2 * largest, start)
    return [start * (top / start) ** (k / (points - 1)) for k in range(points)]


def _chain_params(widths: list[int]) -> int:
    return sum((a + 1) * b for a, b in zip(widths, widths[1:]))


def front_widths(target: float, n_in: int, n_out: int, hidden: list[int], offset: int = 0) -> list[int]:
    """Hidden widths whose chain ``[n_in, *widths, n_out]`` has ``params`` nearest ``target``.

    ``hidden`` scaled by one factor (each width rounded, at least 1); with no hidden layer, the start
    itself when ``target`` is at most its ``params``, else one hidden layer. ``offset``: ``params`` the
    chain does not hold (a front's), the same at every width.
    """
    def size(widths):
        return _chain_params([n_in, *widths, n_out]) + offset

    if not hidden:
        if target <= size([]):
            return []
        return [max(1, round((target - offset - n_out) / (n_in + 1 + n_out)))]

    def scaled(s):
        return [max(1, round(s * w)) for w in hidden]

    lo, hi = 0.0, 1.0
    while size(scaled(hi)) < target:
        hi *= 2
    for _ in range(60):  # the smallest factor reaching the target
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if size(scaled(mid)) >= target else (mid, hi)
    above, below = scaled(hi), scaled(lo)
    return min((above, below), key=lambda w: abs(size(w) - target))


def write_templates(family: Family, root: Path) -> list[tuple[list[int], Path]]:
    """The front's networks as architecture folders (``model.safetensors``) under ``root``, from the
    family's first run (inputs, outputs and fixed front; values are drawn anew by each run).

    Returns:
        ``(hidden widths, folder)`` per front point, smallest first (repeated widths kept once).
    """
    from ..checkpoint import load_checkpoint, save_checkpoint
    from ..graph import GrowableNet

    run = family.runs[0]
    model = load_checkpoint(Path(run["run_dir"]) / "model.safetensors").model
    n_in, n_out = model.layers[model.input_name].size, model.layers[model.output_name].size
    offset = int(run["params_start"]) - _chain_params([n_in, *family.hidden, n_out])
    largest = max(int(r["params_final"]) for r in family.runs)
    out, seen = [], set()
    for target in front_params(int(run["params_start"]), largest):
        widths = front_widths(target, n_in, n_out, family.hidden, offset)
        if tuple(widths) in seen:
            continue
        seen.add(tuple(widths))
        net = GrowableNet.mlp([n_in, *widths, n_out], _SCALABLE[family.start], seed=0, front=model.front,
                              front_spec=model.front_spec)
        folder = root / ("h" + "-".join(map(str, widths)) if widths else "h0")
        folder.mkdir(parents=True, exist_ok=True)
        save_checkpoint(folder / "model.safetensors", net)
        out.append((widths, folder))
    return out


def _better(higher_is_better: bool):
    return (lambda a, b: a > b) if higher_is_better else (lambda a, b: a < b)


def _val(row: dict):
    value = row.get("final_val_metric")
    return row.get("best_val_metric") if value in (None, "") else value


def sweep_pick(front_rows: list[dict]) -> dict | None:
    """The front network a user keeps: the best VALIDATION metric (the final model's, the one the test
    metric is of; else the best epoch's), the smaller ``params`` on a tie. The test metric plays no part.
    None when no front run finished."""
    rows = [r for r in front_rows if ok(r) and _val(r) not in (None, "")]
    if not rows:
        return None
    better = _better(str(rows[0].get("higher_is_better", True)) not in ("False", "false", "0"))
    pick = None
    for row in sorted(rows, key=lambda r: float(r["params_final"])):
        if pick is None or better(float(_val(row)), float(_val(pick))):
            pick = row
    return pick


def front_at(points: list[dict], params: float) -> float | None:
    """The front's test metric at ``params``: linear in ``log(params)`` between the two front points
    around it; None outside the front (no extrapolation) or with no finished front run."""
    pts = sorted((float(r["params_final"]), float(r["test_metric"])) for r in points if ok(r))
    if not pts or not pts[0][0] <= params <= pts[-1][0]:
        return None
    for (p0, m0), (p1, m1) in zip(pts, pts[1:]):
        if p0 <= params <= p1:
            if p1 == p0:
                return (m0 + m1) / 2
            t = (math.log(params) - math.log(p0)) / (math.log(p1) - math.log(p0))
            return m0 + t * (m1 - m0)
    return pts[0][1]  # a single point, at params


def front_rows(rows: list[dict], family: str, seed=None) -> list[dict]:
    """The finished front runs of ``family`` (of one seed when given)."""
    return [r for r in rows if kind_of(r) == "front" and r.get("family") == family and ok(r)
            and (seed is None or str(r["seed"]) == str(seed))]


def sweeps(rows: list[dict], family: str) -> list[dict]:
    """Per seed: the sweep's pick (on validation) and the training FLOPs of every front network."""
    out = []
    for seed in dict.fromkeys(r["seed"] for r in front_rows(rows, family)):
        members = front_rows(rows, family, seed)
        pick = sweep_pick(members)
        if pick is not None:
            flops = [float(r["train_flops"]) for r in members if r.get("train_flops") not in (None, "")]
            out.append({"seed": seed, "pick": pick,
                        "flops": sum(flops) if len(flops) == len(members) else None})
    return out

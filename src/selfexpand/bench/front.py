"""The static front and the sweep (DESIGN.md glossary).

A **family** is the methods of a bench whose runs start from the same network (start network, its
hidden widths, its fixed front, its conv blocks). Its **front** is ``FRONT_POINTS`` static networks
whose ``params`` are geometric from the start's to twice the largest grown ``params`` of the family,
hidden widths scaled uniformly from the start's (a start with no hidden layer: the start itself, then one
hidden layer whose width gives the ``params``). A start with conv blocks (``conv``) scales its channels
and its dense hidden widths by one factor (:func:`conv_front_widths`), its ``params`` exact
(:class:`ConvLayout`); its smallest point is the start itself. Each is trained the full budget with
the settings of the family's first method, per seed, like a static twin. The **sweep** is what a user
does without growth: train every size, keep the one with the best validation metric (never the test
metric), pay for all of them.

A front point is named by its widths (:func:`point_name`; the ``hidden`` column of ``results.csv``):
``16-8`` (dense hidden widths; empty for none), ``c8-16-32`` (a conv start's channels per block, no
dense hidden layer) or ``c8-16-32+h64`` (channels, then dense hidden widths).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .front_points import (FRONT_POINTS, SCALABLE, ConvLayout, conv_front_widths, front_params, front_widths,
                           point_label, point_name, write_templates)
from .rows import kind_of, ok

__all__ = ["FRONT_POINTS", "Family", "families", "front_params", "front_widths", "conv_front_widths", "ConvLayout",
           "point_name", "point_label", "front_at", "sweep_pick", "write_templates", "front_rows", "sweeps"]



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
    def conv(self) -> list[int]:
        """The start's conv channels per block (``[]``: a dense start)."""
        return list(self.key[3]) if len(self.key) > 3 else []

    @property
    def scalable(self) -> bool:
        return self.start in SCALABLE

    def reference(self, seed: int) -> dict | None:
        """The run whose settings, data and seed the front copies for ``seed`` (the first method's)."""
        return next((r for r in self.runs if r["seed"] == seed), None)


def families(rows: list[dict], starts: dict[str, tuple]) -> list[Family]:
    """The families of the successful grown runs in ``rows``, in the order their methods first come.

    Args:
        starts: method -> its start key ``(start network, hidden widths, front, conv channels)``
            (:func:`selfexpand.bench.jobs.start_key`).
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

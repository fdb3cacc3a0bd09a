"""Batched sweeps of the size-by-gradient-descent methods (ALGORITHMS.md §4).

``run_sweep`` trains every seed and grid setting, growing and fixed-size, as one stacked computation
(``engine.py``); ``write_sweep`` writes ``results.csv``, ``results.md`` and ``sweep.png``
(``report.py``); ``parse_grid`` reads ``--grid KEY=V1,V2`` (``grid.py``).
"""

from .grid import GRID_KEYS, parse_grid
from .report import write_sweep
from .runner import STARTS, SweepResult, run_sweep

__all__ = ["GRID_KEYS", "parse_grid", "run_sweep", "write_sweep", "SweepResult", "STARTS"]

"""``selfexpand bench``: several methods on one dataset, each grown run beside what a user would do
without growth.

Every method runs for every seed through :func:`selfexpand.runs.train_run` (same data split per seed).
Every growing run is followed by its **equal-epoch twin** (``train --twin-of``: the final architecture,
fresh values, the same epochs, optimizer and seed) and its **equal-compute twin** (the same, for as many
epochs as fit in the run's training and growth FLOPs). Then each family of methods (one start network)
gets its **static front** (five static networks from the start's size to twice the largest grown one,
each trained the full budget) and the **sweep** picks the front network with the best validation metric
(:mod:`selfexpand.bench.front`). A run that fails is recorded with its error and the others go on.
:func:`write_bench` writes ``results.csv`` (one row per run, its ``kind``), ``results.md`` and the plots
``pareto.png`` and ``pareto_flops.png``.

Modules: ``rows`` (columns, one row per run), ``jobs`` (the runs of one job), ``front`` (families,
fronts, the sweep), ``runner`` (:func:`run_bench`), ``tables`` (:func:`write_bench`), ``plots``.
"""

from .rows import BENCH_COLUMNS
from .runner import run_bench
from .tables import write_bench

__all__ = ["BENCH_COLUMNS", "run_bench", "write_bench"]

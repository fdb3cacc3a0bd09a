"""``run_bench``: every method and seed (with the twins), then every family's static front."""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from ..validators import Integer, Optional, boolean, positive_int
from .front import families, write_templates
from .jobs import front_job, method_job, start_key
from .rows import ok

__all__ = ["run_bench"]

log = logging.getLogger("selfexpand.bench")


def run_bench(dataset: str, methods: list[str], seeds: int, out: str | Path, *, epochs: int | None = None,
              jobs: int = 1, data_dir: str | None = None, threads: int | None = 1,
              progress: Callable[[int, int], None] | None = None, settings: dict | None = None,
              front: bool = True) -> list[dict]:
    """Run every method for seeds ``0 .. seeds - 1`` (and the twins), then the static front of every
    family of methods (:mod:`selfexpand.bench.front`), into ``out/runs``.

    Args:
        jobs: processes running at once (timings are comparable only with ``jobs=1``).
        threads: torch threads per run.
        progress: called with ``(done, total)`` jobs after each job (a method and seed, or a front
            network and seed); ``total`` grows when the fronts are known.
        settings: method settings every run overrides (``--set``; a key a method lacks fails its runs).
        front: train the static fronts (their rows have ``kind`` ``front``, method ``front:<family>``).

    Returns:
        The rows, in method and seed order, then the fronts' (family, size, seed).

    Raises:
        ConfigError: an unknown method, no method, ``seeds`` / ``jobs`` not a positive integer, or
            ``threads`` neither None nor an integer >= 0 (0 and None leave torch's own count).
    """
    from ..presets import method_names

    unknown = [m for m in methods if m not in method_names()]
    if not methods or unknown:
        raise ConfigError(f"methods must be names from {method_names()}, got methods={methods!r}")
    positive_int("seeds", seeds)
    positive_int("jobs", jobs)
    Optional(Integer(0))("threads", threads)
    boolean("front", front)
    root = Path(out) / "runs"
    root.mkdir(parents=True, exist_ok=True)
    tasks = [(method_job, (m, dataset, s, epochs, str(root), data_dir, threads, settings))
             for m in methods for s in range(seeds)]
    counter = _Progress(progress, len(tasks))
    rows = _run(tasks, jobs, counter)
    _mark_families(rows)
    if front:
        rows += _run(_front_tasks(rows, root, seeds, threads, counter), jobs, counter)
    return rows


class _Progress:
    def __init__(self, callback, total: int):
        self.callback, self.total, self.done = callback, total, 0

    def add(self, n: int) -> None:
        self.total += n

    def step(self) -> None:
        self.done += 1
        if self.callback:
            self.callback(self.done, self.total)


def _run(tasks: list, jobs: int, counter: _Progress) -> list[dict]:
    """The tasks' rows in task order, ``jobs`` processes at once."""
    results: dict[int, list[dict]] = {}
    if jobs == 1:
        for i, (fn, args) in enumerate(tasks):
            results[i] = fn(*args)
            counter.step()
    elif tasks:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(fn, *args): i for i, (fn, args) in enumerate(tasks)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                counter.step()
    return [row for i in range(len(tasks)) for row in results[i]]


def _starts(rows: list[dict]) -> dict[str, tuple]:
    starts = {}
    for row in rows:
        if row.get("kind") == "grown" and ok(row) and row["method"] not in starts:
            starts[row["method"]] = start_key(row["run_dir"], row["method"])
    return starts


def _mark_families(rows: list[dict]) -> None:
    """Each method's rows get its family's label."""
    for fam in families(rows, _starts(rows)):
        for row in rows:
            if row["method"] in fam.methods:
                row["family"] = fam.label


def _front_tasks(rows: list[dict], root: Path, seeds: int, threads: int | None, counter: _Progress) -> list:
    tasks = []
    for fam in families(rows, _starts(rows)):
        if not fam.scalable:
            log.warning("family %s: start network %r has no hidden widths to scale, so no static front",
                        fam.label, fam.start)
            continue
        folder = root / f"front-{fam.label}"
        for widths, template in write_templates(fam, folder / "architectures"):
            for seed in range(seeds):
                reference = fam.reference(seed)
                if reference is None:  # every run of the family failed on this seed
                    continue
                name = template.name + f"-seed{seed}"
                tasks.append((front_job, (fam.label, reference["run_dir"], str(template), widths, seed,
                                          str(folder / name), threads)))
    counter.add(len(tasks))
    return tasks

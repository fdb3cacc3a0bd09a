"""``run_bench``: every method and seed (with the twins), then every family's static front.

``results.csv`` is rewritten after every job with the rows so far, so an interrupted bench leaves
what it finished; ``resume=True`` keeps the finished runs in ``out`` and runs the others.
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from ..validators import Integer, Optional, boolean, positive_int
from .front import families, write_templates
from .jobs import check_same_run, front_job, grown_config, method_job, start_key
from .rows import ok, write_results_csv

__all__ = ["run_bench"]

log = logging.getLogger("selfexpand.bench")


def run_bench(dataset: str, methods: list[str], seeds: int, out: str | Path, *, epochs: int | None = None,
              jobs: int = 1, data_dir: str | None = None, threads: int | None = 1,
              progress: Callable[[int, int], None] | None = None, settings: dict | None = None,
              front: bool = True, data_options: dict | None = None, resume: bool = False,
              compute_twins: bool = True) -> list[dict]:
    """Run every method for seeds ``0 .. seeds - 1`` (and the twins), then the static front of every
    family of methods (:mod:`selfexpand.bench.front`), into ``out/runs``.

    Args:
        jobs: processes running at once (timings are comparable only with ``jobs=1``).
        threads: torch threads per run.
        progress: called with ``(done, total)`` jobs after each job (a method and seed, or a front
            network and seed); ``total`` grows when the fronts are known.
        settings: method settings every run overrides (``--set``; a key a method lacks fails its runs).
        front: train the static fronts (their rows have ``kind`` ``front``, method ``front:<family>``).
        data_options: ``load_dataset`` arguments for every run (a ``.csv`` / ``.npz`` dataset):
            ``target``, ``test_file``, ``task``, ``val_fraction``; the twins and fronts copy them.
        compute_twins: train each growing run's equal-compute twin (False: leave them out, e.g. where
            growth FLOPs dwarf an epoch of the final network, as SENN's proposals on two moons:
            tens of thousands of the twin's epochs).
        resume: keep the finished runs already in ``out/runs`` (a bench interrupted before), continue
            the interrupted ones from their checkpoints, run the rest (a bench finished with
            ``front=False`` and resumed with ``front=True`` trains only its fronts).

    ``out/results.csv`` is rewritten after every job with the rows so far (:func:`write_bench`
    writes the final one). The data is loaded once before any run, so a bad file, target or
    option, or start networks that cannot fit in memory together (``jobs`` at once) stop the bench
    before it starts.

    Returns:
        The rows, in method and seed order, then the fronts' (family, size, seed).

    Raises:
        ConfigError: an unknown method, no method, ``seeds`` / ``jobs`` not a positive integer,
            ``threads`` neither None nor an integer >= 0 (0 and None leave torch's own count), a bad
            data option; with ``resume``, a run in ``out`` made with other settings.
        DataError: the dataset cannot be loaded with ``data_options``.
        ResourceError: the start networks of ``jobs`` runs at once cannot fit in memory.
    """
    from ..presets import method_names

    unknown = [m for m in methods if m not in method_names()]
    if not methods or unknown:
        raise ConfigError(f"methods must be names from {method_names()}, got methods={methods!r}")
    positive_int("seeds", seeds)
    positive_int("jobs", jobs)
    Optional(Integer(0))("threads", threads)
    boolean("front", front)
    boolean("compute_twins", compute_twins)
    boolean("resume", resume)
    from ..data import check_load_options

    data_options = check_load_options(data_options)
    root = Path(out) / "runs"
    if resume:
        for m in methods:
            for s in range(seeds):
                config = grown_config(m, dataset, s, epochs, str(root), data_dir, settings, data_options)
                check_same_run(Path(config.out), config)
    else:
        grown_config(methods[0], dataset, 0, epochs, str(root), data_dir, settings, data_options)  # task known?
    _check_data_and_memory(dataset, methods, settings, data_dir, data_options, min(jobs, len(methods) * seeds))
    root.mkdir(parents=True, exist_ok=True)
    tasks = [(method_job, (m, dataset, s, epochs, str(root), data_dir, threads, settings, data_options, resume,
                                compute_twins))
             for m in methods for s in range(seeds)]
    counter = _Progress(progress, len(tasks))
    table = Path(out) / "results.csv"
    rows = _run(tasks, jobs, counter, lambda done: write_results_csv(done, table))
    _mark_families(rows)
    write_results_csv(rows, table)
    if front:
        rows += _run(_front_tasks(rows, root, seeds, threads, counter, resume), jobs, counter,
                     lambda done: write_results_csv(rows + done, table))
    return rows


def _check_data_and_memory(dataset: str, methods: list[str], settings: dict | None, data_dir: str | None,
                           data_options: dict, at_once: int) -> None:
    """Load the data once as every run will (a bad file, target or option stops the bench here), and
    refuse start networks that cannot fit in memory, ``at_once`` runs together."""
    from ..data import dataset_options, load_dataset
    from ..estimate import check_fits, start_bytes
    from ..presets import resolve_config

    declared = dataset_options(dataset)
    data = load_dataset(dataset, data_dir=data_dir, options={k: v for k, v in (settings or {}).items()
                                                             if k in declared}, **data_options)
    overrides = {k: v for k, v in (settings or {}).items() if k not in declared}
    largest = None
    for method in methods:
        try:
            resolved = resolve_config(method, str(dataset), dict(overrides))
        except ConfigError:  # a --set key this method lacks: its runs fail and are recorded
            continue
        need = start_bytes(resolved, data.n_features, data.n_outputs, n_train=len(data.x_train))
        if largest is None or need["bytes"] > largest[1]["bytes"]:
            largest = (method, need)
    if largest is None:
        return
    method, need = largest
    runs = f"{at_once} runs at once (--jobs {at_once})" if at_once > 1 else "one run at a time"
    check_fits(need["bytes"] * at_once, what="the bench",
               detail=f"{runs}; the largest start network, {method}'s: {need['detail']}",
               smaller=need["smaller"] + (" or fewer --jobs" if at_once > 1 else ""))


class _Progress:
    def __init__(self, callback, total: int):
        self.callback, self.total, self.done = callback, total, 0

    def add(self, n: int) -> None:
        self.total += n

    def step(self) -> None:
        self.done += 1
        if self.callback:
            self.callback(self.done, self.total)


def _run(tasks: list, jobs: int, counter: _Progress, on_rows: Callable[[list[dict]], None] | None = None
         ) -> list[dict]:
    """The tasks' rows in task order, ``jobs`` processes at once; ``on_rows`` gets the rows of the
    finished tasks (in task order) after each one."""
    results: dict[int, list[dict]] = {}

    def done(i: int, rows: list[dict]) -> None:
        results[i] = rows
        if on_rows is not None:
            on_rows([row for k in sorted(results) for row in results[k]])
        counter.step()

    if jobs == 1:
        for i, (fn, args) in enumerate(tasks):
            done(i, fn(*args))
    elif tasks:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(fn, *args): i for i, (fn, args) in enumerate(tasks)}
            for future in as_completed(futures):
                done(futures[future], future.result())
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


def _front_tasks(rows: list[dict], root: Path, seeds: int, threads: int | None, counter: _Progress,
                 resume: bool = False) -> list:
    tasks = []
    for fam in families(rows, _starts(rows)):
        if not fam.scalable:
            log.warning("family %s: start network %r has no hidden widths to scale, so no static front",
                        fam.label, fam.start)
            continue
        folder = root / f"front-{fam.label}"
        for point, template in write_templates(fam, folder / "architectures"):
            for seed in range(seeds):
                reference = fam.reference(seed)
                if reference is None:  # every run of the family failed on this seed
                    continue
                name = template.name + f"-seed{seed}"
                tasks.append((front_job, (fam.label, reference["run_dir"], str(template), point, seed,
                                          str(folder / name), threads, resume)))
    counter.add(len(tasks))
    return tasks

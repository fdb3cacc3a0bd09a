"""``run_sweep``: every seed and grid setting of a size method, growing and fixed-size, in one batch.

For each grid point, each start and each seed there is one run. ``growing`` starts the control
scalar as the preset says (``N_0 = n_start``, 0 by default; ``c_0 = c_start``, 1e-5); ``fixed`` is
the paper's fixed-size control (``N_0 = N_inf``; for the controller ``c_0 = 1``, the full mask). A
run's seed sets its initial weights (:func:`~selfexpand.graph.size_nets.size_net_init`), so the
growing and fixed runs of one seed start from the same weights, and run ``seed`` of a sweep is the
run ``selfexpand train --method M --dataset D --seed seed`` would make. The data set is one for all
runs (its own ``data_seed`` option; validation is not used by a sweep).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..data import dataset_options, load_dataset
from ..errors import ConfigError
from ..graph.size_nets import size_net_init
from ..presets import resolve_config
from ..train.metrics import HIGHER_IS_BETTER, task_metric
from ..validators import integer_list, one_of, positive_int
from .engine import BatchedSettings, BatchedState, train_batched
from .grid import GRID_KEYS, grid_points

__all__ = ["SweepResult", "run_sweep", "STARTS"]

STARTS = ("growing", "fixed")


@dataclass
class SweepResult:
    """One row per run (``seed``, each grid key, ``start``, ``final_size``, ``test_metric``, ...)."""

    method: str
    dataset: str
    metric_name: str
    higher_is_better: bool
    grid: dict[str, list[float]]
    seeds: list[int]
    epochs: int
    settings: dict
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    batched: bool = True
    control_input: bool = False


def _split_settings(dataset: str, settings: dict | None) -> tuple[dict, dict]:
    declared = dataset_options(dataset)
    data_opts = {k: v for k, v in (settings or {}).items() if k in declared}
    method_opts = {k: v for k, v in (settings or {}).items() if k not in declared}
    return data_opts, method_opts


def _resolve(method: str, dataset: str, overrides: dict) -> dict:
    return resolve_config(method, dataset, overrides)


def _check_seeds(seeds) -> list[int]:
    """A count ``n`` as the seeds ``0..n-1``, or a non-empty list of seeds ``>= 0``."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return list(range(positive_int("seeds", seeds)))
    return integer_list("seeds", seeds, 0, min_length=1)


def run_sweep(method: str, dataset: str, grid: dict[str, list[float]], seeds, *, settings: dict | None = None,
              epochs: int | None = None, dtype: torch.dtype = torch.float32, starts=STARTS,
              batched: bool = True, control_input: bool = False,
              progress: Callable[[int, int], None] | None = None) -> SweepResult:
    """Train every run of the sweep and return its rows.

    Args:
        method: ``size-weight``, ``controller-mask`` or ``controller-mask-reference``.
        dataset: a registered dataset name.
        grid: ``{key: [values]}`` from :func:`~selfexpand.sweep.grid.parse_grid` (may be empty).
        seeds: a count ``n`` (seeds ``0..n-1``) or a list of seeds.
        settings: ``--set`` values: the dataset's options (``arms``) and the method's settings.
        epochs: full-batch steps of every run (default: the preset's).
        dtype: ``torch.float32`` or ``torch.float64``.
        starts: which of ``growing`` and ``fixed`` to run.
        batched: False runs the same runs one after another (the same engine, one run at a time):
            for checks and timing only.
        control_input: also feed the control scalar (``N`` or ``c``) to every hidden unit as one more
            input, as the reference code does (weights ``U[-1, 1]``, drawn after the others). The
            library's modulators do not do this (docs/methods.md): such runs exist only in sweeps.
        progress: called as ``progress(steps_done, steps_total)`` (steps summed over batches).

    Raises:
        ConfigError: an unknown method, key, start or value; a preset whose optimizer a batched
            sweep does not have.
    """
    if method not in GRID_KEYS:
        raise ConfigError(f"sweep supports the methods {sorted(GRID_KEYS)}, got method={method!r}")
    for key in grid:
        if key not in GRID_KEYS[method]:
            raise ConfigError(f"a {method} sweep can vary {list(GRID_KEYS[method])}, got {key!r}")
    starts = tuple(starts)
    if not starts or any(s not in STARTS for s in starts):
        raise ConfigError(f"starts must be a non-empty subset of {list(STARTS)}, got starts={starts!r}")
    one_of("dtype", dtype, (torch.float32, torch.float64))
    seeds = _check_seeds(seeds)
    data_opts, overrides = _split_settings(dataset, settings)
    if epochs is not None:
        overrides["epochs"] = epochs
    cfg = _resolve(method, dataset, overrides)
    data = load_dataset(dataset, options=data_opts)
    kind = "size-weight" if method == "size-weight" else "controller-mask"
    runs = [{"seed": seed, **point, "start": start}
            for point in grid_points(grid) for start in starts for seed in seeds]
    state, run_settings = _build(runs, cfg, kind, data, dtype, bool(control_input))
    steps = int(cfg["epochs"])
    total = steps * (1 if batched else len(runs))
    started = time.perf_counter()
    if batched:
        results = [train_batched(state, run_settings, data.x_train, data.y_train, data.x_test, data.y_test,
                                 steps, progress=None if progress is None else (lambda k: progress(k, total)))]
        index = [slice(None)]
    else:
        results, index = [], []
        for r in range(len(runs)):
            one = BatchedState(*(t[r:r + 1] for t in state.tensors()))
            done = r * steps
            results.append(train_batched(
                one, _slice_settings(run_settings, r), data.x_train, data.y_train, data.x_test, data.y_test,
                steps, progress=None if progress is None else (lambda k, d=done: progress(d + k, total))))
            index.append(slice(r, r + 1))
    rows = []
    for result, where in zip(results, index):
        for k in range(result.control.shape[0]):
            rows.append({"train_loss": float(result.train_loss[k]), "test_loss": float(result.test_loss[k]),
                         "test_metric": float(result.test_metric[k]), "final_size": int(result.final_size[k]),
                         "final_control": float(result.control[k])})
    metric = task_metric(data.task)
    out = SweepResult(method=method, dataset=dataset, metric_name=metric, higher_is_better=HIGHER_IS_BETTER[metric],
                      grid=dict(grid), seeds=seeds, epochs=steps, settings={**cfg, **data_opts},
                      seconds=time.perf_counter() - started, batched=batched, control_input=bool(control_input))
    out.rows = [{**run, **row} for run, row in zip(runs, rows)]
    return out


def _build(runs: list[dict], cfg: dict, kind: str, data, dtype,
           control_input: bool = False) -> tuple[BatchedState, BatchedSettings]:
    """Stacked initial values and per-run settings (float64, then cast) for ``runs``."""
    if cfg["optimizer"] not in ("gd", "adam"):
        raise ConfigError(f"a batched sweep trains with optimizer 'gd' or 'adam', got optimizer={cfg['optimizer']!r}")
    n_max = cfg["n_max"]
    cache = {}
    for run in runs:
        if run["seed"] not in cache:
            cache[run["seed"]] = size_net_init(data.n_features, n_max, data.n_outputs, run["seed"], torch.float64,
                                               control_input=control_input)
    values = [cache[run["seed"]] for run in runs]

    def per_run(key: str, setting: str | None = None) -> torch.Tensor:
        return torch.tensor([float(run.get(key, cfg[setting or key])) for run in runs], dtype=torch.float64)

    lr = per_run("lr")
    if kind == "size-weight":
        n_inf = per_run("n_inf")
        growing = torch.full_like(n_inf, float(cfg["n_start"]))
        settings = BatchedSettings(kind, data.task, cfg["optimizer"], lr, size_lambda=per_run("lambda"),
                                   n_inf=n_inf, dn=per_run("dn"))
    else:
        growing = torch.full_like(lr, float(cfg["c_start"]))
        n_inf = torch.ones_like(lr)  # the controller's fixed-size start: c = 1, the full mask
        settings = BatchedSettings(kind, data.task, cfg["optimizer"], lr, size_weight=per_run("size_weight"),
                                   reference_defects=bool(cfg["reference_defects"]))
    fixed = torch.tensor([run["start"] == "fixed" for run in runs])
    control = torch.where(fixed, n_inf, growing)
    state = BatchedState(*(torch.stack([v[k] for v in values]).to(dtype)
                           for k in ("w_in", "b_hidden", "w_out", "b_out")), control.to(dtype),
                         torch.stack([v["w_control"] for v in values]).to(dtype) if control_input else None)
    return state, settings


def _slice_settings(settings: BatchedSettings, r: int) -> BatchedSettings:
    import dataclasses

    return dataclasses.replace(settings, **{
        k: getattr(settings, k)[r:r + 1] for k in ("lr", "size_lambda", "n_inf", "dn", "size_weight")
        if getattr(settings, k) is not None})

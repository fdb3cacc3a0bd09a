"""``run_sweep``: every seed and grid setting of a size method, growing and fixed-size, in one batch.

For each grid point, each start and each seed there is one run. ``growing`` starts the control
scalar as the preset says (``N_0 = n_start``, 0 by default; ``c_0 = c_start``, 1e-5); ``fixed`` is
the paper's fixed-size control (``N_0 = N_inf``; for the controller ``c_0 = 1``, the full mask). A
run's seed sets its initial weights (:func:`~selfexpand.graph.size_nets.size_net_init`), so the
growing and fixed runs of one seed start from the same weights, and run ``seed`` of a sweep is the
run ``selfexpand train --method M --dataset D --seed seed`` would make. The data set is one for all
runs (its own ``data_seed`` option; validation is not used by a sweep); a ``.csv`` / ``.npz`` file
takes ``data_options`` (``target``, ``test_file``, ``task``, ``val_fraction``) as ``load_dataset``
does. A file's regression targets train standardised; the rows' losses and test metric are in the
target's own unit (``decode_targets``), as a run's summary.

Before anything is allocated the sweep's memory is estimated (:func:`sweep_bytes`: every run's
weights, gradients and optimizer state, the full-batch activations of the runs computed at once,
the rows) and a sweep that cannot fit is refused with a ``ResourceError``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..data import check_load_options, dataset_options, decode_targets, load_dataset
from ..errors import ConfigError
from ..estimate import check_fits, format_bytes
from ..graph.size_nets import size_net_init
from ..presets import resolve_config
from ..train.metrics import HIGHER_IS_BETTER, task_metric
from ..validators import integer_list, one_of, positive_int
from .engine import BatchedSettings, BatchedState, forward, task_losses, train_batched
from .grid import GRID_KEYS, grid_points

__all__ = ["SweepResult", "run_sweep", "sweep_bytes", "STARTS"]

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
    data_options: dict = field(default_factory=dict)


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


def _seed_count(seeds) -> int:
    """How many seeds ``seeds`` names, without listing a count (checked as :func:`_check_seeds`)."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return positive_int("seeds", seeds)
    return len(_check_seeds(seeds))


#: bytes of one run's Python records (its run dict, its row, the merged row), a low estimate
ROW_BYTES = 1500


def sweep_bytes(*, runs: int, seeds: int, n_in: int, n_max: int, n_out: int, n_train: int, n_test: int,
                itemsize: int = 4, adam: bool = False, batched: bool = True, control_input: bool = False) -> dict:
    """A lower bound of the memory a sweep takes (see the module docstring).

    Returns:
        ``{"bytes", "per_run", "detail"}``.
    """
    params = n_max * n_in + n_max + n_out * n_max + n_out + 1 + (n_max if control_input else 0)
    draws = seeds * (params * 8 + 64)  # one float64 draw of the start values per seed, and the seed
    # the stacked start values, the working copy and the gradients (+ Adam's two moments) of every run
    values = params * itemsize * (3 + (2 if adam else 0))
    # full-batch activations (points, runs, units): pre-activation, activation, modulated, their
    # gradients, the output-weight gradient's product; the test forward
    activations = itemsize * (n_train * n_max * (6 + n_out) + n_test * (n_max * 3 + n_out) + n_train * n_out * 4)
    live = runs if batched else 1
    total = draws + runs * (values + ROW_BYTES) + live * activations
    per_run = values + ROW_BYTES + (activations if batched else 0)
    detail = (f"{format_bytes(per_run)} per run: weights, gradients{', Adam moments' if adam else ''}, "
              f"the full-batch activations of {n_train} points and the row; "
              f"{format_bytes(draws)} of start values")
    return {"bytes": int(total), "per_run": int(per_run), "detail": detail}


def run_sweep(method: str, dataset: str, grid: dict[str, list[float]], seeds, *, settings: dict | None = None,
              epochs: int | None = None, dtype: torch.dtype = torch.float32, starts=STARTS,
              batched: bool = True, control_input: bool = False,
              progress: Callable[[int, int], None] | None = None, data_dir: str | None = None,
              data_options: dict | None = None) -> SweepResult:
    """Train every run of the sweep and return its rows.

    Args:
        method: ``size-weight``, ``controller-mask`` or ``controller-mask-reference``.
        dataset: a registered dataset name, or a ``.csv`` / ``.npz`` file.
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
        data_dir: where a named dataset's folder is (``load_dataset``), or a relative file's base.
        data_options: ``load_dataset`` arguments for a file: ``target``, ``test_file``, ``task``,
            ``val_fraction`` (:data:`~selfexpand.data.LOAD_OPTIONS`).

    Raises:
        ConfigError: an unknown method, key, start or value; a preset whose optimizer a batched
            sweep does not have; a bad data option.
        ResourceError: the sweep cannot fit in the available memory (checked before it is allocated).
        DataError: the data cannot be loaded.
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
    n_seeds = _seed_count(seeds)
    load_opts = check_load_options(data_options)
    data_opts, overrides = _split_settings(dataset, settings)
    if epochs is not None:
        overrides["epochs"] = epochs
    cfg = _resolve(method, dataset, overrides)
    data = load_dataset(dataset, data_dir=data_dir, options=data_opts, **load_opts)
    kind = "size-weight" if method == "size-weight" else "controller-mask"
    points = grid_points(grid)
    _check_memory(cfg, data, len(points), len(starts), n_seeds, dtype, batched, bool(control_input))
    seeds = _check_seeds(seeds)
    runs = [{"seed": seed, **point, "start": start}
            for point in points for start in starts for seed in seeds]
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
    for r, (result, where) in enumerate(zip(results, index)):
        if "target_mean" in data.preprocessing:  # a file's standardised targets: back to their unit
            one = run_settings if batched else _slice_settings(run_settings, r)
            _decode_losses(result, one, data)
        for k in range(result.control.shape[0]):
            rows.append({"train_loss": float(result.train_loss[k]), "test_loss": float(result.test_loss[k]),
                         "test_metric": float(result.test_metric[k]), "final_size": int(result.final_size[k]),
                         "final_control": float(result.control[k])})
    metric = task_metric(data.task)
    out = SweepResult(method=method, dataset=dataset, metric_name=metric, higher_is_better=HIGHER_IS_BETTER[metric],
                      grid=dict(grid), seeds=seeds, epochs=steps, settings={**cfg, **data_opts},
                      seconds=time.perf_counter() - started, batched=batched, control_input=bool(control_input),
                      data_options=load_opts)
    out.rows = [{**run, **row} for run, row in zip(runs, rows)]
    return out


def _check_memory(cfg: dict, data, points: int, starts: int, seeds: int, dtype, batched: bool,
                  control_input: bool) -> None:
    """Refuse a sweep that cannot fit (:func:`sweep_bytes`), before its runs are listed or drawn."""
    runs = points * starts * seeds
    need = sweep_bytes(runs=runs, seeds=seeds, n_in=data.n_features, n_max=int(cfg["n_max"]),
                       n_out=data.n_outputs, n_train=len(data.x_train), n_test=len(data.x_test),
                       itemsize=torch.empty((), dtype=dtype).element_size(), adam=cfg.get("optimizer") == "adam",
                       batched=batched, control_input=control_input)
    many = "seeds (--seeds)" if seeds >= points else "grid values (--grid)"
    check_fits(need["bytes"], what=f"the sweep ({runs:,} runs: {_count(seeds, 'seed')} x {_count(points, 'grid point')}"
                                   f" x {_count(starts, 'start')})", detail=need["detail"],
               smaller=f"use fewer {many}" + (", or a smaller `n_max`" if need["per_run"] > 1e6 else ""))


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _decode_losses(result, settings: BatchedSettings, data) -> None:
    """The regression losses and metric of ``result`` in the target's own unit (a file's targets are
    standardised for training): the final state's outputs and the targets mapped back, per column."""
    prep = data.preprocessing
    state = result.state
    dtype, device = state.control.dtype, state.control.device
    settings = dataclasses.replace(settings, **{
        k: getattr(settings, k).to(device, dtype) for k in ("lr", "size_lambda", "n_inf", "dn", "size_weight")
        if getattr(settings, k) is not None})
    with torch.no_grad():
        for x, y, names in ((data.x_train, data.y_train, ("train_loss",)),
                            (data.x_test, data.y_test, ("test_loss", "test_metric"))):
            out = decode_targets(prep, forward(state, settings, x.to(device, dtype)))
            loss = task_losses(out, decode_targets(prep, y.to(device, dtype)), "regression")
            for name in names:
                setattr(result, name, loss)


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
    return dataclasses.replace(settings, **{
        k: getattr(settings, k)[r:r + 1] for k in ("lr", "size_lambda", "n_inf", "dn", "size_weight")
        if getattr(settings, k) is not None})

"""The bench's jobs, each run in its own process when ``--jobs`` > 1: a method and seed (the grown run,
its equal-epoch twin, its equal-compute twin) and one static front network. A run that fails becomes a
row with its ``error``; the job goes on with what does not need it."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from .rows import error_row, summary_row

__all__ = ["method_job", "front_job", "start_key"]

log = logging.getLogger("selfexpand.bench")


def _threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def method_job(method: str, dataset: str, seed: int, epochs: int | None, root: str, data_dir: str | None,
               threads: int | None, settings: dict | None = None) -> list[dict]:
    """One method and seed: the grown run, then (a growing method) its equal-epoch and equal-compute
    twins. The equal-compute twin needs the run's ``train_flops``; a run without them has none (logged)."""
    from ..runs import RunConfig, compute_twin_config, train_run, twin_config

    _threads(threads)
    out = Path(root) / f"{method}-seed{seed}"
    try:
        run_dir, summary = train_run(RunConfig(method=method, dataset=dataset, seed=seed, epochs=epochs,
                                               data_dir=data_dir, out=str(out), settings=dict(settings or {})))
    except Exception as exc:  # recorded; the bench goes on
        log.debug("run failed: %s", traceback.format_exc())
        return [error_row(method, seed, "grown", exc)]
    rows = [summary_row(method, seed, "grown", summary, run_dir)]
    if method == "static":
        return rows
    try:
        twin_dir, twin = train_run(twin_config(run_dir, out=str(out) + "-twin"))
        rows.append(summary_row(method, seed, "twin", twin, twin_dir))
    except Exception as exc:
        rows.append(error_row(method, seed, "twin", exc))
    if summary.get("train_flops") is None:
        log.warning("%s seed %d: no train_flops in its summary, so no equal-compute twin", method, seed)
        return rows
    try:
        ctwin_dir, ctwin = train_run(compute_twin_config(run_dir, out=str(out) + "-compute-twin"))
        rows.append(summary_row(method, seed, "compute-twin", ctwin, ctwin_dir))
    except Exception as exc:
        log.debug("compute twin failed: %s", traceback.format_exc())
        rows.append(error_row(method, seed, "compute-twin", exc))
    return rows


def front_job(family: str, reference_run: str, architecture: str, hidden: list[int], seed: int, out: str,
              threads: int | None) -> list[dict]:
    """One static front network: ``architecture`` (a folder with its ``model.safetensors``) trained from
    fresh values with the settings, data, epochs and seed of ``reference_run`` (a grown run of the family)."""
    from ..runs import train_run, twin_config

    _threads(threads)
    method = f"front:{family}"
    try:
        run_dir, summary = train_run(twin_config(reference_run, out=out, architecture=architecture))
    except Exception as exc:
        log.debug("front run failed: %s", traceback.format_exc())
        row = error_row(method, seed, "front", exc, family=family)
        row["hidden"] = "-".join(map(str, hidden))
        return [row]
    return [summary_row(method, seed, "front", summary, run_dir, family=family, hidden=hidden)]


def start_key(run_dir: str | Path, method: str) -> tuple:
    """What makes two methods one family: ``(start network, hidden widths, fixed front)`` of a run."""
    import yaml

    from ..presets import get_preset

    config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    hidden = (config.get("resolved") or {}).get("hidden")
    return get_preset(method).start, tuple(hidden or ()), config.get("front")

"""The bench's jobs, each run in its own process when ``--jobs`` > 1: a method and seed (the grown run,
its equal-epoch twin, its equal-compute twin) and one static front network. A run that fails becomes a
row with its ``error``; the job goes on with what does not need it.

With ``resume``, a run whose directory holds a finished run (:func:`~selfexpand.bench.rows.finished_summary`)
is kept as it is; an interrupted one continues from its checkpoint (``resume_run``), or starts again
when it has none (or an unreadable one); a missing one runs."""

from __future__ import annotations

import logging
import shutil
import traceback
from pathlib import Path

from ..errors import CheckpointError, ConfigError
from .rows import error_row, finished_summary, summary_row

__all__ = ["method_job", "front_job", "start_key", "grown_config", "check_same_run", "RUN_FIELDS"]

#: fields of ``config.yaml`` that must be the bench's own for a resumed bench to keep a run
RUN_FIELDS = ("method", "dataset", "seed", "data_dir", "target", "test_file", "task", "val_fraction")
#: the training fields a run's ``config.yaml`` may keep beside its settings
_TRAINING = ("epochs", "batch_size", "lr", "grow_until")

log = logging.getLogger("selfexpand.bench")


def _threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def grown_config(method: str, dataset: str, seed: int, epochs: int | None, root: str, data_dir: str | None,
                 settings: dict | None = None, data_options: dict | None = None):
    """The ``RunConfig`` of a method's grown run of ``seed``, in ``root/<method>-seed<seed>``.

    Raises:
        ConfigError: ``data_options`` names ``task`` and this version's ``RunConfig`` has no such field.
    """
    from ..runs import RunConfig

    data = dict(data_options or {})
    if "task" in data and "task" not in RunConfig.__dataclass_fields__:
        raise ConfigError("data_options: task is not taken by this version's runs (RunConfig has no task)")
    return RunConfig(method=method, dataset=dataset, seed=seed, epochs=epochs, data_dir=data_dir,
                     out=str(Path(root) / f"{method}-seed{seed}"), settings=dict(settings or {}), **data)


def check_same_run(run_dir: Path, config) -> None:
    """Refuse to resume into ``run_dir`` when its ``config.yaml`` is not of ``config``'s run: the
    fields :data:`RUN_FIELDS`, then every resolved setting (epochs included) both name.

    Raises:
        ConfigError: a field or setting differs; the message names it and both values.
    """
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return
    try:
        stored = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return  # an unreadable config: an interrupted run, run again
    if not isinstance(stored, dict):
        return

    def differ(name, mine, theirs):
        raise ConfigError(f"{run_dir} was made with {name}={theirs!r}, this bench asks for {name}={mine!r}: "
                          "resume a bench with its own settings and data, or give a new --out")

    for name in RUN_FIELDS:
        if not hasattr(config, name) or (name not in stored and getattr(config, name) is None):
            continue
        mine, theirs = getattr(config, name), stored.get(name)
        if name in ("dataset", "data_dir", "test_file", "target"):  # paths and names: as text
            mine, theirs = (None if v is None else str(v) for v in (mine, theirs))
        if mine != theirs:
            differ(name, mine, theirs)
    mine = _resolved(config)
    if mine is None:
        return
    theirs = _stored_settings(stored)
    for name in sorted(set(mine) & set(theirs)):
        if mine[name] != theirs[name]:
            differ(name, mine[name], theirs[name])


def _resolved(config) -> dict | None:
    """The settings ``config``'s run resolves to (None when they cannot be resolved: its runs fail)."""
    from ..data import dataset_options
    from ..presets import resolve_config

    declared = dataset_options(config.dataset)
    overrides = {k: v for k, v in (config.settings or {}).items() if k not in declared}
    if config.epochs is not None:
        overrides["epochs"] = config.epochs
    try:
        resolved = resolve_config(config.method, str(config.dataset), overrides)
    except ConfigError:
        return None
    return {**resolved, **{k: str(v) for k, v in (config.settings or {}).items() if k in declared}}


def _stored_settings(stored: dict) -> dict:
    """A ``config.yaml``'s resolved settings: ``resolved`` (older files), else ``settings`` and the
    training fields beside them."""
    if isinstance(stored.get("resolved"), dict):
        out = dict(stored["resolved"])
    else:
        out = dict(stored.get("settings") or {})
        out.update({k: stored[k] for k in _TRAINING if stored.get(k) is not None})
    from ..data import dataset_options

    declared = dataset_options(str(stored.get("dataset")))
    for k in declared:  # a dataset's options as the bench gives them: text
        if k in out:
            out[k] = str(out[k])
        elif k in (stored.get("settings") or {}):
            out[k] = str(stored["settings"][k])
    return out


def _train(config, resume: bool):
    """``(run_dir, summary)`` of ``config``'s run: kept, continued or trained (see the module docstring)."""
    from ..runs import CHECKPOINT, resume_run, train_run

    out = Path(config.out)
    if resume and out.exists():
        summary = finished_summary(out)
        if summary is not None:
            log.info("%s: finished, kept", out)
            return out, summary
        if (out / CHECKPOINT).is_file():
            try:
                log.info("%s: interrupted, continued from its checkpoint", out)
                return resume_run(out)
            except CheckpointError as exc:
                log.warning("%s: its checkpoint cannot be read (%s); the run starts again", out, exc)
        _clear(out)
    return train_run(config)


def _clear(run_dir: Path) -> None:
    """Remove an interrupted run's directory: one that ``train_run`` made (its ``config.yaml`` or
    ``checkpoint/`` is there) or an empty one; anything else is left alone and refused."""
    names = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else {run_dir.name}
    if names and not names & {"config.yaml", "checkpoint"} or not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not an interrupted run directory (it holds {sorted(names)}); move it "
                          "away to resume the bench")
    log.info("%s: interrupted before its first checkpoint; the run starts again", run_dir)
    shutil.rmtree(run_dir)


def method_job(method: str, dataset: str, seed: int, epochs: int | None, root: str, data_dir: str | None,
               threads: int | None, settings: dict | None = None, data_options: dict | None = None,
               resume: bool = False, compute_twin: bool = True) -> list[dict]:
    """One method and seed: the grown run, then (a growing method) its equal-epoch and equal-compute
    twins. The equal-compute twin needs the run's ``train_flops``; a run without them has none (logged).
    ``data_options`` go to the grown run (the twins copy its data); ``resume``: see the module docstring.
    ``compute_twin=False`` leaves the equal-compute twin out."""
    from ..runs import compute_twin_config, twin_config

    _threads(threads)
    try:
        config = grown_config(method, dataset, seed, epochs, root, data_dir, settings, data_options)
        out = Path(config.out)
        run_dir, summary = _train(config, resume)
    except Exception as exc:  # recorded; the bench goes on
        log.debug("run failed: %s", traceback.format_exc())
        return [error_row(method, seed, "grown", exc)]
    rows = [summary_row(method, seed, "grown", summary, run_dir)]
    if method == "static":
        return rows
    try:
        twin_dir, twin = _twin(lambda: twin_config(run_dir, out=str(out) + "-twin"), Path(str(out) + "-twin"),
                               resume)
        rows.append(summary_row(method, seed, "twin", twin, twin_dir))
    except Exception as exc:
        rows.append(error_row(method, seed, "twin", exc))
    if not compute_twin:
        return rows
    if summary.get("train_flops") is None:
        log.warning("%s seed %d: no train_flops in its summary, so no equal-compute twin", method, seed)
        return rows
    try:
        ctwin_dir, ctwin = _twin(lambda: compute_twin_config(run_dir, out=str(out) + "-compute-twin"),
                                 Path(str(out) + "-compute-twin"), resume)
        rows.append(summary_row(method, seed, "compute-twin", ctwin, ctwin_dir))
    except Exception as exc:
        log.debug("compute twin failed: %s", traceback.format_exc())
        rows.append(error_row(method, seed, "compute-twin", exc))
    return rows


def _twin(make_config, out: Path, resume: bool):
    """A twin's ``(run_dir, summary)``: kept when finished (its config is derived from a run that was
    kept too, so it is the same), else made by ``make_config()`` and trained."""
    if resume:
        summary = finished_summary(out)
        if summary is not None:
            return out, summary
    return _train(make_config(), resume)


def front_job(family: str, reference_run: str, architecture: str, point: str, seed: int, out: str,
              threads: int | None, resume: bool = False) -> list[dict]:
    """One static front network: ``architecture`` (a folder with its ``model.safetensors``) trained from
    fresh values with the settings, data, epochs and seed of ``reference_run`` (a grown run of the family),
    as its static twin is (a conv network too). ``point``: its name, the row's ``hidden``
    (:func:`selfexpand.bench.front.point_name`)."""
    from ..runs import twin_config

    _threads(threads)
    method = f"front:{family}"
    try:
        run_dir, summary = _twin(lambda: twin_config(reference_run, out=out, architecture=architecture), Path(out),
                                 resume)
    except Exception as exc:
        log.debug("front run failed: %s", traceback.format_exc())
        row = error_row(method, seed, "front", exc, family=family)
    else:
        row = summary_row(method, seed, "front", summary, run_dir, family=family)
    row["hidden"] = point
    return [row]


def start_key(run_dir: str | Path, method: str) -> tuple:
    """What makes two methods one family: ``(start network, hidden widths, fixed front, conv channels)``
    of a run (``conv`` ``()`` for a dense start)."""
    import yaml

    from ..presets import get_preset

    config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    settings = _stored_settings(config)
    return (get_preset(method).start, tuple(settings.get("hidden") or ()), config.get("front"),
            tuple(settings.get("conv") or ()))

"""Runs on disk: train into a run directory, resume it, make its twin (loading a finished run and
predicting with it: :mod:`selfexpand.runuse`, re-exported here).

A run directory holds ``config.yaml`` (the resolved configuration, a valid ``train --config``),
``run.json`` (the run's id, identity-defining configuration and data fingerprint:
:mod:`selfexpand.rundir`), ``environment.json`` (versions and every command that wrote the run),
``history.jsonl`` (one record per epoch and per growth event), ``checkpoint/last.safetensors`` (model,
optimizer, trainer and strategy state, generator: everything ``resume`` needs), ``summary.json``,
``growth.png``, ``preprocessing.json`` and ``model.safetensors`` (the final model alone). The two
safetensors files carry the run's id; a file of another run, an edited setting that changes the run
or changed data is refused. A process writing the directory holds its lock (:mod:`selfexpand.runlock`).

Everything a run's configuration says is checked before any data is loaded or any file is written.
A non-finite loss stops the run; its last good checkpoint is kept and :class:`TrainingStopped` says
how to resume it (``resume_run(..., lr=...)``). Nothing here prints; the CLI adds the progress bar
through ``callbacks`` and prints ``summary["warnings"]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import torch

from .checkpoint import (check_run_stamp, load_checkpoint, read_run_identity, restore_rng_state,
                         save_checkpoint)
from .data import dataset_options, decode_targets, load_dataset
from .data.base import as_images
from .errors import CheckpointError, ConfigError, DataError, TrainingStopped
from .presets import build_method, build_start, resolve_config
from .report.inactivity import inactivity
from .report.plots import plot_growth
from .report.summary import summarize
from .runchecks import divergence_warning, start_warnings, stop_message
from .runconfig import CONFIG_FILE, RunConfig, check_run_config, read_config, run_settings, write_config
from .estimate import check_start_fits
from .rundir import (check_config, check_data, environment, new_identity, now, read_environment, read_json,
                     record_command, stamp, write_identity, write_json)
from .rungroup import check_parallel, join_group, leave_group
from .runlock import RunLock
from .runuse import load_run, predict_file
from .runwriter import CHECKPOINT, CHECKPOINT_SECONDS, RunWriter, _budget, config_trainer
from .runwriter import run_trainer as _trainer
from .train.callbacks import Callback
from .train.history import to_json
from .train.metrics import HIGHER_IS_BETTER
from .train.trainer import Trainer
from .twins import twin_model
from .validators import number, positive_int

__all__ = ["RunConfig", "train_run", "resume_run", "load_run", "predict_file", "twin_config", "compute_twin_config",
           "check_training", "CHECKPOINT", "CHECKPOINT_SECONDS"]

log = logging.getLogger("selfexpand.runs")

_CKPT_NAME = "checkpoint/last.safetensors"

_settings = run_settings  # the name earlier code used


def check_training(settings: dict, config: RunConfig) -> None:
    """Reject what the trainer or optimizer would reject later, before anything is written.

    Raises:
        ConfigError: a bad device or ``--max-params`` (the settings passed their rules already).
    """
    device = check_device(config)
    Trainer.from_settings(None, settings, seed=config.seed, max_params=_budget(config, settings),
                          device=device)  # checks the budget and every training setting


def check_device(config: RunConfig) -> torch.device:
    """``config.device`` as a ``torch.device``.

    Raises:
        ConfigError: not a CPU or CUDA device, or CUDA asked for where there is none.
    """
    try:
        device = torch.device(config.device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device must be 'cpu' or 'cuda', got device={config.device!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be 'cpu' or 'cuda', got device={config.device!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={config.device!r} but CUDA is not available on this machine")
    return device


def _load_data(config: RunConfig, settings: dict | None = None, data=None):
    """The run's data (``data``: given, loaded already); with a conv start (``settings["conv"]`` not
    empty) as ``(N, C, H, W)`` images (``data.base.as_images``: MNIST's flat rows viewed as
    ``1 x 28 x 28``), which a table refuses."""
    declared = dataset_options(config.dataset)
    extra = {} if config.task is None else {"task": config.task}  # load_dataset's task= is for files
    if (settings or {}).get("conv") and config.front is not None:
        raise ConfigError(f"conv={settings['conv']} builds growable conv blocks on the images; it cannot be "
                          f"combined with the fixed front {config.front!r} (leave out one of them)")
    if data is None:
        data = load_dataset(config.dataset, data_dir=config.data_dir, target=config.target,
                            test_file=config.test_file, seed=config.seed, val_fraction=config.val_fraction,
                            options={k: v for k, v in config.settings.items() if k in declared}, **extra)
    return as_images(data) if (settings or {}).get("conv") else data


def _check_fits(settings: dict, data, config: RunConfig) -> None:
    """The memory estimate of the start network (``selfexpand.estimate``), before it is built. Behind
    a fixed front the dense layers read the front's output, whose size is known only once it is built:
    no estimate then. A conv start (``conv``) is not estimated either: the estimate counts dense
    layers only (its conv blocks' activation maps are not modelled)."""
    if config.front is None and not settings.get("conv"):
        check_start_fits(settings, data.n_features, data.n_outputs, device=config.device,
                         n_train=int(data.x_train.shape[0]))


def _new_run_dir(config: RunConfig, data) -> Path:
    if config.out is not None:
        path = Path(config.out)
    else:
        stamp_ = time.strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / f"{data.name}-{config.method}-{stamp_}"
        k = 1
        while path.exists():
            k += 1
            path = Path("runs") / f"{data.name}-{config.method}-{stamp_}-{k}"
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(f"out must be a new or empty folder (nothing is overwritten), got out={str(path)!r}")
    (path / "checkpoint").mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _naming(run_dir: Path):
    """A Ctrl-C inside carries the run directory (``exc.run_dir``), so the CLI can say what to resume."""
    try:
        yield
    except KeyboardInterrupt as exc:
        exc.run_dir = str(run_dir)
        raise


def twin_config(run_dir: str | Path, *, out: str | None = None, epochs: int | None = None,
                architecture: str | Path | None = None) -> RunConfig:
    """The static twin of a finished run: its final architecture, fresh values, same epochs,
    optimizer, data and seed (DESIGN.md glossary).

    Args:
        epochs: train this many epochs instead (the equal-compute twin, :func:`compute_twin_config`).
        architecture: a folder whose ``model.safetensors`` gives the architecture instead of the run's
            final one (the bench's static front: a network of the run's family at another size),
            trained with the run's settings all the same.

    Raises:
        DataError / RunIdentityError: a damaged run file, or a ``config.yaml`` edited since the run.
    """
    run_dir = Path(run_dir)
    config, stored = read_config(run_dir)
    identity = read_run_identity(run_dir)
    if identity is not None and stored is None:
        check_config(identity, config, _in_file(run_settings, config, run_dir / CONFIG_FILE),
                     run_dir / CONFIG_FILE)
    path = run_dir / "summary.json"
    summary = read_json(path)
    done = summary.get("epochs") if isinstance(summary, dict) else None
    if not isinstance(done, int) or isinstance(done, bool) or done < 1:
        raise DataError(f"{path}: not a finished run's summary (no epochs count); is {run_dir} a finished run?")
    twin = dataclasses.replace(config, settings=dict(config.settings), out=out,
                               twin_of=str(architecture if architecture is not None else run_dir))
    twin.epochs = done if epochs is None else positive_int("epochs", epochs)
    return twin


def compute_twin_config(run_dir: str | Path, *, out: str | None = None) -> RunConfig:
    """The equal-compute twin of a finished run: its static twin trained for as many epochs as fit in
    the run's ``train_flops + growth_flops`` (:func:`selfexpand.twins.equal_compute_epochs`), one
    epoch's cost being :func:`selfexpand.train.flops.epoch_train_flops` of the final architecture on
    the run's training split (masked storage included, as ``train_flops`` counts it).

    Raises:
        DataError: the run's summary has no ``train_flops`` (made before compute accounting).
    """
    from .train.flops import epoch_train_flops
    from .twins import equal_compute_epochs

    run_dir = Path(run_dir)
    summary = read_json(run_dir / "summary.json")
    if not isinstance(summary, dict) or summary.get("train_flops") is None:
        raise DataError(f"{run_dir / 'summary.json'}: no train_flops (a run made before compute accounting)")
    twin = twin_config(run_dir, out=out)
    n_train = int(_load_data(twin).x_train.shape[0])
    stored, _live = epoch_train_flops(twin_model(run_dir, twin.seed), n_train)
    twin.epochs = equal_compute_epochs(summary["train_flops"] + (summary.get("growth_flops") or 0), stored)
    return twin


def train_run(config: RunConfig, *, callbacks: list[Callback] = (), command: list[str] | None = None,
              data=None):
    """Train a fresh run into a new run directory (locked while it is written).

    Args:
        data: the run's ``Dataset``, loaded already as ``config`` says (its dataset, seed, val_fraction
            and options: not checked); ``selfexpand search`` loads it once for all its trials and
            passes it with an empty test split, which the run then does not evaluate (``test_metric``
            None). Default: loaded here.

    Returns:
        ``(run_dir, summary)``; ``(None, None)`` on a data-parallel rank other than 0 (``rungroup``),
        which writes nothing.

    Raises:
        ConfigError / DataError / ResourceError: a bad setting or dataset, or a start network that
            cannot fit, before anything is written.
        TrainingStopped: the loss became non-finite; the run's last good checkpoint is kept.
    """
    check_run_config(config)
    settings = run_settings(config)
    if config.twin_of:
        method, method_name = build_method("static", resolve_config("static")), f"{config.method}-twin"
    else:
        method, method_name = build_method(config.method, settings), config.method
    check_training(settings, config)
    parallel = join_group(config, adopt=True)
    data = _load_data(config, settings, data)
    if config.twin_of:
        model = twin_model(config.twin_of, config.seed)
    else:
        _check_fits(settings, data, config)
        model = build_start(config.method, settings, data, config.seed, config.front)
    check_parallel(model, config)
    if parallel is not None and not parallel.is_main:  # rank 0 writes the run directory
        config_trainer(method, settings, config).fit(model, data)
        leave_group(parallel)
        return None, None
    run_dir = _new_run_dir(config, data)
    with RunLock(run_dir), _naming(run_dir):
        identity = new_identity(config, settings, data)
        write_config(run_dir, config, settings)
        write_identity(run_dir, identity)
        write_json(run_dir / "environment.json", environment(config, command))
        write_json(run_dir / "preprocessing.json", _preprocessing(data))
        counts_start = model.counts()
        warnings = start_warnings(method, model, data, _budget(config, settings), counts_start["params"])
        trainer = _trainer(method, settings, config, callbacks, run_dir, counts_start, identity=identity)
        result = trainer.fit(model, data)
        summary = _finish(run_dir, trainer, result, data, config, method_name, counts_start, identity, warnings)
    leave_group(parallel)
    return run_dir, summary


def resume_run(run_dir: str | Path, *, epochs: int | None = None, lr: float | None = None,
               device: str | None = None, callbacks: list[Callback] = (), command: list[str] | None = None):
    """Continue a run from its last checkpoint until ``epochs`` in total (default: as configured).

    Args:
        epochs: the new total; not below the epochs already trained.
        lr: a new learning rate, only after the run stopped on a non-finite loss (recorded in
            ``run.json``'s ``changes``); otherwise it would change the run, and is refused.
        device: continue on this device (``cpu``, ``cuda``, ``cuda:K``; default: the run's own), written
            to ``config.yaml`` (a device is not part of a run's identity).
        command: recorded in ``environment.json`` (default ``sys.argv``).

    Returns:
        ``(run_dir, summary)``; the run directory's files are updated in place; ``(None, None)`` on a
        data-parallel rank other than 0.

    Raises:
        RunIdentityError: the checkpoint is another run's, ``config.yaml`` was edited in a setting that
            changes the run, or the data changed.
        RunLockedError: another process is writing the run directory.
        TrainingStopped: the loss became non-finite again.
    """
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise DataError(f"{run_dir / CONFIG_FILE}: not found; is {run_dir} a run directory?")
    epochs = None if epochs is None else positive_int("epochs", epochs)
    lr = None if lr is None else number("lr", lr, 0, low_open=True)
    config = read_config(run_dir)[0]
    if device is not None:
        config.device = device
        check_device(config)
    parallel = join_group(config, adopt=False)
    if parallel is not None and not parallel.is_main:  # reads the run, writes nothing (rank 0 does)
        result = _resume(run_dir, epochs, lr, device, callbacks, command, writes=False)
    else:
        with RunLock(run_dir), _naming(run_dir):
            result = _resume(run_dir, epochs, lr, device, callbacks, command)
    leave_group(parallel)
    return result


def _resume(run_dir: Path, epochs: int | None, lr: float | None, device: str | None, callbacks, command, *,
            writes: bool = True):
    config, stored = read_config(run_dir)
    if device is not None:
        config.device = device
    settings = dict(stored) if stored is not None else _in_file(run_settings, config, run_dir / CONFIG_FILE)
    identity = read_run_identity(run_dir)
    env = read_environment(run_dir)
    ckpt = load_checkpoint(run_dir / CHECKPOINT, device=config.device)
    if identity is None and ckpt.run is not None and isinstance(ckpt.run.get("identity"), dict):
        log.warning("%s has no run.json; the checkpoint's record of the run is used and written back", run_dir)
        identity = {"format": "selfexpand.run/1", **ckpt.run, "twin_of": ckpt.run["identity"].get("twin_of"),
                    "changes": [], "stopped": None}
    if identity is None:
        log.warning("%s has no run.json: a run written before run identity, its files are not checked", run_dir)
    else:
        check_config(identity, config, settings, run_dir / CONFIG_FILE)
        check_run_stamp(run_dir / CHECKPOINT, ckpt.run, identity, _CKPT_NAME)
    trainer_state = ckpt.extra.get("trainer")
    if ckpt.optimizer is None or not isinstance(trainer_state, dict) or not isinstance(
            trainer_state.get("epoch"), int) or "generator" not in ckpt.tensors or "counts_start" not in ckpt.extra:
        raise CheckpointError(f"{run_dir / CHECKPOINT}: not a run's checkpoint (no optimizer or trainer state; "
                              f"a model.safetensors copied there?)")
    done = trainer_state["epoch"]
    if epochs is not None:
        if epochs < done:
            raise ConfigError(f"epochs must be at least the {done} epochs that run {run_dir} has trained, "
                              f"got epochs={epochs}")
        settings["epochs"] = config.epochs = epochs
    if lr is not None:
        _change_lr(identity, settings, config, ckpt.optimizer, lr, done, run_dir)
    method = build_method("static", resolve_config("static")) if config.twin_of else \
        build_method(config.method, settings)
    data = _load_data(config, settings)
    if identity is not None:
        check_data(identity, data, config)
    state = dict(trainer_state)
    state["generator"] = ckpt.tensors["generator"]
    state["tensors"] = {k: v for k, v in ckpt.tensors.items() if k.startswith(("method.", "growth_lr."))}
    restore_rng_state({k: v for k, v in ckpt.tensors.items() if k != "generator"})
    if not writes:
        config_trainer(method, settings, config).fit(ckpt.model, data, optimizer=ckpt.optimizer, state=state)
        return None, None
    if identity is not None:
        write_identity(run_dir, identity)
    if stored is None or device is not None:
        write_config(run_dir, config, settings)  # epochs, lr and device as they now are
    _repair_preprocessing(run_dir, data)
    record_command(run_dir, env, {"command": list(command or sys.argv), "time": now(), "resumed_from_epoch": done,
                             "epochs": settings["epochs"], "lr": lr, "threads": torch.get_num_threads(),
                             "device": config.device})
    counts_start = ckpt.extra["counts_start"]
    warnings = start_warnings(method, ckpt.model, data, _budget(config, settings), counts_start["params"])
    trainer = _trainer(method, settings, config, callbacks, run_dir, counts_start, identity=identity,
                       saved_epoch=done)
    result = trainer.fit(ckpt.model, data, optimizer=ckpt.optimizer, state=state)
    method_name = f"{config.method}-twin" if config.twin_of else config.method
    return run_dir, _finish(run_dir, trainer, result, data, config, method_name, counts_start, identity, warnings)


def _in_file(fn, config: RunConfig, path: Path):
    """``fn(config)``, a ConfigError naming the file the configuration came from."""
    try:
        return fn(config)
    except ConfigError as exc:
        raise type(exc)(f"{exc} (in {path})") from None


def _change_lr(identity, settings: dict, config: RunConfig, optimizer, lr: float, done: int, run_dir) -> None:
    """``resume --lr``: allowed after a stop on a non-finite loss only; recorded in ``run.json``."""
    stopped = (identity or {}).get("stopped")
    if not stopped:
        raise ConfigError(f"lr changes the run: `resume --lr` is allowed only after a run stopped on a non-finite "
                          f"loss, and run {run_dir} did not (train a new run with --lr {lr:g})")
    old = settings["lr"]
    for group in optimizer.param_groups:  # growth-aware factors on a group's rate are kept
        group["lr"] = group["lr"] * (lr / old)
    optimizer.defaults["lr"] = lr
    settings["lr"] = config.lr = lr
    identity["identity"]["settings"]["lr"] = lr
    identity.setdefault("changes", []).append({"setting": "lr", "from": old, "to": lr, "at_epoch": done,
                                               "time": now(), "after": stopped.get("reason")})
    log.info("%s: lr %g -> %g from epoch %d (after: %s)", run_dir, old, lr, done, stopped.get("reason"))


def _preprocessing(data) -> dict:
    return {"task": data.task, "n_outputs": data.n_outputs, "input_shape": list(data.input_shape),
            "preprocessing": data.preprocessing}


def _repair_preprocessing(run_dir: Path, data) -> None:
    """Write ``preprocessing.json`` again when it is missing or damaged (the data was just checked)."""
    path = run_dir / "preprocessing.json"
    try:
        ok = json.loads(to_json(_preprocessing(data))) == read_json(path)
    except DataError:
        ok = False
    if not ok:
        log.warning("%s was missing or damaged; it is written again from the run's data", path)
        write_json(path, _preprocessing(data))


# ---------------------------------------------------------------------- internals
@torch.no_grad()
def _final_metrics(ctx, data, model) -> dict:
    """Test loss and metric, final validation metric; a regression on standardised targets reports
    them (MSE) in the target's own unit, the history and ``best_val_metric`` staying in training units:
    ``metric_unit`` says which is which (None: every figure is in the data's own unit)."""
    name = ctx.metric_name
    test, val = ctx.evaluate("test"), ctx.evaluate("val")
    out = {"test_loss": test["loss"], "test_metric": test[name], "val_metric": val[name]}
    prep = data.preprocessing
    standardised = data.task == "regression" and prep.get("target_mean") is not None
    unit = "original" if not standardised else "standardised"
    if standardised:
        decode, was = decode_targets, model.training
        model.eval()
        for split in ("test", "val"):
            x, y = getattr(ctx.data, f"x_{split}"), getattr(ctx.data, f"y_{split}")
            if x.shape[0]:
                pred = torch.cat([model(x[i:i + 4096]) for i in range(0, x.shape[0], 4096)])
                out[f"{split}_metric"] = float(torch.mean((decode(prep, pred) - decode(prep, y)) ** 2))
        model.train(was)
    out["metric_unit"] = None if not standardised else {
        "test_metric": "original", "val_metric": "original", "best_val_metric": unit, "history": unit}
    return out


def _finish(run_dir: Path, trainer: Trainer, result, data, config: RunConfig, method: str,
            counts_start: dict, identity: dict | None, warnings: list[str]) -> dict:
    ctx, failure = trainer.ctx, trainer.failure
    records = result.history.records
    warnings = [*warnings, *filter(None, [divergence_warning(records)])]
    writer = next(c for c in trainer.callbacks if isinstance(c, RunWriter))
    common = dict(method=method, dataset=data.name, seed=config.seed, history=records, counts_start=counts_start,
                  counts_final=result.model.counts(), metric_name=ctx.metric_name,
                  higher_is_better=HIGHER_IS_BETTER[ctx.metric_name], train_seconds=result.train_seconds,
                  growth_seconds=result.growth_seconds)
    extra = {"run_dir": str(run_dir), "run_id": (identity or {}).get("run_id"), "warnings": warnings}
    if failure is not None:
        stopped = {**failure, "kept_epoch": writer.saved_epoch}
        summary = summarize(**common, test_metric=None, inactivity=None,
                            extra={**extra, "test_loss": None, "val_metric": None, "stopped": stopped})
        write_json(run_dir / "summary.json", summary)
        if identity is not None:
            identity["stopped"] = stopped
            write_identity(run_dir, identity)
        with contextlib.suppress(Exception):  # a plot of non-finite values is no reason for a traceback
            plot_growth(records, run_dir / "growth.png", ctx.metric_name)
        lr = trainer.lr
        raise TrainingStopped(stop_message(failure, writer.saved_epoch, lr, run_dir), run_dir=str(run_dir))
    final = _final_metrics(ctx, data, result.model)
    summary = summarize(**common, test_metric=final.pop("test_metric"),
                        inactivity=inactivity(result.model, ctx.data.x_val),
                        extra={**extra, **final, "stopped": None})
    write_json(run_dir / "summary.json", summary)
    save_checkpoint(run_dir / "model.safetensors", result.model.cpu(), extra={"summary": json.loads(
        to_json(summary))}, run=stamp(identity))
    result.model.to(trainer.device)
    plot_growth(records, run_dir / "growth.png", ctx.metric_name)
    if identity is not None and identity.get("stopped"):
        identity["stopped"] = None
        write_identity(run_dir, identity)
    return summary

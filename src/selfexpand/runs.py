"""Runs on disk: train into a run directory, resume it, load it, predict with it, make its twin.

A run directory holds ``config.yaml`` (the fully resolved configuration), ``environment.json``,
``history.jsonl`` (one record per epoch and per growth event), ``checkpoint/last.safetensors``
(model, optimizer, trainer and strategy state, generator: everything ``resume`` needs),
``summary.json``, ``growth.png``, ``preprocessing.json`` and ``model.safetensors`` (the final model
alone). Everything a run's configuration says is checked before any data is loaded or any file is
written. Nothing here prints; the CLI adds the progress bar through ``callbacks``.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import yaml

from ._version import __version__
from .checkpoint import load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from .data import dataset_options, decode_labels, load_dataset, preprocess_features, read_features_file
from .errors import ConfigError, DataError
from .presets import build_method, build_start, resolve_config
from .report.inactivity import inactivity
from .report.plots import plot_growth
from .report.summary import summarize
from .train.callbacks import Callback
from .train.metrics import HIGHER_IS_BETTER
from .train.recorders import InactivityRecorder, SizeControlRecorder
from .train.trainer import Trainer
from .twins import twin_model
from .validators import positive_int

__all__ = ["RunConfig", "train_run", "resume_run", "load_run", "predict_file", "twin_config"]

log = logging.getLogger("selfexpand.runs")

CHECKPOINT = Path("checkpoint") / "last.safetensors"
CHECKPOINT_SECONDS = 10.0  # the longest a run waits between two checkpoints (and at the end)


@dataclass
class RunConfig:
    """Everything that defines a run; ``None`` training values come from the method's table row."""

    method: str = "edge"
    dataset: str = "digits"
    target: str | None = None
    data_dir: str | None = None
    test_file: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    val_fraction: float = 0.2
    max_params: int | None = None
    grow_until: float | None = None
    device: str = "cpu"
    out: str | None = None
    settings: dict = field(default_factory=dict)
    twin_of: str | None = None
    front: str | None = None


def _settings(config: RunConfig) -> dict:
    """The run's resolved settings: the method's row for the dataset, ``--set`` and the options."""
    overrides = _method_settings(config)
    for name in ("epochs", "batch_size", "lr", "grow_until"):
        value = getattr(config, name)
        if value is not None:
            overrides[name] = value  # checked like any other setting
    return resolve_config(config.method, str(config.dataset), overrides)


def _budget(config: RunConfig, settings: dict) -> int | None:
    """``--max-params`` if given, else the method row's ``max_params`` (None: no bound)."""
    return config.max_params if config.max_params is not None else settings.get("max_params")


def _check_training(settings: dict, config: RunConfig) -> None:
    """Reject what the trainer or optimizer would reject later, before anything is written.

    Raises:
        ConfigError: a bad device or ``--max-params`` (the settings passed their rules already).
    """
    try:
        device = torch.device(config.device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device must be 'cpu' or 'cuda', got device={config.device!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be 'cpu' or 'cuda', got device={config.device!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={config.device!r} but CUDA is not available on this machine")
    Trainer.from_settings(None, settings, seed=config.seed, max_params=_budget(config, settings),
                          device=device)  # checks the budget and every training setting


def _load_data(config: RunConfig):
    return load_dataset(config.dataset, data_dir=config.data_dir, target=config.target,
                        test_file=config.test_file, seed=config.seed, val_fraction=config.val_fraction,
                        options=_dataset_settings(config))


def _dataset_settings(config: RunConfig) -> dict:
    """The ``--set`` keys the dataset declares as its options (``--set arms=5`` for ``spirals``)."""
    declared = dataset_options(config.dataset)
    return {k: v for k, v in config.settings.items() if k in declared}


def _method_settings(config: RunConfig) -> dict:
    """The other ``--set`` keys: the method's settings."""
    declared = dataset_options(config.dataset)
    return {k: v for k, v in config.settings.items() if k not in declared}


def _new_run_dir(config: RunConfig, data) -> Path:
    if config.out:
        path = Path(config.out)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / f"{data.name}-{config.method}-{stamp}"
        k = 1
        while path.exists():
            k += 1
            path = Path("runs") / f"{data.name}-{config.method}-{stamp}-{k}"
    if path.exists() and any(path.iterdir()):
        raise ConfigError(f"out must be a new or empty folder (nothing is overwritten), got out={str(path)!r}")
    (path / "checkpoint").mkdir(parents=True, exist_ok=True)
    return path


def twin_config(run_dir: str | Path, *, out: str | None = None, epochs: int | None = None,
                architecture: str | Path | None = None) -> RunConfig:
    """The static twin of a finished run: its final architecture, fresh values, same epochs,
    optimizer, data and seed (DESIGN.md glossary).

    Args:
        epochs: train this many epochs instead (the equal-compute twin, :func:`compute_twin_config`).
        architecture: a folder whose ``model.safetensors`` gives the architecture instead of the run's
            final one (the bench's static front: a network of the run's family at another size),
            trained with the run's settings all the same.
    """
    run_dir = Path(run_dir)
    config, summary = _read_config(run_dir), _read_json(run_dir / "summary.json")
    fields = {k: v for k, v in config.items() if k in RunConfig.__dataclass_fields__}
    twin = RunConfig(**{**fields, "settings": dict(config.get("settings") or {})})
    twin.twin_of, twin.out = str(architecture if architecture is not None else run_dir), out
    twin.epochs = summary["epochs"] if epochs is None else positive_int("epochs", epochs)
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
    summary = _read_json(run_dir / "summary.json")
    if summary.get("train_flops") is None:
        raise DataError(f"{run_dir / 'summary.json'}: no train_flops (a run made before compute accounting)")
    twin = twin_config(run_dir, out=out)
    n_train = int(_load_data(twin).x_train.shape[0])
    stored, _live = epoch_train_flops(twin_model(run_dir, twin.seed), n_train)
    twin.epochs = equal_compute_epochs(summary["train_flops"] + (summary.get("growth_flops") or 0), stored)
    return twin


def train_run(config: RunConfig, *, callbacks: list[Callback] = (), command: list[str] | None = None):
    """Train a fresh run into a new run directory.

    Returns:
        ``(run_dir, summary)``.

    Raises:
        ConfigError / DataError: a bad setting or dataset, before anything is written.
    """
    settings = _settings(config)
    if config.twin_of:
        method, method_name = build_method("static", resolve_config("static")), f"{config.method}-twin"
    else:
        method, method_name = build_method(config.method, settings), config.method
    _check_training(settings, config)
    data = _load_data(config)
    if config.twin_of:
        model = twin_model(config.twin_of, config.seed)
    else:
        model = build_start(config.method, settings, data, config.seed, config.front)
    run_dir = _new_run_dir(config, data)
    resolved = {**asdict(config), "resolved": settings, "out": str(run_dir)}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    _write_json(run_dir / "environment.json", _environment(config, command))
    _write_json(run_dir / "preprocessing.json", {"task": data.task, "n_outputs": data.n_outputs,
                                                 "input_shape": list(data.input_shape),
                                                 "preprocessing": data.preprocessing})
    trainer = _trainer(method, settings, config, callbacks, run_dir)
    counts_start = model.counts()
    result = trainer.fit(model, data)
    return run_dir, _finish(run_dir, trainer, result, data, config, method_name, counts_start)


def resume_run(run_dir: str | Path, *, epochs: int | None = None, callbacks: list[Callback] = ()):
    """Continue a run from its last checkpoint until ``epochs`` in total (default: as configured).

    Returns:
        ``(run_dir, summary)``; the run directory's files are updated in place.
    """
    run_dir = Path(run_dir)
    raw = _read_config(run_dir)
    settings = dict(raw.pop("resolved"))
    config = RunConfig(**{k: v for k, v in raw.items() if k in RunConfig.__dataclass_fields__})
    if epochs is not None:
        settings["epochs"] = positive_int("epochs", epochs)
    method = build_method("static", resolve_config("static")) if config.twin_of else \
        build_method(config.method, settings)
    ckpt = load_checkpoint(run_dir / CHECKPOINT, device=config.device)
    data = _load_data(config)
    state = dict(ckpt.extra["trainer"])
    state["generator"] = ckpt.tensors["generator"]
    state["tensors"] = {k: v for k, v in ckpt.tensors.items() if k.startswith(("method.", "growth_lr."))}
    restore_rng_state({k: v for k, v in ckpt.tensors.items() if k != "generator"})
    counts_start = ckpt.extra["counts_start"]
    trainer = _trainer(method, settings, config, callbacks, run_dir, counts_start)
    result = trainer.fit(ckpt.model, data, optimizer=ckpt.optimizer, state=state)
    method_name = f"{config.method}-twin" if config.twin_of else config.method
    return run_dir, _finish(run_dir, trainer, result, data, config, method_name, counts_start)


def load_run(run_dir: str | Path):
    """The final model of a finished run and its preprocessing: ``(model, preprocessing)``.

    ``preprocessing`` is the dict that :func:`selfexpand.data.preprocess_features` takes (the
    ``"preprocessing"`` entry of ``preprocessing.json``): task, input shape, standardisation,
    class labels. ``model(preprocess_features(preprocessing, raw))`` is what ``predict`` uses.
    """
    run_dir = Path(run_dir)
    model = load_checkpoint(run_dir / "model.safetensors").model
    model.eval()
    return model, _read_json(run_dir / "preprocessing.json")["preprocessing"]


@torch.no_grad()
def predict_file(run_dir: str | Path, path: str | Path) -> list:
    """Predictions of a finished run for the rows of a CSV / NPZ file (labels decoded)."""
    model, prep = load_run(run_dir)
    raw = read_features_file(path, prep)
    out = model(preprocess_features(prep, raw))
    if prep["task"] == "classification":
        return decode_labels(prep, out.argmax(1).numpy())
    return out.numpy().tolist()


# ---------------------------------------------------------------------- internals
class _RunWriter(Callback):
    """Appends each epoch's records to ``history.jsonl`` and saves the checkpoint at most every
    ``CHECKPOINT_SECONDS`` and at the end of training.

    Saving after every epoch made a run of many tiny epochs (the size methods' full-batch steps)
    spend nearly all its time writing: 2,000 epochs took 5 minutes, 8 s of them training. An
    interrupted run resumes from a checkpoint at most that old; the history is rewritten from the
    checkpoint's own copy when training (re)starts, so it never runs ahead of the checkpoint then.
    """

    def __init__(self, run_dir: Path, trainer: Trainer, counts_start: dict | None = None):
        self.run_dir, self.trainer, self.counts_start = run_dir, trainer, counts_start
        self.written, self.last_save = 0, 0.0

    def on_train_begin(self, ctx, **kwargs) -> None:
        if self.counts_start is None:
            self.counts_start = ctx.model.counts()
        ctx.history.write_jsonl(self.run_dir / "history.jsonl")
        self.written, self.last_save = len(ctx.history.records), time.perf_counter()

    def on_epoch_end(self, ctx, record: dict, **kwargs) -> None:
        self._append(ctx)
        if time.perf_counter() - self.last_save >= CHECKPOINT_SECONDS:
            self._save(ctx)

    def on_train_end(self, ctx, **kwargs) -> None:
        self._append(ctx)
        self._save(ctx)

    def _append(self, ctx) -> None:
        records = ctx.history.records[self.written:]
        if records:
            with open(self.run_dir / "history.jsonl", "a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in records))
            self.written = len(ctx.history.records)

    def _save(self, ctx) -> None:
        state, tensors = self.trainer.state_dict()
        save_checkpoint(self.run_dir / CHECKPOINT, ctx.model, ctx.optimizer,
                        extra={"trainer": state, "counts_start": self.counts_start},
                        tensors={**tensors, **rng_state()})
        self.last_save = time.perf_counter()


def _trainer(method, settings: dict, config: RunConfig, callbacks, run_dir: Path,
             counts_start: dict | None = None) -> Trainer:
    # a run stored before a training setting existed runs with its default (grow_until 1, no growth_lr)
    trainer = Trainer.from_settings(method, settings, seed=config.seed, max_params=_budget(config, settings),
                                    device=config.device)
    # the recorders add to the epoch record, so they run before the writer stores it
    trainer.callbacks = [InactivityRecorder(), SizeControlRecorder(), _RunWriter(run_dir, trainer, counts_start),
                         *callbacks]
    return trainer


def _finish(run_dir: Path, trainer: Trainer, result, data, config: RunConfig, method: str,
            counts_start: dict) -> dict:
    ctx = trainer.ctx
    test = ctx.evaluate("test")
    summary = summarize(
        method=method, dataset=data.name, seed=config.seed, history=result.history.records,
        counts_start=counts_start, counts_final=result.model.counts(), metric_name=ctx.metric_name,
        higher_is_better=HIGHER_IS_BETTER[ctx.metric_name], test_metric=test[ctx.metric_name],
        train_seconds=result.train_seconds, growth_seconds=result.growth_seconds,
        inactivity=inactivity(result.model, ctx.data.x_val),
        extra={"test_loss": test["loss"], "run_dir": str(run_dir)})
    _write_json(run_dir / "summary.json", summary)
    save_checkpoint(run_dir / "model.safetensors", result.model.cpu(),
                    extra={"summary": summary})
    result.model.to(trainer.device)
    plot_growth(result.history.records, run_dir / "growth.png", ctx.metric_name)
    return summary


def _environment(config: RunConfig, command) -> dict:
    return {"python": sys.version.split()[0], "torch": torch.__version__, "selfexpand": __version__,
            "platform": platform.platform(), "seed": config.seed, "device": config.device,
            "threads": torch.get_num_threads(), "command": command or sys.argv}


def _write_json(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    tmp.replace(path)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: not found; is {path.parent} a finished run directory?") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def _read_config(run_dir: Path) -> dict:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise DataError(f"{path}: not found; is {run_dir} a run directory?")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid YAML ({exc})") from None
    config.pop("out", None)
    return config

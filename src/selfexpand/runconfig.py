"""A run's configuration: :class:`RunConfig`, its resolved settings and its ``config.yaml``.

``config.yaml`` is a flat mapping that ``selfexpand train --config`` reads as it is: the fields of
:class:`RunConfig` (the training values ``epochs``, ``batch_size``, ``lr`` and ``grow_until`` as the
run resolved them) and ``settings``, every other resolved setting of the method (parts included) plus
the dataset's options, each with its type (``max_new: 8``, not ``'8'``). It holds nothing that only
identifies the run (``run.json`` does, :mod:`selfexpand.rundir`), and no ``out`` (the folder it is in).
A twin's ``config.yaml`` also names ``twin_of``. Files written before issue #23 held the resolved
settings under ``resolved``; they are still read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from .data import dataset_options
from .data.base import TASKS
from .errors import ConfigError, DataError
from .presets import resolve_config

__all__ = ["RunConfig", "CONFIG_FILE", "TRAINING_FIELDS", "check_run_config", "run_settings",
           "dataset_settings", "config_mapping", "write_config", "read_config"]

CONFIG_FILE = "config.yaml"

#: the floating-point types a run trains in (``RunConfig.dtype``; float32 unless asked)
DTYPES = ("float32", "float64")

#: RunConfig fields that are training settings: config.yaml holds their resolved values
TRAINING_FIELDS = ("epochs", "batch_size", "lr", "grow_until")


@dataclass
class RunConfig:
    """Everything that defines a run; ``None`` training values come from the method's table row.

    ``task`` (``classification`` / ``regression``, None: as the data says) is passed to
    ``load_dataset`` for the user's own files.
    """

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
    dtype: str = "float32"
    nproc: int = 1
    out: str | None = None
    settings: dict = field(default_factory=dict)
    twin_of: str | None = None
    front: str | None = None
    task: str | None = None


_PATHS = ("dataset", "target", "data_dir", "test_file", "out", "twin_of")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_run_config(config: RunConfig, where: str = "") -> None:
    """Check the type and range of every field of ``config`` (``where``: a prefix for messages, the
    file it was read from). The settings themselves are checked by :func:`run_settings`.

    Raises:
        ConfigError: the rule and the value, e.g. ``seed must be an integer, got seed='0'``.
    """
    def bad(name, rule):
        raise ConfigError(f"{where}{name} must be {rule}, got {name}={getattr(config, name)!r}")

    for name in ("method", "device"):
        if not isinstance(getattr(config, name), str) or not getattr(config, name):
            bad(name, "a non-empty string")
    for name in _PATHS + ("front",):
        value = getattr(config, name)
        if value is not None and not isinstance(value, (str, os.PathLike)):
            bad(name, "a string or null")
    if not str(config.dataset):
        bad("dataset", "a dataset name or a .csv / .npz file")
    if config.out is not None and not str(config.out):
        bad("out", "a folder path (leave it out for runs/<dataset>-<method>-<time>)")
    if not _is_int(config.seed):
        bad("seed", "an integer")
    for name in ("epochs", "batch_size", "max_params"):
        value = getattr(config, name)
        if value is not None and not (_is_int(value) and value >= 1):
            bad(name, "an integer >= 1 or null")
    if config.lr is not None and not (_is_number(config.lr) and 0 < config.lr < float("inf")):
        bad("lr", "a number > 0 or null")
    if config.grow_until is not None and not (_is_number(config.grow_until) and 0 <= config.grow_until <= 1):
        bad("grow_until", "a number in [0, 1] or null")
    if not (_is_number(config.val_fraction) and 0 < config.val_fraction < 1):
        bad("val_fraction", "a number in (0, 1)")
    if config.task is not None and config.task not in TASKS:
        bad("task", f"one of {list(TASKS)} or null")
    if config.dtype not in DTYPES:
        bad("dtype", f"one of {list(DTYPES)}")
    if not (_is_int(config.nproc) and config.nproc >= 1):
        bad("nproc", "an integer >= 1")
    if not isinstance(config.settings, dict) or not all(isinstance(k, str) for k in config.settings):
        bad("settings", "a mapping of name: value")


def dataset_settings(config: RunConfig) -> dict:
    """The ``--set`` keys the dataset declares as its options (``--set arms=5`` for ``spirals``)."""
    declared = dataset_options(config.dataset)
    return {k: v for k, v in config.settings.items() if k in declared}


def run_settings(config: RunConfig) -> dict:
    """The run's resolved settings: the method's row for the dataset, then ``settings`` (the
    dataset's options left out) and the training fields that are not None, each value checked.

    Raises:
        ConfigError: an unknown method, part or setting, or a value its rule refuses.
    """
    declared = dataset_options(config.dataset)
    overrides = {k: v for k, v in config.settings.items() if k not in declared}
    for name in TRAINING_FIELDS:
        value = getattr(config, name)
        if value is not None:
            overrides[name] = value  # checked like any other setting
    return resolve_config(config.method, str(config.dataset), overrides)


def config_mapping(config: RunConfig, settings: dict) -> dict:
    """What ``config.yaml`` holds (see the module's docstring); ``settings`` are the resolved ones."""
    out = {}
    for f in fields(RunConfig):
        if f.name in ("out", "settings", "twin_of"):
            continue
        value = settings[f.name] if f.name in TRAINING_FIELDS else getattr(config, f.name)
        out[f.name] = str(value) if f.name in _PATHS and value is not None else value
    if config.twin_of is not None:
        out["twin_of"] = str(config.twin_of)
    out["settings"] = {**{k: v for k, v in settings.items() if k not in TRAINING_FIELDS},
                       **dataset_settings(config)}
    return out


def write_config(run_dir: Path, config: RunConfig, settings: dict) -> None:
    """Write ``config.yaml`` (atomically)."""
    path = Path(run_dir) / CONFIG_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config_mapping(config, settings), sort_keys=False))
    tmp.replace(path)


def read_config(run_dir: str | Path) -> tuple[RunConfig, dict | None]:
    """The run's configuration from its ``config.yaml``, its fields checked, and the resolved
    settings an old file stored under ``resolved`` (None for a current file: :func:`run_settings`
    gives them). Keys that are not fields are method settings, as ``--config`` reads them.

    Raises:
        DataError: ``config.yaml`` missing, not YAML, or not a mapping.
        ConfigError: a field of the wrong type or out of range (the message names the file).
    """
    path = Path(run_dir) / CONFIG_FILE
    try:
        raw = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: not found; is {Path(run_dir)} a run directory?") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not text ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())
        raise DataError(f"{path}: not valid YAML ({first})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: must be a mapping of option: value, got {type(raw).__name__}")
    raw = {str(k).replace("-", "_"): v for k, v in raw.items()}
    old = "resolved" in raw
    resolved = raw.pop("resolved", None)
    if old and not isinstance(resolved, dict):
        raise DataError(f"{path}: resolved must be a mapping of setting: value, got {type(resolved).__name__}")
    raw.pop("out", None)  # files before issue #23 named their folder
    settings = raw.pop("settings", None)
    settings = {} if settings is None else settings
    if not isinstance(settings, dict):
        raise DataError(f"{path}: settings must be a mapping of name: value, got {type(settings).__name__}")
    names = {f.name for f in fields(RunConfig)} - {"settings", "out"}
    settings = {**{k: v for k, v in raw.items() if k not in names}, **settings}
    config = RunConfig(**{k: v for k, v in raw.items() if k in names}, settings=settings)
    check_run_config(config, where=f"{path}: ")
    return config, resolved

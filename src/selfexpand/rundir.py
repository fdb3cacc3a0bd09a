"""Run identity: which run a run directory's files belong to, and what a resumed run may change.

A run gets a random id when it is created. ``run.json`` holds it with the run's identity-defining
configuration (:func:`identity_config`: everything in ``config.yaml`` but ``epochs``, ``device`` and
``data_dir``) and a fingerprint of its data (:func:`data_fingerprint`: SHA-256 over each split's
tensors and over the preprocessing). ``model.safetensors`` and ``checkpoint/last.safetensors`` carry
the id in their metadata (:func:`stamp`; the checkpoint the configuration and fingerprint too), so a
file copied from another run is refused (``selfexpand.checkpoint.load_run_file``), and so are an
edited ``config.yaml`` (:func:`check_config`) and changed data (:func:`check_data`). What may change
is recorded: ``epochs`` and ``device`` in ``config.yaml``, ``lr`` after a stop on a non-finite loss in
``run.json`` (``changes``), every command in ``environment.json`` (``commands``).

Also here: the JSON files of a run directory, written without ``NaN`` and read with an error that
names the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import sys
import time
import uuid
from pathlib import Path

import torch

from ._version import __version__
from .checkpoint import RUN_FILE, short_id
from .errors import DataError, RunIdentityError
from .runconfig import RunConfig, dataset_settings
from .train.history import to_json

__all__ = ["RUN_FORMAT", "EDITABLE", "identity_config", "data_fingerprint", "new_identity", "stamp",
           "check_config", "check_data", "write_identity", "environment", "read_environment", "record_command",
           "write_json", "read_json", "now"]

log = logging.getLogger("selfexpand.runs")

RUN_FORMAT = "selfexpand.run/1"

#: what a resumed run may change (recorded, not part of its identity); ``lr`` only after a non-finite stop
EDITABLE = ("epochs", "threads", "device", "data_dir")
_ALLOWED = "allowed: epochs, threads, device, data_dir; lr only with `resume --lr` after a non-finite stop"

_SPLITS = (("train", "training"), ("val", "validation"), ("test", "test"))


def now() -> str:
    """The local time with its UTC offset, to the second (ISO 8601)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def identity_config(config: RunConfig, settings: dict) -> dict:
    """The configuration that defines a run, as JSON (``settings``: the resolved ones, whose
    ``batch_size``, ``lr`` and ``grow_until`` count; ``epochs`` does not)."""
    out = {"method": config.method, "dataset": str(config.dataset), "target": config.target,
           "test_file": None if config.test_file is None else str(config.test_file), "task": config.task,
           "seed": config.seed, "val_fraction": config.val_fraction, "max_params": config.max_params,
           "front": config.front, "twin_of": None if config.twin_of is None else str(config.twin_of),
           "settings": {**{k: v for k, v in settings.items() if k != "epochs"}, **dataset_settings(config)}}
    if config.dtype != "float32":  # a run made before the setting existed trained in float32
        out["dtype"] = config.dtype
    if config.nproc != 1:  # data-parallel ranks (train.distributed): a resume needs as many
        out["nproc"] = config.nproc
    return json.loads(json.dumps(out))  # as run.json gives it back: tuples are lists


def _digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(json.dumps([str(t.dtype), list(t.shape)]).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def data_fingerprint(data) -> dict:
    """What identifies a run's data (a ``selfexpand.data.Dataset``): its task, sizes, a SHA-256 of
    each split's ``(x, y)`` tensors and of the preprocessing (JSON, sorted keys)."""
    out = {"dataset": data.name, "task": data.task, "n_train": int(data.x_train.shape[0]),
           "n_features": int(data.n_features), "n_outputs": int(data.n_outputs)}
    for split, _ in _SPLITS:
        out[split] = _digest(getattr(data, f"x_{split}"), getattr(data, f"y_{split}"))
    out["preprocessing"] = hashlib.sha256(json.dumps(data.preprocessing, sort_keys=True).encode()).hexdigest()
    return out


def new_identity(config: RunConfig, settings: dict, data) -> dict:
    """A new run's ``run.json``: a random ``run_id`` and what the run is."""
    return {"format": RUN_FORMAT, "run_id": uuid.uuid4().hex, "created": now(), "method": config.method,
            "seed": config.seed, "dataset": data.name,
            "twin_of": None if config.twin_of is None else str(config.twin_of),
            "identity": identity_config(config, settings), "data": data_fingerprint(data), "changes": [],
            "stopped": None}


def stamp(identity: dict | None, *, full: bool = False) -> dict | None:
    """The ``run`` metadata of a file of the run (None for a run without identity); ``full`` (the
    checkpoint's) adds the identity-defining configuration and the data fingerprint."""
    if identity is None:
        return None
    out = {k: identity.get(k) for k in ("run_id", "method", "seed", "dataset")}
    if full:
        out.update(identity=identity.get("identity"), data=identity.get("data"))
    return out


def _show(value) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else repr(value) if isinstance(value, str) \
        else str(value)


def _differences(then: dict, now_: dict, prefix: str = "") -> list[str]:
    out = []
    for key in [*then, *[k for k in now_ if k not in then]]:
        name = f"{prefix}{key}"
        if key not in now_:
            out.append(f"{name} removed (was {_show(then[key])})")
        elif key not in then:
            out.append(f"{name} added ({_show(now_[key])})")
        elif isinstance(then[key], dict) and isinstance(now_[key], dict):
            out += _differences(then[key], now_[key], f"{name}.")
        elif then[key] != now_[key] or isinstance(then[key], bool) != isinstance(now_[key], bool):
            out.append(f"{name} changed from {_show(then[key])} to {_show(now_[key])}")
    return out


def check_config(identity: dict, config: RunConfig, settings: dict, path: Path) -> None:
    """Refuse a ``config.yaml`` edited since the run started in a setting that changes the run.

    Raises:
        RunIdentityError: names the file and every changed setting, and what may change.
    """
    changed = _differences(identity.get("identity") or {}, identity_config(config, settings))
    if changed:
        raise RunIdentityError(f"{path}: {', '.join(changed)} since the run started; settings that change the "
                               f"run cannot be edited ({_ALLOWED})")


def check_data(identity: dict, data, config: RunConfig) -> None:
    """Refuse data that is not the run's own (the file changed, another split, other preprocessing).

    Raises:
        RunIdentityError: names the dataset (and test file) and what differs, now and then.
    """
    then, now_ = identity.get("data") or {}, data_fingerprint(data)
    changed = [f"{key} {now_[key]} now, {then.get(key)} when the run started"
               for key in ("task", "n_train", "n_features", "n_outputs") if then.get(key) != now_[key]]
    changed += [f"{words} split sha256 {now_[split][:8]}\u2026 now, {str(then.get(split))[:8]}\u2026 then"
                for split, words in _SPLITS if then.get(split) != now_[split]]
    if then.get("preprocessing") != now_["preprocessing"]:
        changed.append("the preprocessing (standardisation, labels) differs")
    if changed:
        where = str(config.dataset) + (f" (test file {config.test_file})" if config.test_file else "")
        raise RunIdentityError(f"data {where}: not the data of run {short_id(identity['run_id'])}: "
                               f"{'; '.join(changed)}; a run continues only on its own data")


def write_identity(run_dir: Path, identity: dict) -> None:
    write_json(Path(run_dir) / RUN_FILE, identity)


def environment(config: RunConfig, command) -> dict:
    """``environment.json`` of a new run: versions, platform, seed, device, threads, the command line,
    and ``commands``: every command that wrote the run (:func:`record_command` adds resumes)."""
    command = list(command or sys.argv)
    return {"python": sys.version.split()[0], "torch": torch.__version__, "selfexpand": __version__,
            "platform": platform.platform(), "seed": config.seed, "device": config.device,
            "threads": torch.get_num_threads(), "command": command,
            "commands": [{"command": command, "time": now(), "threads": torch.get_num_threads(),
                          "device": config.device}]}


def read_environment(run_dir: Path) -> dict:
    """``environment.json`` of a run, to add a command to (:func:`record_command`); a missing one is
    started afresh, with a warning.

    Raises:
        DataError: ``environment.json`` is damaged.
    """
    path = Path(run_dir) / "environment.json"
    if not path.exists():
        log.warning("%s is missing; it is started again with this command", path)
        return {}
    env = read_json(path)
    if not isinstance(env, dict) or not isinstance(env.get("commands", []), list):
        raise DataError(f"{path}: not a run's environment (a JSON object with a list of commands)")
    return env


def record_command(run_dir: Path, env: dict, entry: dict) -> None:
    """Append ``entry`` (``command``, ``time``, ...) to ``commands`` of ``env`` (:func:`read_environment`)
    and write ``environment.json``."""
    env.setdefault("commands", []).append(entry)
    write_json(Path(run_dir) / "environment.json", env)


def write_json(path: Path, value) -> None:
    """Write ``value`` as indented JSON, non-finite floats as ``null``, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(to_json(value, indent=2) + "\n")
    tmp.replace(path)


def read_json(path: Path):
    """The JSON value in ``path``.

    Raises:
        DataError: missing, unreadable, not UTF-8 or not JSON (the message names the file).
    """
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: not found; is {path.parent} a finished run directory?") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise DataError(f"{path}: not valid JSON ({exc})") from None

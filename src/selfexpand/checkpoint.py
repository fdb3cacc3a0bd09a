"""Save, load and resume: one safetensors file holding a ``GrowableNet``, its optimizer and extras.

Tensors: ``model.<name>`` (state dict), ``optim.<param name>.<key>`` (tensor optimizer state, Adam's
``step`` included), ``optim_hyper.<group index | defaults>.<key>`` (tensor hyperparameters) and
``extra.<key>`` (user tensors). Metadata (JSON strings): ``format``, ``spec``, ``optimizer``, ``extra``,
``frozen``, ``library``, ``run`` (optional: the run it belongs to, see :func:`load_run_file`),
``sha256`` (every tensor's name, dtype, shape and bytes, sorted by name) and ``metadata_sha256`` (the
other metadata). Optimizer state is keyed by parameter *name*, never by position: growth replaces
parameters. Loading never executes code (no pickle, ``torch.load``, ``eval``). Files get the umask's
permissions, as ``open`` gives.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import struct
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load as _safetensors_load
from safetensors.torch import save as _safetensors_save
from torch import nn

from .errors import CheckpointError, DataError, RunIdentityError
from .graph.network import GrowableNet

__all__ = ["FORMAT", "OPTIMIZERS", "register_optimizer", "Checkpoint", "save_checkpoint", "load_checkpoint",
           "rng_state", "restore_rng_state", "RUN_FILE", "read_run_identity", "check_run_stamp", "load_run_file",
           "short_id"]

logger = logging.getLogger(__name__)

FORMAT = "selfexpand.checkpoint/1"

#: The optimizers a checkpoint can name; nothing else is ever constructed on load. Others join with
#: :func:`register_optimizer` (``selfexpand.train`` registers its ``NaturalGradient``).
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    name: getattr(torch.optim, name) for name in ("SGD", "Adam", "AdamW", "RMSprop")}


def register_optimizer(cls: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """Class decorator: let checkpoints save and rebuild optimizers of class ``cls`` (by its name).

    Raises:
        CheckpointError: ``cls`` is not a ``torch.optim.Optimizer`` subclass, or its name is taken.
    """
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise CheckpointError(f"register_optimizer takes a torch.optim.Optimizer subclass, got {cls!r}")
    if OPTIMIZERS.get(cls.__name__, cls) is not cls:
        raise CheckpointError(f"an optimizer class named {cls.__name__!r} is already registered")
    OPTIMIZERS[cls.__name__] = cls
    return cls

_PARTS = {"model": "model", "optim": "optim", "optim_hyper": "optim", "extra": "extra"}  # prefix -> part


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns: model, optimizer (or None), ``extra``, ``tensors``, versions."""

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    extra: dict
    tensors: dict[str, torch.Tensor]
    library: dict = field(default_factory=dict)
    run: dict | None = None  # the ``run`` stamp (None: a file written before run identity)


def save_checkpoint(path, model, optimizer=None, extra: dict | None = None,
                    tensors: dict[str, torch.Tensor] | None = None, *, run: dict | None = None) -> Path:
    """Write ``model`` (optionally its optimizer, a JSON dict, tensors) to ``path`` atomically.

    A temporary file in the same folder is fsynced and renamed over ``path``; on any failure it is
    removed and an existing file at ``path`` is untouched. ``tensors`` may hold :func:`rng_state`.
    ``run`` (a JSON dict with at least ``run_id``) stamps the file with the run it belongs to.

    Raises:
        CheckpointError: the model has no spec, the optimizer class is not in :data:`OPTIMIZERS` or
            holds a parameter the model lacks, ``extra`` is not JSON-able, or the write fails.
    """
    path = Path(path)
    try:
        spec = model.spec()
    except Exception as exc:
        raise _fail(path, f"the model has no spec: {exc}", saving=True) from exc
    out = {f"model.{name}": _cpu(value) for name, value in model.state_dict().items()}
    extra = {} if extra is None else extra
    if not isinstance(extra, dict):
        raise _fail(path, f"extra must be a dict, got {type(extra).__name__}", saving=True)
    for key, value in extra.items():
        _json(value, path, f"extra key {key!r}")
    for key, value in (tensors or {}).items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise _fail(path, f"tensors must map str to Tensor, got {key!r}: {type(value).__name__}",
                        saving=True)
        out[f"extra.{key}"] = _cpu(value)
    opt_meta = None if optimizer is None else _optimizer_meta(optimizer, model, out, path)
    meta = {
        "format": FORMAT,
        "spec": _json(spec, path, "the spec"),
        "optimizer": _json(opt_meta, path, "the optimizer"),
        "extra": _json(extra, path, "extra"),
        "frozen": json.dumps([n for n, p in model.named_parameters() if not p.requires_grad]),
        "library": json.dumps(_library_versions()),
    }
    if run is not None:
        meta["run"] = _json(run, path, "the run stamp")
    _write_atomic(path, out, _seal(out, meta))
    logger.info("saved checkpoint %s (%d tensors)", path, len(out))
    return path


def _optimizer_meta(optimizer, model, out: dict, path: Path) -> dict:
    cls_name = type(optimizer).__name__
    if OPTIMIZERS.get(cls_name) is not type(optimizer):
        raise _fail(path, f"optimizer class {cls_name} is not supported ({sorted(OPTIMIZERS)})", saving=True)
    name_of = {id(p): n for n, p in model.named_parameters()}
    groups, state = [], {}
    for gi, group in enumerate(optimizer.param_groups):
        names = []
        for p in group["params"]:
            if id(p) not in name_of:
                raise _fail(path, f"optimizer group {gi} holds a parameter of shape {tuple(p.shape)} that is "
                                  f"not in the model (stale after growth?)", saving=True)
            names.append(name_of[id(p)])
        groups.append({"params": names, **_hyper_meta(group, str(gi), out, path)})
        for p, name in zip(group["params"], names):
            entry = {"tensors": [], "values": {}}
            for key, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor):
                    out[f"optim.{name}.{key}"] = _cpu(value)
                    entry["tensors"].append(key)
                else:
                    _json(value, path, f"optimizer state {key!r} of {name!r}")
                    entry["values"][key] = value
            if entry["tensors"] or entry["values"]:
                state[name] = entry
    defaults = _hyper_meta(optimizer.defaults, "defaults", out, path)
    return {"class": cls_name, "defaults": defaults, "param_groups": groups, "state": state}


def _hyper_meta(group: dict, where: str, out: dict, path: Path) -> dict:
    hyper = {}
    for key, value in group.items():
        if key in ("params", "param_names"):
            continue
        if isinstance(value, torch.Tensor):
            out[f"optim_hyper.{where}.{key}"] = _cpu(value)
            value = {"__tensor__": True}
        _json(value, path, f"optimizer hyperparameter {key!r}")
        hyper[key] = value
    return hyper


def _write_atomic(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    tmp = None
    try:
        data = _safetensors_save(tensors, metadata=meta)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with contextlib.suppress(OSError, AttributeError):  # mkstemp makes 0600: give what open() would
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
        with contextlib.suppress(OSError):  # make the rename durable (POSIX; not possible on Windows)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, CheckpointError) or not isinstance(exc, Exception):
            raise
        raise _fail(path, f"write failed: {exc}", saving=True) from exc


def load_checkpoint(path, *, device="cpu", map_front: Callable[[dict], nn.Module] | None = None
                    ) -> Checkpoint:
    """Verify and rebuild a checkpoint; the next ``optimizer.step()`` matches an uninterrupted run.

    Args:
        path: the checkpoint file.
        device: where the model, the optimizer state and the extra tensors go.
        map_front: ``map_front(front_spec) -> nn.Module`` builds the front instead of the registry
            (``graph.spec.register_front``), e.g. for a front not registered in this process.

    Raises:
        CheckpointError: missing, truncated or tampered file, wrong format, digest mismatch, a spec
            that does not match the tensors, or an optimizer that does not match the model.
    """
    path = Path(path)
    tensors, meta = _read_verified(path)
    parts: dict[str, dict[str, torch.Tensor]] = {"model": {}, "optim": {}, "extra": {}}
    for name, value in tensors.items():
        prefix, _, rest = name.partition(".")
        if prefix not in _PARTS or not rest:
            raise _fail(path, f"unexpected tensor {name!r}")
        parts[_PARTS[prefix]][name if _PARTS[prefix] == "optim" else rest] = value
    spec, opt_meta, extra, frozen, library = (
        _loads(meta, key, path) for key in ("spec", "optimizer", "extra", "frozen", "library"))
    model = _build_model(path, spec, parts["model"], map_front, frozen).to(device)
    optimizer = None  # optimizer tensors without optimizer metadata are reported as malformed
    if opt_meta is not None or parts["optim"]:
        optimizer = _build_optimizer(path, model, opt_meta, parts["optim"])
    run = _loads(meta, "run", path) if "run" in meta else None
    if run is not None and not (isinstance(run, dict) and isinstance(run.get("run_id"), str)):
        raise _fail(path, "metadata 'run' is not a run stamp (no run_id)")
    logger.info("loaded checkpoint %s (%d tensors)", path, len(tensors))
    return Checkpoint(model, optimizer, extra, {k: v.to(device) for k, v in parts["extra"].items()}, library,
                      run)


def _read_verified(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise _fail(path, "file not found (missing)") from exc
    except OSError as exc:
        raise _fail(path, f"cannot read: {exc}") from exc
    n = struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else len(data)
    if n > len(data) - 8:
        raise _fail(path, f"not a safetensors file or truncated (header {n} bytes, file {len(data)} bytes)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(path, f"header is not valid JSON (corrupt or tampered): {exc}") from exc
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _fail(path, "the header has no string metadata: not a selfexpand checkpoint (wrong format)")
    if meta.get("format") != FORMAT:
        raise _fail(path, f"wrong format {meta.get('format')!r}, expected {FORMAT!r}")
    if _meta_digest(meta) != meta.get("metadata_sha256"):
        raise _fail(path, "metadata digest mismatch or missing (metadata tampered or corrupt)")
    try:
        end = max((int(e["data_offsets"][1]) for k, e in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError) as exc:
        raise _fail(path, f"header tensor entries are malformed (tampered): {exc!r}") from exc
    if 8 + n + end > len(data):
        raise _fail(path, f"truncated: tensor data needs {8 + n + end} bytes, the file has {len(data)}")
    try:
        tensors = _safetensors_load(data)
    except Exception as exc:
        raise _fail(path, f"not a valid safetensors file (corrupt or tampered): {exc}") from exc
    if _tensor_digest(tensors) != meta.get("sha256"):
        raise _fail(path, "sha256 digest mismatch or missing (tensor data corrupt or tampered)")
    return tensors, meta


def _build_model(path: Path, spec, state: dict, map_front, frozen: list) -> nn.Module:
    try:
        if not isinstance(spec, dict):
            raise TypeError(f"spec must be a JSON object, got {type(spec).__name__}")
        front_spec = spec.get("front")
        if map_front is not None and front_spec:
            net = GrowableNet.from_spec({**spec, "front": None})
            net.front, net.front_spec = map_front(front_spec), front_spec
        else:
            net = GrowableNet.from_spec(spec)
        # assign=True keeps the saved dtypes (a float64 model stays float64); shapes are still checked
        net.load_state_dict(state, strict=True, assign=True)
        net.invalidate()
        for name in frozen:
            net.get_parameter(name).requires_grad_(False)
    except Exception as exc:
        raise _fail(path, f"spec does not match the tensors: {type(exc).__name__}: {exc}") from exc
    return net


def _build_optimizer(path: Path, model: nn.Module, meta, tensors: dict):
    named = dict(model.named_parameters())
    tensors = dict(tensors)  # entries are popped as they are used; what is left over is unexpected
    try:
        cls = OPTIMIZERS.get(meta.get("class"))
        if cls is None:
            raise _fail(path, f"unknown optimizer class {meta.get('class')!r} ({sorted(OPTIMIZERS)}; import the "
                              f"module that registers it, e.g. selfexpand.train for NaturalGradient)")
        groups, saved_groups, order = [], [], []
        for gi, group in enumerate(meta["param_groups"]):
            names = list(group["params"])
            for name in names:
                if name not in named:
                    raise _fail(path, f"optimizer names parameter {name!r} that the model does not have")
            hyper = _hyper_from(group, str(gi), tensors, path)
            groups.append({"params": [named[n] for n in names], **hyper})
            saved_groups.append({"params": list(range(len(order), len(order) + len(names))), **hyper})
            order.extend(names)
        defaults = _hyper_from(meta["defaults"], "defaults", tensors, path)
        index = {name: i for i, name in enumerate(order)}
        state = {}
        for name, entry in meta["state"].items():
            if name not in index:
                raise _fail(path, f"optimizer state names parameter {name!r} that no group holds")
            st = dict(entry["values"])
            for key in entry["tensors"]:
                st[key] = value = _take(tensors, f"optim.{name}.{key}", path)
                if value.dim() > 0 and value.shape != named[name].shape:
                    raise _fail(path, f"optimizer state {key!r} of {name!r} has shape {tuple(value.shape)}, "
                                      f"the parameter {tuple(named[name].shape)} (shape mismatch)")
            state[index[name]] = st
    except (KeyError, TypeError, AttributeError) as exc:
        raise _fail(path, f"optimizer metadata is malformed (tampered): {exc!r}") from exc
    if tensors:
        raise _fail(path, f"unexpected optimizer tensors {sorted(tensors)[:5]}")
    try:
        optimizer = cls(groups)
        optimizer.defaults.update(defaults)
        # load_state_dict applies torch's own placement policy (``step`` stays on the CPU unless capturable)
        optimizer.load_state_dict({"state": state, "param_groups": saved_groups})
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise _fail(path, f"optimizer {cls.__name__} cannot be rebuilt: {exc}") from exc
    return optimizer


def _hyper_from(group: dict, where: str, hyper_tensors: dict, path: Path) -> dict:
    hyper = {}
    for key, value in group.items():
        if key == "params":
            continue
        if isinstance(value, dict) and value.get("__tensor__"):
            value = _take(hyper_tensors, f"optim_hyper.{where}.{key}", path)
        elif isinstance(value, list):
            value = tuple(value)  # JSON turns tuples (Adam's betas) into lists
        hyper[key] = value
    return hyper


def _take(tensors: dict, key: str, path: Path) -> torch.Tensor:
    if key not in tensors:
        raise _fail(path, f"optimizer tensor {key} is missing")
    return tensors.pop(key)


def rng_state() -> dict[str, torch.Tensor]:
    """The torch global RNG states as uint8 tensors (``rng.cpu``, ``rng.cuda.<i>``), for ``tensors``."""
    out = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        out.update({f"rng.cuda.{i}": state for i, state in enumerate(torch.cuda.get_rng_state_all())})
    return out


def restore_rng_state(tensors: dict[str, torch.Tensor]) -> None:
    """Restore the states saved by :func:`rng_state`; other keys are ignored.

    Raises:
        CheckpointError: ``tensors`` holds no ``rng.cpu`` entry.
    """
    if "rng.cpu" not in tensors:
        raise CheckpointError(f"no RNG state (rng.cpu) among the checkpoint tensors {sorted(tensors)[:10]}")
    torch.set_rng_state(tensors["rng.cpu"].detach().to("cpu", torch.uint8))
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        if f"rng.cuda.{i}" in tensors:
            torch.cuda.set_rng_state(tensors[f"rng.cuda.{i}"].detach().to("cpu", torch.uint8), i)


def _fail(path: Path, problem: str, *, saving: bool = False) -> CheckpointError:
    return CheckpointError(f"{'cannot save ' if saving else ''}checkpoint {path}: {problem}")


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").clone(memory_format=torch.contiguous_format)


def _json(value: Any, path: Path, what: str) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"{what} is not JSON-able ({type(value).__name__}): {exc}", saving=True) from exc


def _loads(meta: dict[str, str], key: str, path: Path) -> Any:
    if key not in meta:
        raise _fail(path, f"metadata {key!r} is missing (corrupt or tampered)")
    try:
        return json.loads(meta[key])
    except ValueError as exc:
        raise _fail(path, f"metadata {key!r} is not valid JSON (tampered): {exc}") from exc


def _tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        head = json.dumps([name, str(t.dtype).removeprefix("torch."), list(t.shape)]).encode()
        raw = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b""
        h.update(struct.pack("<Q", len(head)) + head + struct.pack("<Q", len(raw)))
        h.update(raw)
    return h.hexdigest()


def _meta_digest(meta: dict[str, str]) -> str:
    body = {k: v for k, v in meta.items() if k != "metadata_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _seal(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> dict[str, str]:
    """``meta`` plus ``sha256`` (tensors) and ``metadata_sha256`` (everything else)."""
    meta = {**meta, "sha256": _tensor_digest(tensors)}
    meta["metadata_sha256"] = _meta_digest(meta)
    return meta


def _library_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "torch": torch.__version__}
    for dist in ("selfexpand", "safetensors", "numpy"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    return versions


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable reader sets it: put it back at once
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------- run identity
RUN_FILE = "run.json"


def short_id(run_id) -> str:
    """The first 8 characters of a run id, as messages show it."""
    return f"{str(run_id)[:8]}\u2026"


def read_run_identity(run_dir) -> dict | None:
    """A run directory's ``run.json`` (``run_id``, ``method``, ``seed``, the identity-defining
    configuration, the data fingerprint); None when it has none (written before run identity).

    Raises:
        DataError: ``run.json`` is damaged (not JSON, not an object, no ``run_id``).
    """
    path = Path(run_dir) / RUN_FILE
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DataError(f"{path}: not readable JSON ({exc}); the run's identity is unknown") from None
    if not isinstance(value, dict) or not isinstance(value.get("run_id"), str) or not value["run_id"]:
        raise DataError(f"{path}: not a run identity (a JSON object with a run_id); the run's identity is unknown")
    return value


def check_run_stamp(path, stamp: dict | None, identity: dict | None, name: str) -> None:
    """Refuse a file of a run directory (``name`` as the message names it) whose ``run`` stamp is not
    the run of ``identity`` (``run.json``; None: a run made before run identity, nothing checked).

    Raises:
        RunIdentityError: another run's file, or an unstamped file in a run that has an identity.
    """
    if identity is None:
        return
    this = f"this run {short_id(identity['run_id'])} (method {identity.get('method')}, seed {identity.get('seed')})"
    if stamp is None:
        raise RunIdentityError(f"{name} ({path}) carries no run id (written before run identity, or not by "
                               f"selfexpand), so it is not the file of {this}")
    if stamp.get("run_id") != identity["run_id"]:
        raise RunIdentityError(f"{name} ({path}) belongs to run {short_id(stamp.get('run_id'))} (method "
                               f"{stamp.get('method')}, seed {stamp.get('seed')}), not {this}")


def load_run_file(run_dir, name: str = "model.safetensors", *, device="cpu", identity: dict | None = None,
                  map_front: Callable[[dict], nn.Module] | None = None) -> Checkpoint:
    """:func:`load_checkpoint` of the file ``name`` of a run directory, refused unless it is the run's
    own (:func:`check_run_stamp`; ``identity``: the run's ``run.json`` if already read).

    Raises:
        CheckpointError: missing, damaged or tampered file; RunIdentityError: another run's file;
            DataError: a damaged ``run.json``.
    """
    run_dir = Path(run_dir)
    identity = read_run_identity(run_dir) if identity is None else identity
    ckpt = load_checkpoint(run_dir / name, device=device, map_front=map_front)
    if identity is None:
        logger.warning("%s has no %s: a run written before run identity, its files are not checked", run_dir,
                       RUN_FILE)
    check_run_stamp(run_dir / name, ckpt.run, identity, name)
    return ckpt

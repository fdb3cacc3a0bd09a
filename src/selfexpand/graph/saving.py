"""Save a ``GrowableNet`` to one safetensors file and load it back: ``net.save(path)``,
``GrowableNet.load(path)``.

The file holds every tensor of the state dict (weights, biases, masks, index buffers, ``grown`` marks,
activation and modulator parameters, front statistics) under its state-dict name, and three metadata
strings: ``format`` (:data:`FORMAT`), ``spec`` (``net.spec()`` as JSON: the structure, including
which layers carry ``grown`` marks) and ``sha256`` (a digest of the spec and of every tensor's name,
dtype, shape and bytes, checked on load). No pickle: loading never executes code. A grown network
round-trips exactly: the same structure, values, dtypes and outputs.

This is the network alone. ``selfexpand.checkpoint`` saves a network with its optimizer and training
state in the same container.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import CheckpointError, ConfigError

__all__ = ["FORMAT", "save_net", "load_net"]

FORMAT = "selfexpand.net/1"


def _digest(spec_json: str, tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256(spec_json.encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"\0{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_net(net, path) -> Path:
    """Write ``net`` to ``path`` (atomically: a temporary file in the same folder, then renamed).

    Returns:
        The path written.

    Raises:
        ConfigError: the net cannot be described by a spec (a front or activation never registered).
        CheckpointError: the file cannot be written (the message names it).
    """
    path = Path(path)
    spec_json = json.dumps(net.spec())  # key order kept: it is the order of the modules
    tensors = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in net.state_dict().items()}
    metadata = {"format": FORMAT, "spec": spec_json, "sha256": _digest(spec_json, tensors)}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except OSError as exc:
        raise CheckpointError(f"cannot write network file {path}: {exc}") from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_net(path, graph_class, *, device=None):
    """Rebuild the network saved at ``path`` as a ``graph_class`` (``GrowableNet``), on ``device``
    (default: the CPU), in training mode as any new module.

    Raises:
        CheckpointError: the file is missing, not a safetensors file, not a network file, damaged
            (digest mismatch, truncated), or its spec and tensors do not fit together; the message
            names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"network file {path} not found")
    try:
        with safe_open(str(path), framework="pt") as reader:
            metadata = reader.metadata() or {}
            tensors = {name: reader.get_tensor(name) for name in reader.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types, and OSError
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc})") from exc
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a selfexpand network file: format={metadata.get('format')!r}, "
                              f"expected {FORMAT!r} (a training checkpoint loads with selfexpand.checkpoint)")
    spec_json = metadata.get("spec", "")
    if metadata.get("sha256") != _digest(spec_json, tensors):
        raise CheckpointError(f"{path} is damaged: its contents do not match the digest written with them")
    try:
        spec = json.loads(spec_json)
        net = graph_class.from_spec(spec)
        dtypes = {t.dtype for t in tensors.values() if t.is_floating_point()}
        if len(dtypes) == 1:  # the skeleton is float32: take the saved dtype before the values
            net = net.to(dtype=dtypes.pop())
        net.load_state_dict(tensors, strict=True)
    except (ValueError, ConfigError, RuntimeError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: the network spec and tensors do not fit together "
                              f"({type(exc).__name__}: {exc})") from exc
    return net if device is None else net.to(device)

"""Will it fit? Memory estimates made before anything big is allocated.

A run, a sweep or a bench that asks for more memory than the machine has is refused with a
:class:`~selfexpand.errors.ResourceError` that gives the size asked for, the memory available and
the setting that makes it smaller, instead of filling the machine until the system kills it.

The estimates are lower bounds of what the work itself holds (the Python interpreter, torch and the
data come on top), so a refusal is never a false alarm; work refused needs at least ``FIT_FRACTION``
of the available memory. Available memory is ``MemAvailable`` of ``/proc/meminfo`` (or
``os.sysconf``), capped by the cgroup's limit when there is one; on a CUDA device, the free memory
that ``torch.cuda.mem_get_info`` reports.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .errors import ResourceError

__all__ = ["FIT_FRACTION", "OPTIMIZER_STATE", "available_memory", "check_fits", "check_start_fits",
           "format_bytes", "start_bytes"]

log = logging.getLogger("selfexpand.estimate")

#: work needing more than this fraction of the available memory is refused
FIT_FRACTION = 0.9

#: float32 values each optimizer keeps per parameter besides the weight and its gradient
OPTIMIZER_STATE = {"adam": 2, "adamw": 2, "rmsprop": 1, "sgd": 1, "gd": 0, "natural": 4}
_STATE_WORDS = {"adam": "Adam's two moments", "adamw": "AdamW's two moments", "rmsprop": "RMSprop's square average",
                "sgd": "SGD's momentum", "gd": "no optimizer state", "natural": "the natural gradient's CG vectors"}

#: bytes of a float32 value
_FLOAT = 4
#: float32 values per unit of one batch: pre-activation, activation and their gradients
_PER_UNIT = 4


def format_bytes(n: float) -> str:
    """``28.8 GB``, ``512 MB``, ``12 KB`` (powers of 1000, as the message's reader expects)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}" if n / size < 100 else f"{n / size:,.0f} {unit}"
    return f"{int(n)} bytes"


def _count(n: int) -> str:
    """``610``, ``48,000``, ``3.6e9``: a count as a reader takes it in."""
    if n < 10 ** 7:
        return f"{n:,}"
    mantissa, exponent = f"{n:.2g}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_available() -> int | None:
    """What the cgroup (a container's memory limit) leaves, when it sets a limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 1 << 60:
            return None
        return max(0, int(limit) - usage)
    return None


def available_memory(device="cpu") -> int | None:
    """Bytes the work may still take on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a
    ``torch.device``), or None when it cannot be told."""
    kind = str(device).split(":")[0]
    if kind == "cuda":
        import torch

        try:
            return int(torch.cuda.mem_get_info(torch.device(device))[0])
        except (RuntimeError, AssertionError, ValueError):
            return None
    found = [n for n in (_meminfo_available(), _cgroup_available()) if n is not None]
    return min(found) if found else None


def check_fits(nbytes: int, *, what: str, smaller: str, detail: str = "", device="cpu") -> None:
    """Refuse work needing more than ``FIT_FRACTION`` of the available memory, before it is allocated.

    Args:
        nbytes: what the work needs, in bytes (an estimate, a lower bound).
        what: the work, for the message: ``"the start network"``, ``"the sweep"``.
        smaller: the setting that makes it smaller: ``"use smaller `hidden` widths"``.
        detail: how the size comes about, put in brackets after it.
        device: where it is allocated.

    Raises:
        ResourceError: it does not fit; the message gives ``nbytes``, the available memory and ``smaller``.
    """
    available = available_memory(device)
    if available is None:
        log.debug("%s: %s needed; available memory unknown, not checked", what, format_bytes(nbytes))
        return
    if nbytes > FIT_FRACTION * available:
        where = "this machine" if str(device).split(":")[0] == "cpu" else f"device {device}"
        raise ResourceError(f"{what} needs {format_bytes(nbytes)}" + (f" ({detail})" if detail else "")
                            + f"; {where} has {format_bytes(available)} available: {smaller}")
    log.debug("%s: %s needed, %s available", what, format_bytes(nbytes), format_bytes(available))


def _widths(settings: dict, n_features: int, n_outputs: int) -> tuple[list[int], str, str]:
    """The start network's layer widths, the setting that shapes them and its value as text."""
    if settings.get("n_max") is not None and not settings.get("hidden"):
        n_max = int(settings["n_max"])
        return [n_features, n_max, n_outputs], "n_max", f"n_max={n_max}"
    hidden = [int(w) for w in (settings.get("hidden") or [])]
    return [n_features, *hidden, n_outputs], "hidden", f"hidden={hidden}"


def start_bytes(settings: dict, n_features: int, n_outputs: int, *, n_train: int | None = None) -> dict:
    """The memory the start network of ``settings`` takes while it trains.

    Parameters of the dense chain ``[n_features, *hidden, n_outputs]`` (the size methods: one hidden
    layer of ``n_max``) as float32, times the weight, its gradient and the optimizer's state (Adam:
    4 values per parameter), plus one batch's activations (``min(batch_size, n_train)`` examples,
    pre-activation, activation and their gradients per unit).

    Returns:
        ``{"bytes", "params", "activation_bytes", "detail", "smaller"}``: ``detail`` says how the size
        comes about, ``smaller`` which setting makes it smaller.
    """
    widths, key, shown = _widths(settings, int(n_features), int(n_outputs))
    params = sum((a + 1) * b for a, b in zip(widths, widths[1:]))
    optimizer = str(settings.get("optimizer") or "adam")
    values = 2 + OPTIMIZER_STATE.get(optimizer, 2)
    batch = int(settings.get("batch_size") or 1)
    if n_train is not None:
        batch = max(1, min(batch, int(n_train)))
    activation_bytes = batch * sum(widths) * _PER_UNIT * _FLOAT
    weights = params * values * _FLOAT
    state = _STATE_WORDS.get(optimizer, f"{optimizer}'s state")
    detail = (f"{shown}: {_count(params)} params, {values * _FLOAT} bytes each with gradients and {state}; "
              f"batch of {batch}: {format_bytes(activation_bytes)} of activations")
    smaller = f"use smaller `{key}` (--set {key}=...)"
    if activation_bytes > weights:
        smaller = f"use a smaller `batch_size` (--batch-size) or smaller `{key}`"
    return {"bytes": weights + activation_bytes, "params": params, "activation_bytes": activation_bytes,
            "detail": detail, "smaller": smaller}


def check_start_fits(settings: dict, n_features: int, n_outputs: int, *, device="cpu",
                     n_train: int | None = None) -> None:
    """Refuse a start network that cannot fit, before it is built (:func:`start_bytes`).

    Args:
        settings: the run's resolved settings (``hidden`` or ``n_max``, ``optimizer``, ``batch_size``).
        n_features, n_outputs: the data's input and output sizes (a fixed front's output for ``n_features``).
        device: where the network trains.
        n_train: training examples, when known (a batch is never larger).

    Raises:
        ResourceError: e.g. ``the start network needs 57.6 GB (hidden=[60000, 60000]: 3.6e+09 params,
            16 bytes each with gradients and Adam's two moments; ...); this machine has 23.1 GB
            available: use smaller `hidden` (--set hidden=...)``.
    """
    need = start_bytes(settings, n_features, n_outputs, n_train=n_train)
    check_fits(need["bytes"], what="the start network", smaller=need["smaller"], detail=need["detail"],
               device=device)

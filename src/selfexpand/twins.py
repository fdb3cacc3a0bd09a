"""Static twins (DESIGN.md glossary): a finished run's final architecture, freshly initialised, trained
for the same number of epochs with the same optimizer, data and seed; the equal-compute twin trains it
for as many epochs as fit in the grown run's FLOPs (:func:`equal_compute_epochs`)."""

from __future__ import annotations

from pathlib import Path

from .checkpoint import RUN_FILE, load_checkpoint, load_run_file
from .errors import ConfigError
from .graph import GrowableNet
from .graph.init import reinitialize
from .ops import remove_units

__all__ = ["equal_compute_epochs", "twin_model", "without_size_control"]


def equal_compute_epochs(total_flops: float, epoch_flops: float) -> int:
    """Epochs of the equal-compute twin: ``max(1, floor(total_flops / epoch_flops))``.

    The floor keeps the twin within the grown run's compute (never above it, unless one epoch is
    already more), so the twin's training FLOPs are within one of its own epochs of ``total_flops``.

    Args:
        total_flops: the grown run's ``train_flops + growth_flops``.
        epoch_flops: training FLOPs of one epoch of the final architecture (masked storage included,
            as ``train_flops`` counts it).

    Raises:
        ConfigError: ``total_flops`` negative or ``epoch_flops`` not positive.
    """
    if not total_flops >= 0:
        raise ConfigError(f"total_flops must be >= 0, got total_flops={total_flops!r}")
    if not epoch_flops > 0:
        raise ConfigError(f"epoch_flops must be > 0, got epoch_flops={epoch_flops!r}")
    return max(1, int(total_flops // epoch_flops))


def twin_model(run_dir: str | Path, seed: int) -> GrowableNet:
    """The final architecture of the run in ``run_dir`` with fresh values drawn from ``seed``; a
    size-controlled run's sized layers keep only their live units (:func:`without_size_control`).

    ``model.safetensors`` of a run directory must be the run's own (``load_run_file``); a folder
    holding a model file alone (the bench's architecture folders) is read as it is.

    Raises:
        CheckpointError: a missing or damaged model file; RunIdentityError: another run's.
    """
    run_dir = Path(run_dir)
    if (run_dir / RUN_FILE).exists() or (run_dir / "config.yaml").exists():
        source = load_run_file(run_dir, "model.safetensors").model
    else:
        source = load_checkpoint(run_dir / "model.safetensors").model
    model = without_size_control(GrowableNet.from_spec(source.spec(), source.state_dict()))
    reinitialize(model, seed)
    return model


def without_size_control(net: GrowableNet) -> GrowableNet:
    """The final architecture of a size-controlled run, for its static twin: every layer with a size
    modulator keeps only its live units (a prefix: those whose factor is above 0) and loses the
    modulator. Values are left as they are; the caller draws fresh ones.

    Raises:
        ConfigError: a sized layer ended with no live unit (the run has no static twin).
    """
    for name in net.hidden_layers():
        layer = net.layers[name]
        if layer.modulator is None or not hasattr(layer.modulator, "live_count"):
            continue
        dead = (~layer.live_units()).nonzero().flatten()
        if dead.numel() == layer.size:
            raise ConfigError(f"layer {name!r} of the run ended with no live unit, so the run has no static twin")
        if dead.numel():
            remove_units(net, name, dead)
        layer.modulator = None
    net.invalidate()
    return net

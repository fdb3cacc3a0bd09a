"""Training: the ``Trainer``, the ``GrowthContext`` strategies work with, callbacks and recorders, the
``History``, and SENN's ``NaturalGradient`` optimizer.

The names are loaded when first used (PEP 562): ``selfexpand.train.settings`` (the training settings'
declarations) imports without torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Trainer": "trainer", "FitResult": "trainer", "make_optimizer": "trainer", "OPTIMIZERS": "trainer",
    "GrowthContext": "context", "History": "history",
    "Callback": "callbacks", "LoggingCallback": "callbacks", "EarlyStopping": "callbacks",
    "InactivityRecorder": "recorders", "SizeControlRecorder": "recorders", "ProgressBar": "progress",
    "NaturalGradient": "natural_gradient", "TrainingSettings": "settings",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'selfexpand.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

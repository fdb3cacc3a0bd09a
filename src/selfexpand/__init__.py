"""selfexpand: self-expanding neural networks in PyTorch.

Networks that start small and grow units, layers and edges during training. See ``docs/guide.md``.

The public names are loaded when first used (PEP 562), so ``import selfexpand`` does not import
torch until something needs it.
"""

from __future__ import annotations

import importlib

from ._version import __version__

# public name -> the module that defines it
_EXPORTS = {
    "SelfExpandError": "errors", "ConfigError": "errors", "DataError": "errors", "GrowthError": "errors",
    "CheckpointError": "errors",
    "GrowableNet": "graph", "GrowthEvent": "ops",
    "Trigger": "strategies", "Selector": "strategies", "Initializer": "strategies", "Site": "strategies",
    "Decision": "strategies", "GrowthMethod": "strategies", "register_part": "strategies",
    "Trainer": "train", "Callback": "train", "setting": "settings",
    "load_dataset": "data", "Dataset": "data",
    "method_names": "presets", "resolve_config": "presets", "build_method": "presets",
    "register_method": "presets", "Preset": "presets",
    "RunConfig": "runs", "train_run": "runs", "resume_run": "runs", "load_run": "runuse", "predict_file": "runuse",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'selfexpand' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

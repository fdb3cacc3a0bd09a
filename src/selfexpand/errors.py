"""The exception hierarchy of selfexpand.

``SelfExpandError`` is the root; ``ConfigError`` is also a ``ValueError`` so that code catching
``ValueError`` for bad arguments keeps working. Each class carries the CLI's exit status for it
(``exit_code``: 2 for errors, 3 for a run that trained and then stopped because training went wrong);
an error raised about a run directory may carry that directory as ``run_dir`` (``None`` otherwise).
"""

from __future__ import annotations

__all__ = ["SelfExpandError", "ConfigError", "DataError", "GrowthError", "CheckpointError", "RunIdentityError",
           "RunLockedError", "ResourceError", "TrainingStopped"]


class SelfExpandError(Exception):
    """Base class of every error raised on purpose by selfexpand."""

    exit_code = 2
    run_dir = None


class ConfigError(SelfExpandError, ValueError):
    """A user-facing argument or setting breaks a rule; the message states the rule and the value."""


class DataError(SelfExpandError):
    """A dataset file or folder is missing, malformed, or unusable; the message names the file."""


class GrowthError(SelfExpandError):
    """A growth operation cannot be applied to this graph; the graph is left unchanged."""


class CheckpointError(SelfExpandError):
    """A checkpoint is truncated, tampered with, or does not match; the message names the file."""


class RunIdentityError(CheckpointError):
    """A file in a run directory is not the run's own (another run's checkpoint or model, an edited
    setting that changes the run, changed data); the message names the file and what differs."""


class RunLockedError(SelfExpandError):
    """Another live process is writing this run directory."""


class ResourceError(ConfigError):
    """What was asked for cannot fit (memory); the message gives the size and the setting that makes
    it smaller. Raised before anything is allocated."""


class TrainingStopped(SelfExpandError):
    """Training went wrong (a non-finite loss) and the run stopped; its last good checkpoint is kept,
    so ``selfexpand resume RUN --lr ...`` can continue it."""

    exit_code = 3

    def __init__(self, message: str, run_dir=None):
        super().__init__(message)
        self.run_dir = run_dir

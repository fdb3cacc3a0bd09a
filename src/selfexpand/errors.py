"""The exception hierarchy of selfexpand.

``SelfExpandError`` is the root; ``ConfigError`` is also a ``ValueError`` so that code catching
``ValueError`` for bad arguments keeps working.
"""

from __future__ import annotations

__all__ = ["SelfExpandError", "ConfigError", "DataError", "GrowthError", "CheckpointError"]


class SelfExpandError(Exception):
    """Base class of every error raised on purpose by selfexpand."""


class ConfigError(SelfExpandError, ValueError):
    """A user-facing argument or setting breaks a rule; the message states the rule and the value."""


class DataError(SelfExpandError):
    """A dataset file or folder is missing, malformed, or unusable; the message names the file."""


class GrowthError(SelfExpandError):
    """A growth operation cannot be applied to this graph; the graph is left unchanged."""


class CheckpointError(SelfExpandError):
    """A checkpoint is truncated, tampered with, or does not match; the message names the file."""

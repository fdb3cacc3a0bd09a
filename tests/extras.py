"""What a test of an optional extra does when the extra is missing: it skips with the reason, except
under ``CI=true``, where CI installs every extra and the test fails instead (as a missing dataset
does, ``tests/conftest.py``)."""

from __future__ import annotations

import os

import pytest


def under_ci() -> bool:
    """True in CI (``CI=true``), where every extra and dataset is required."""
    return os.environ.get("CI", "").strip().lower() == "true"


def missing_extra(reason: str, module_level: bool = False) -> None:
    """Skip with ``reason`` (the whole module with ``module_level``), or fail under ``CI=true``."""
    if under_ci():
        pytest.fail(f"{reason} (CI=true: every extra is required)", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)

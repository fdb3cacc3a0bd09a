"""Shared pytest fixtures.

``shared_data`` / ``shared_dataset`` locate the real datasets (``$SELFEXPAND_DATA``, else the
project's ``../shared/data``). A missing dataset skips the test, except when ``CI=true``, where it
fails: CI must run against the real files. Every test runs on one torch intra-op thread (restored
after it): the tensors here are tiny, and on a 2-core machine one thread is many times faster.
This folder goes on ``sys.path`` for the kits every folder shares (``extras``: a missing optional extra).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

_DEFAULT_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} (CI=true: real datasets are required)")
    pytest.skip(reason)


def _shared_root() -> Path:
    env = os.environ.get("SELFEXPAND_DATA")
    return Path(env).expanduser() if env else _DEFAULT_SHARED


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder holding the real datasets; skips (fails under CI=true) when it is absent."""
    root = _shared_root()
    if not root.is_dir():
        _missing(f"shared data folder {root} not found; set SELFEXPAND_DATA to run tests on real data")
    return root


@pytest.fixture(scope="session")
def shared_dataset(shared_data):
    """Factory: ``shared_dataset("mnist")`` returns the dataset's folder, or skips/fails if absent."""

    def get(folder: str) -> Path:
        path = shared_data / folder
        if not path.is_dir() or not any(path.iterdir()):
            _missing(f"dataset folder {path} not found or empty")
        return path

    return get


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

"""Fixtures of the CLI suite; puts this folder on ``sys.path`` for ``clikit``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clikit import GROW_FAST, run_ok  # noqa: E402


@pytest.fixture(scope="session")
def grown_run(tmp_path_factory) -> Path:
    """A finished edge-expansion run on digits with growth and pruning events (6 epochs)."""
    run_dir = tmp_path_factory.mktemp("grown") / "run"
    threads = torch.get_num_threads()
    try:
        run_ok("train", "--epochs", 6, "--out", run_dir, "--quiet", *GROW_FAST)
    finally:
        torch.set_num_threads(threads)
    return run_dir

"""Puts this folder on ``sys.path`` for the shared random-graph kit (``graphkit``), and runs every
test on one intra-op thread (tiny tensors on a loaded 2-core machine run far faster that way)."""

import sys
from pathlib import Path

import pytest
import torch

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

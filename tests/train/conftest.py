"""Fixtures of the training tests; shares the strategy tests' kit (``tests/strategies/edgekit.py``).

Every test runs on one intra-op thread (restored afterwards): tiny tensors on a loaded machine.
"""

import sys
from pathlib import Path

import pytest
import torch

_KIT = str(Path(__file__).resolve().parent.parent / "strategies")
if _KIT not in sys.path:
    sys.path.insert(0, _KIT)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

"""Puts ``tests/graph`` on ``sys.path`` so the ops tests share its random-graph kit (``graphkit``),
and runs every test on one intra-op thread (tiny tensors on a loaded 2-core machine run far faster)."""

import sys
from pathlib import Path

import pytest
import torch

_GRAPH_TESTS = str(Path(__file__).resolve().parent.parent / "graph")
if _GRAPH_TESTS not in sys.path:
    sys.path.insert(0, _GRAPH_TESTS)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

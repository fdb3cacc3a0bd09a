"""Puts ``tests/graph`` on ``sys.path`` so the report tests share its random-graph kit (``graphkit``)."""

import sys
from pathlib import Path

_GRAPH_TESTS = str(Path(__file__).resolve().parent.parent / "graph")
if _GRAPH_TESTS not in sys.path:
    sys.path.insert(0, _GRAPH_TESTS)

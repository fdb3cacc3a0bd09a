"""Puts ``tests/graph`` and ``tests/ops`` on ``sys.path`` so the ops tests share the random-graph kit
(``graphkit``, ``convkit``) and the optimizers of the carry-over tests (``optkit``)."""

import sys
from pathlib import Path

_GRAPH_TESTS = str(Path(__file__).resolve().parent.parent / "graph")
_OPS_TESTS = str(Path(__file__).resolve().parent)
for _folder in (_GRAPH_TESTS, _OPS_TESTS):
    if _folder not in sys.path:
        sys.path.insert(0, _folder)

"""Shares the strategy tests' kit (``tests/strategies/edgekit.py``) with the training tests."""

import sys
from pathlib import Path

_KIT = str(Path(__file__).resolve().parent.parent / "strategies")
if _KIT not in sys.path:
    sys.path.insert(0, _KIT)

"""Helper parts: work a method's main parts share (edge statistics, eps-edge pruning, start values)."""

from .edge_pruning import EpsEdgePruner
from .edge_statistics import AGGREGATIONS, METRICS, EdgeStatistics
from .start_values import NonNegativeBiases

__all__ = ["EdgeStatistics", "EpsEdgePruner", "NonNegativeBiases", "METRICS", "AGGREGATIONS"]

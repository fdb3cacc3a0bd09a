"""WHERE to grow: the built-in selectors (importing this package registers them)."""

from .edge_significance import EdgeSignificanceSelector
from .fixed_units import AllLayersSelector, RoundRobinSelector
from .natural_expansion import NaturalExpansionSelector
from .steepest_voting import SteepestVotingSelector

__all__ = ["EdgeSignificanceSelector", "AllLayersSelector", "RoundRobinSelector", "NaturalExpansionSelector",
           "SteepestVotingSelector"]

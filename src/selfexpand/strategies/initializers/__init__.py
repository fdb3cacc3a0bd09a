"""HOW to grow: the built-in initializers (importing this package registers them)."""

from .edge_split import EdgeSplitInitializer
from .firefly import FireflyInitializer
from .gradmax import GradMaxInitializer
from .natural_expansion import NaturalExpansionInitializer
from .net2net import Net2NetDeeperInitializer, Net2NetWiderInitializer
from .new_units import RandomUnitsInitializer, ZeroUnitsInitializer
from .shared_weights import SharedWeightsExtender

__all__ = ["EdgeSplitInitializer", "FireflyInitializer", "GradMaxInitializer", "NaturalExpansionInitializer",
           "Net2NetDeeperInitializer", "Net2NetWiderInitializer", "RandomUnitsInitializer",
           "ZeroUnitsInitializer", "SharedWeightsExtender"]

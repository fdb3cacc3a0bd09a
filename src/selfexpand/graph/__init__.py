"""The growable network: layers, connections, activations, unit modulators, spec, counts, export."""

from .activations import make_activation, register_activation
from .conv import ConvConnection, ConvLayer
from .export import ExportedGraph
from .fronts import ConvFront, front_for  # registers the fronts conv and conv-small
from .modulators import GateModulator, UnitModulator, register_modulator
from .network import GrowableNet
from .parts import Connection, Layer
from .rational import RationalActivation  # registers the activation rational (SENN)
from .size_modulators import ControllerMaskModulator, SizeWeightModulator  # registers them for specs
from .spec import register_front

__all__ = [
    "GrowableNet", "Layer", "Connection", "UnitModulator", "GateModulator", "ExportedGraph",
    "make_activation", "register_activation", "register_modulator", "register_front",
    "ConvFront", "front_for", "ConvLayer", "ConvConnection", "RationalActivation", "SizeWeightModulator", "ControllerMaskModulator",
]

"""Named strategy parts, so that one part of a method can be swapped from the command line.

``selfexpand train --method swe --initializer gradmax`` keeps SWE's trigger and selector and grows
with GradMax. Each part has a builder from the resolved settings and its own default settings, which
join the method's row when the part is chosen (so ``--set epsilon=0`` works then). A selector says
whether it chooses units or edges, an initializer which of the two it grows: a mismatch is refused.
The choice is stored in the resolved settings (``trigger``, ``selector``, ``initializer``), so a
resumed run rebuilds the same method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .errors import ConfigError
from .strategies.edge_pruning import EpsEdgePruner
from .strategies.edge_statistics import EdgeStatistics
from .strategies.initializers.edge_split import EdgeSplitInitializer
from .strategies.initializers.firefly import FireflyInitializer
from .strategies.initializers.gradmax import GradMaxInitializer
from .strategies.initializers.net2net import Net2NetDeeperInitializer, Net2NetWiderInitializer
from .strategies.initializers.new_units import RandomUnitsInitializer, ZeroUnitsInitializer
from .strategies.initializers.shared_weights import SharedWeightsExtender
from .strategies.selectors.edge_significance import EdgeSignificanceSelector
from .strategies.selectors.fixed_units import AllLayersSelector, RoundRobinSelector
from .strategies.selectors.steepest_voting import SteepestVotingSelector
from .strategies.triggers.interval import IntervalTrigger
from .strategies.triggers.plateau import PlateauTrigger
from .strategies.triggers.rounds import REFERENCE_SCHEDULE, RoundsTrigger

__all__ = ["PARTS", "PART_KINDS", "part_defaults", "swap_parts"]

PART_KINDS = ("trigger", "selector", "initializer")


@dataclass
class Part:
    """``build(cfg) -> (part, extras)``; ``defaults``: its settings; ``grows``: units or edges."""

    build: Callable
    defaults: dict = field(default_factory=dict)
    grows: str = "units"


_PLATEAU = dict(plateau_threshold=0.01, min_gap=4, window=3, prune_after=2)
_ROUNDS = dict(rounds=3, schedule=list(REFERENCE_SCHEDULE), patience=20, final_patience=30, max_round_epochs=8,
               monitor="val_loss")
_SVOD = dict(units=36, candidates_per_unit=2, init_scale=0.01, copy_lr=1e-3, copy_momentum=0.1, copy_alpha=0.9)
_EDGE_SELECT = dict(metric="abs_grad", aggregation="mean", tau=0.3, max_new=32, signed="auto", tau_prune=0.02)


def _edge_selector(cfg):
    stats = EdgeStatistics(cfg["metric"], cfg["aggregation"])
    return (EdgeSignificanceSelector(stats, cfg["tau"], cfg["max_new"], cfg["signed"]),
            [stats, EpsEdgePruner(stats, cfg["tau_prune"], cfg.get("prune_after", 2))])


PARTS: dict[str, dict[str, Part]] = {
    "trigger": {
        "plateau": Part(lambda c: (PlateauTrigger(c["plateau_threshold"], c["min_gap"], c["window"],
                                                  c["prune_after"]), []), _PLATEAU),
        "rounds": Part(lambda c: (RoundsTrigger(c["rounds"], schedule=c["schedule"], patience=c["patience"],
                                                final_patience=c["final_patience"],
                                                max_round_epochs=c["max_round_epochs"], monitor=c["monitor"]), []),
                       _ROUNDS),
        "interval": Part(lambda c: (IntervalTrigger(c["every"], times=c["times"]), []), dict(every=1, times=11)),
    },
    "selector": {
        "edge-significance": Part(_edge_selector, _EDGE_SELECT, "edges"),
        "svod": Part(lambda c: (SteepestVotingSelector(c["units"], candidates_per_unit=c["candidates_per_unit"],
                                                       init_scale=c["init_scale"], copy_lr=c["copy_lr"],
                                                       copy_momentum=c["copy_momentum"],
                                                       copy_alpha=c["copy_alpha"]), []), _SVOD),
        "all-layers": Part(lambda c: (AllLayersSelector(c["units"]), []), dict(units=6)),
        "round-robin": Part(lambda c: (RoundRobinSelector(c["units"]), []), dict(units=6)),
    },
    "initializer": {
        "edge-split": Part(lambda c: (EdgeSplitInitializer(c["eps"], c["signed"]), []),
                           dict(eps=1e-8, signed="auto"), "edges"),
        "swe": Part(lambda c: (SharedWeightsExtender(c["donation_std"], donation_lr=c["donation_lr"],
                                                     new_bias=c["new_bias"]), []),
                    dict(donation_std=1e-4, donation_lr="per_sqrt_unit", new_bias="median")),
        "random": Part(lambda c: (RandomUnitsInitializer(), [])),
        "zero": Part(lambda c: (ZeroUnitsInitializer(), [])),
        "net2net": Part(lambda c: (Net2NetWiderInitializer(c["noise"]), []), dict(noise=1e-3)),
        "net2net-deeper": Part(lambda c: (Net2NetDeeperInitializer(), [])),
        "gradmax": Part(lambda c: (GradMaxInitializer(c["epsilon"]), []), dict(epsilon=1e-3)),
        "firefly": Part(lambda c: (FireflyInitializer(c["candidates_per_unit"], eps=c["eps"], steps=c["steps"],
                                                      splits=c["splits"]), []),
                        dict(candidates_per_unit=4, eps=1e-2, steps=10, splits=True)),
    },
}

# what the methods' own parts grow, for the compatibility check of a swap
_OWN_GROWS = {"edge": "edges", "edge-reference": "edges"}


def part_defaults(choices: dict) -> dict:
    """The settings the chosen parts need, for the keys a method's row lacks.

    Raises:
        ConfigError: an unknown part name (the message lists the known ones).
    """
    out = {}
    for kind in PART_KINDS:
        name = choices.get(kind)
        if name is None:
            continue
        if name not in PARTS[kind]:
            raise ConfigError(f"{kind} must be one of {sorted(PARTS[kind])}, got {kind}={name!r}")
        out.update(PARTS[kind][name].defaults)
    return out


def swap_parts(method_name: str, method, cfg: dict):
    """Replace the parts of ``method`` that ``cfg`` names (``trigger``, ``selector``, ``initializer``).

    Raises:
        ConfigError: an unknown name, or a selector and an initializer that grow different things.
    """
    chosen = {k: cfg.get(k) for k in PART_KINDS if cfg.get(k) is not None}
    if not chosen:
        return method
    part_defaults(chosen)  # validates the names
    own = _OWN_GROWS.get(method_name, "units")
    grows = {kind: PARTS[kind][chosen[kind]].grows if kind in chosen else own for kind in ("selector", "initializer")}
    if grows["selector"] != grows["initializer"]:
        raise ConfigError(f"the selector chooses {grows['selector']} but the initializer grows {grows['initializer']}; "
                          f"pick parts that match (selector {cfg.get('selector')!r}, initializer {cfg.get('initializer')!r})")
    for kind, name in chosen.items():
        part, extras = PARTS[kind][name].build(cfg)
        setattr(method, kind, part)
        if kind == "selector":  # the old selector's helpers (edge statistics, pruning) go with it
            method.extras = [e for e in method.extras if not isinstance(e, (EdgeStatistics, EpsEdgePruner))]
        method.extras += extras
    return method

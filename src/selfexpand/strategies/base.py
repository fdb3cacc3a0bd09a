"""The three strategy bases (WHEN, WHERE, HOW), helper parts, and what they exchange.

A published method is one ``Trigger``, one ``Selector`` and one ``Initializer`` plus optional helper
parts (a :class:`~selfexpand.strategies.method.GrowthMethod`). Every part watches training through
the hooks of :class:`~selfexpand.hooks.Hooks` (the same vocabulary as callbacks); a part declares
its settings as dataclass fields made with :func:`~selfexpand.settings.setting`, and is registered
by name (:func:`~selfexpand.strategies.registry.register_part`) so a run names it in its
configuration and ``resume`` rebuilds it. Anything that keeps state implements ``state_dict`` /
``load_state_dict`` (JSON-able; ``state_tensors`` for tensors) so a resumed run continues exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..hooks import Hooks
from ..settings import Configurable

__all__ = ["Decision", "Site", "GrowthPart", "Trigger", "Selector", "Initializer", "GROWS"]

#: What a selector chooses and an initializer grows: a selector and an initializer must agree.
#: ``units``: units of hidden layers; ``edges``: edges to split; ``units+layers``: SENN's width and
#: depth sites, which carry the selector's proposals.
GROWS = ("units", "edges", "units+layers")


@dataclass
class Decision:
    """A trigger's answer: grow or not, and why (logged and written to the history)."""

    grow: bool
    reason: str = ""
    amount: int | None = None  # how many units in total, when the trigger decides it (rounds)


@dataclass
class Site:
    """Where to grow and how much.

    Attributes:
        layer: the layer (or connection) concerned.
        n_units: how many units to add (width growth).
        edges: edges to split, ``{connection: (rows, cols)}`` (edge expansion).
        proposal: initial values a selector already searched for (SENN, Firefly, GradMax).
        score: the selector's score for this site, for the record.
    """

    layer: str = ""
    n_units: int = 0
    edges: dict | None = None
    proposal: dict | None = None
    score: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


class GrowthPart(Hooks, Configurable):
    """A part of a growth method: hooks, declared settings, state.

    Class attributes:
        kind: ``trigger``, ``selector``, ``initializer`` or ``helper``.
        name: the registered name (``plateau``); empty for a part that is not registered.
    """

    kind: ClassVar[str] = "helper"
    name: ClassVar[str] = ""

    def helpers(self) -> list["GrowthPart"]:
        """Parts this part brings along and shares its work with (the edge selector's statistics and
        pruning); the trainer calls their hooks before this part's."""
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def state_tensors(self) -> dict:
        """Tensor state too large for JSON (e.g. the best weights of a round), by name."""
        return {}

    def load_state_tensors(self, tensors: dict) -> None:
        pass


class Trigger(GrowthPart):
    """WHEN: decide after each epoch whether to grow. The trainer asks :meth:`decide`, which keeps
    the run's budget: past ``grow_until`` (``ctx.growth_open`` false) a wish to grow is refused, but
    :meth:`should_grow` is still asked, so a trigger that also paces training (rounds) keeps pacing."""

    kind: ClassVar[str] = "trigger"

    def should_grow(self, ctx) -> Decision:  # pragma: no cover - abstract
        raise NotImplementedError

    def decide(self, ctx) -> Decision:
        """:meth:`should_grow`, within the run's budget."""
        decision = self.should_grow(ctx)
        if decision.grow and not getattr(ctx, "growth_open", True):
            return Decision(False, f"{decision.reason}; no growth: past grow_until "
                                   f"({ctx.grow_until:g} of {ctx.epochs_total} epochs)")
        return decision


class Selector(GrowthPart):
    """WHERE: choose the sites (layers, edges, amounts, optional proposals). ``grows``: what its
    sites ask for (one of :data:`GROWS`)."""

    kind: ClassVar[str] = "selector"
    grows: ClassVar[str] = "units"

    def select(self, ctx) -> list[Site]:  # pragma: no cover - abstract
        raise NotImplementedError


class Initializer(GrowthPart):
    """HOW: change the graph at the chosen sites through ``selfexpand.ops``. ``grows``: the sites
    it can grow (one of :data:`GROWS`)."""

    kind: ClassVar[str] = "initializer"
    grows: ClassVar[str] = "units"

    def grow(self, ctx, sites: list[Site]) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

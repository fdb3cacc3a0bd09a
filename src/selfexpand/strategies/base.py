"""The three strategy bases (WHEN, WHERE, HOW) and what they exchange.

A published method is a preset of one ``Trigger``, one ``Selector`` and one ``Initializer``
(``methods.py``), plus optional helper parts (statistics, pruning). Every part may also watch training
through the hooks of :class:`GrowthPart` (``on_epoch_begin``, ``on_batch_end``, ``on_epoch_end``);
``on_epoch_end`` may return growth events (pruning does). Anything that keeps state implements
``state_dict`` / ``load_state_dict`` (JSON-able) so a resumed run continues exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Decision", "Site", "GrowthPart", "Trigger", "Selector", "Initializer"]


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


class GrowthPart:
    """Hooks every strategy part may use; all default to doing nothing."""

    def on_train_begin(self, ctx) -> None:
        pass

    def on_epoch_begin(self, ctx) -> None:
        pass

    def on_batch_end(self, ctx) -> None:
        """Called after ``backward`` and ``optimizer.step``; gradients are still in ``.grad``."""

    def on_epoch_end(self, ctx) -> list:
        """Called after evaluation, before the trigger; may return growth events (e.g. pruning)."""
        return []

    def on_grow_end(self, ctx, events: list) -> None:
        pass

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
    """WHEN: decide after each epoch whether to grow."""

    def should_grow(self, ctx) -> Decision:  # pragma: no cover - abstract
        raise NotImplementedError


class Selector(GrowthPart):
    """WHERE: choose the sites (layers, edges, amounts, optional proposals)."""

    def select(self, ctx) -> list[Site]:  # pragma: no cover - abstract
        raise NotImplementedError


class Initializer(GrowthPart):
    """HOW: change the graph at the chosen sites through ``selfexpand.ops``."""

    def grow(self, ctx, sites: list[Site]) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

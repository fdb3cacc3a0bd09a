"""``GrowthMethod``: a trigger, a selector, an initializer and helper parts, as the trainer runs them."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .base import GrowthPart, Initializer, Selector, Trigger

__all__ = ["GrowthMethod"]


@dataclass
class GrowthMethod:
    """A method: trigger (WHEN), selector (WHERE), initializer (HOW), and helper parts.

    ``parts()`` lists every part in the order the trainer calls their hooks: the extras, each
    part's own helpers, then trigger, selector and initializer. Part state is saved by that position.
    """

    name: str
    trigger: Trigger | None = None
    selector: Selector | None = None
    initializer: Initializer | None = None
    extras: list[GrowthPart] = field(default_factory=list)

    def parts(self) -> list[GrowthPart]:
        main = [p for p in (self.trigger, self.selector, self.initializer) if p is not None]
        helpers = [h for p in (*self.extras, *main) for h in p.helpers()]
        return [*helpers, *self.extras, *main]

    def state_dict(self) -> dict:
        return {str(i): p.state_dict() for i, p in enumerate(self.parts())}

    def load_state_dict(self, state: dict) -> None:
        for i, part in enumerate(self.parts()):
            part.load_state_dict(state.get(str(i), {}))

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The parts' tensor state, keyed ``method.<part index>.<name>`` (checkpoint tensors)."""
        return {f"method.{i}.{k}": v for i, p in enumerate(self.parts()) for k, v in p.state_tensors().items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for i, part in enumerate(self.parts()):
            prefix = f"method.{i}."
            part.load_state_tensors({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})

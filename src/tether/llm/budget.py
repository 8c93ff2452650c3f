"""A model's context budget: its window and the fraction of it that triggers elision and
compaction (``chatd/context.py``). Attached to a built model by ``llm/models.py``."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic_ai.models import Model


@dataclass(frozen=True)
class Budget:
    """A model's context window and the fraction of it that triggers elision/compaction."""

    window: int
    threshold: float = 0.7

    @property
    def limit(self) -> int:
        return int(self.window * self.threshold)


_ATTR = "_tether_budget"


def attach_budget(model: Model, budget: Budget | None) -> Model:
    """Remember the budget of a built model (``llm/models.py``; tests attach their own)."""
    if budget is not None:
        setattr(model, _ATTR, budget)  # models are unhashable dataclasses: no weak map
    return model


def budget_of(model: Model) -> Budget | None:
    found = getattr(model, _ATTR, None)
    if isinstance(found, Budget):
        return found
    cfg = getattr(model, "cfg", None)  # ProviderModel
    window = getattr(cfg, "context_window", None)
    if window:
        return Budget(window, float(getattr(cfg, "compaction_threshold", 0.7)))
    return None

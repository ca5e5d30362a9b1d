"""RoundWindow: the classic behaviour — the system prompt plus the last n rounds."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..history import History
from .base import Budget, Context, assemble, fit_start, limit_for

__all__ = ["RoundWindow"]


@dataclass(frozen=True, slots=True)
class RoundWindow:
    """Keep the last ``rounds`` rounds (fewer if they do not fit the budget)."""

    rounds: int = 10
    name: str = "window"

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise UsageError(f"RoundWindow needs at least one round, got {self.rounds}")

    def select(self, history: History, budget: Budget) -> Context:
        start = max(0, len(history.rounds) - self.rounds)
        start = fit_start(history, limit_for(history, budget), start)
        return assemble(history, start, self.name)

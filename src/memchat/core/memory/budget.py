"""TokenBudget and CacheAware: trim whole rounds from the front to fit a token budget."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UsageError
from ..history import History
from .base import Budget, Context, assemble, fit_start, limit_for

__all__ = ["CacheAware", "TokenBudget"]


@dataclass(frozen=True, slots=True)
class TokenBudget:
    """System prompt and pinned rounds always; then the newest whole rounds that fit.

    Drops the oldest round as soon as the budget is exceeded, so the prompt's front changes on
    almost every turn once the window is full (bad for prompt caches; see CacheAware).
    """

    name: str = "budget"

    def select(self, history: History, budget: Budget) -> Context:
        return assemble(history, fit_start(history, limit_for(history, budget)), self.name)


@dataclass(frozen=True, slots=True)
class CacheAware:
    """Trim in big chunks so the prompt prefix stays identical for many turns.

    While the rounds fit under ``high`` x the budget nothing is dropped. Past it, whole rounds are
    dropped from the front down to about ``low`` x the budget. The cut points sit on a fixed grid
    of the conversation's cumulative token count, so the choice is a pure function of the history
    and the budget: the same cut is chosen on every turn until the history has grown by another
    (high - low) x budget tokens. The grid is found by bisection, O(log n).
    """

    high: float = 1.0
    low: float = 0.6
    name: str = "cache"

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high <= 1:
            raise UsageError(f"need 0 < low < high <= 1, got low={self.low} high={self.high}")

    def select(self, history: History, budget: Budget) -> Context:
        limit = limit_for(history, budget)
        pinned_total = sum(history.round_tokens(i) for i in history.pinned_rounds)
        room = max(0, limit - pinned_total)
        total = history.span_tokens(0)
        high = math.floor(self.high * room)
        chunk = max(1, math.floor((self.high - self.low) * room))
        grid = 0
        if total > high:
            steps = math.ceil((total - high) / chunk)
            grid = min(history.first_round_at(steps * chunk), len(history.rounds) - 1)
        # the smallest start that fits; the grid cut is used when it keeps less than that
        start = max(fit_start(history, limit), grid)
        return assemble(history, start, self.name)

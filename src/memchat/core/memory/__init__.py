"""Memory strategies: pure functions of (history, budget) -> Context."""

from .base import Budget, Context, MemoryStrategy, Recalled
from .budget import CacheAware, TokenBudget
from .window import RoundWindow

__all__ = [
    "Budget",
    "CacheAware",
    "Context",
    "MemoryStrategy",
    "Recalled",
    "RoundWindow",
    "TokenBudget",
]

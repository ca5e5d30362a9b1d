"""Memory strategies: pure functions of (history, budget) -> Context."""

from .base import Budget, Context, MemoryStrategy, Recalled
from .budget import CacheAware, TokenBudget
from .recall import RecallMemory, Retriever, RoundIndex
from .summary import Summarize, SummaryMemory
from .window import RoundWindow

__all__ = [
    "Budget",
    "CacheAware",
    "Context",
    "MemoryStrategy",
    "RecallMemory",
    "Recalled",
    "Retriever",
    "RoundIndex",
    "RoundWindow",
    "Summarize",
    "SummaryMemory",
    "TokenBudget",
]

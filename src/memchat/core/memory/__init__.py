"""Memory strategies: pure functions of (history, budget) -> Context."""

from .base import (
    RECALL_BLOCK_ID,
    Budget,
    Context,
    Explained,
    MemoryStrategy,
    Recalled,
    Status,
    default_reserve,
)
from .budget import CacheAware, TokenBudget
from .recall import RecallMemory, Retriever, RoundIndex
from .summary import Summarize, SummaryMemory
from .window import RoundWindow

__all__ = [
    "RECALL_BLOCK_ID",
    "Budget",
    "CacheAware",
    "Context",
    "Explained",
    "MemoryStrategy",
    "RecallMemory",
    "Recalled",
    "Retriever",
    "RoundIndex",
    "RoundWindow",
    "Status",
    "Summarize",
    "SummaryMemory",
    "TokenBudget",
    "default_reserve",
]

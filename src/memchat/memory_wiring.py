"""Long-term memory strategies for a session: summary, recall and both ("hybrid").

Factories for the strategy registry (``memchat.strategies``). They take the registry's keyword
options and ignore the rest. The strategies are pure (``memchat.core.memory``); what they need
from outside (the recall index) is built here, so the core never imports numpy or a model.
The session keeps the index in sync and writes the summary with its ``summarize`` callable
(the chat backend unless another is given).
"""

from __future__ import annotations

from typing import Any

from .core.memory import CacheAware, MemoryStrategy
from .core.memory.recall import RecallMemory
from .core.memory.summary import SummaryMemory

__all__ = [
    "MEMORY_STRATEGIES",
    "hybrid_strategy",
    "recall_strategy",
    "summary_strategy",
]

MEMORY_STRATEGIES = ("summary", "recall", "recall-bm25", "recall-embed", "hybrid")


def _window(high: float = 1.0, low: float = 0.6) -> MemoryStrategy:
    return CacheAware(high, low)


def summary_strategy(
    *, summary_share: float = 0.25, summary_trigger: float = 0.2, **options: Any
) -> SummaryMemory:
    """The cache-aware window plus a running summary of what it dropped."""
    return SummaryMemory(_window(**_cache_options(options)), None, summary_share, summary_trigger)


def recall_strategy(
    *,
    retrieval: str = "hybrid",
    recall_share: float = 0.3,
    recall_k: int = 10,
    embedder: Any = None,
    **options: Any,
) -> RecallMemory:
    """The cache-aware window plus old rounds recalled for each new message."""
    from .retrieval import ConversationIndex  # numpy & co. load only when recall is used

    index = ConversationIndex(retrieval, embedder=embedder)
    return RecallMemory(index, _window(**_cache_options(options)), recall_share, recall_k)


def recall_bm25_strategy(**options: Any) -> RecallMemory:
    options.pop("retrieval", None)
    return recall_strategy(retrieval="bm25", **options)


def recall_embed_strategy(**options: Any) -> RecallMemory:
    options.pop("retrieval", None)
    return recall_strategy(retrieval="embed", **options)


def hybrid_strategy(
    *,
    retrieval: str = "hybrid",
    recall_share: float = 0.3,
    recall_k: int = 10,
    summary_share: float = 0.2,
    summary_trigger: float = 0.2,
    embedder: Any = None,
    **options: Any,
) -> RecallMemory:
    """Both memories: summary right after the system prompt, recalled rounds late."""
    inner = summary_strategy(
        summary_share=summary_share, summary_trigger=summary_trigger, **options
    )
    recall = recall_strategy(
        retrieval=retrieval, recall_share=recall_share, recall_k=recall_k, embedder=embedder
    )
    return RecallMemory(recall.retriever, inner, recall_share, recall_k, name="hybrid")


def _cache_options(options: dict[str, Any]) -> dict[str, float]:
    return {key: float(options[key]) for key in ("high", "low") if options.get(key) is not None}

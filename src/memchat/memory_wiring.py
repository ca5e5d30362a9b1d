"""Long-term memory strategies for a session: summary, recall and both ("hybrid").

Factories for the strategy registry (``memchat.strategies``). They take the registry's keyword
options and ignore the rest. The strategies are pure (``memchat.core.memory``); what they need
from outside (the recall index) is built here, so the core never imports numpy or a model.
The session keeps the index in sync and writes the summary with its ``summarize`` callable
(the chat backend unless another is given).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .core.memory import CacheAware, MemoryStrategy
from .core.memory.recall import RecallMemory
from .core.memory.summary import SummaryMemory

__all__ = [
    "LOCAL_RECALL",
    "hybrid_strategy",
    "recall_strategy",
    "summary_strategy",
]

# tokens of recall block on the embedded model: read in about the time 512 took on the shipped
# Q4_1 weights, now that they run as Q8_0 (docs/benchmarks.md, embedded (f), (g))
LOCAL_RECALL = 768


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
    recall_share: float = 0.8,
    recall_k: int = 200,
    embedder: Any = None,
    **options: Any,
) -> RecallMemory:
    """A small cache-aware recent window; old messages recalled for each new one fill the rest."""
    from .retrieval import ConversationIndex  # numpy & co. load only when recall is used

    index = ConversationIndex(retrieval, embedder=embedder)
    return RecallMemory(index, _window(**_cache_options(options)), recall_share, recall_k)


def recall_local_strategy(**options: Any) -> RecallMemory:
    """Recall sized for the embedded model, whose CPU reads every recalled token each turn.

    Only a message that asks something recalls, and the block holds at most ``LOCAL_RECALL``
    tokens; small talk reads just the new message, as with the cache-aware window.
    """
    made = recall_strategy(**options)
    return replace(made, name="recall-local", most=LOCAL_RECALL, asked_only=True)


def recall_bm25_strategy(**options: Any) -> RecallMemory:
    options.pop("retrieval", None)
    return recall_strategy(retrieval="bm25", **options)


def recall_embed_strategy(**options: Any) -> RecallMemory:
    options.pop("retrieval", None)
    return recall_strategy(retrieval="embed", **options)


def hybrid_strategy(
    *,
    retrieval: str = "hybrid",
    recall_share: float = 0.6,
    recall_k: int = 200,
    summary_share: float = 0.3,
    summary_trigger: float = 0.2,
    embedder: Any = None,
    **options: Any,
) -> RecallMemory:
    """Both memories: summary right after the system prompt, recalled messages late."""
    inner = summary_strategy(
        summary_share=summary_share, summary_trigger=summary_trigger, **options
    )
    recall = recall_strategy(
        retrieval=retrieval, recall_share=recall_share, recall_k=recall_k, embedder=embedder
    )
    return RecallMemory(recall.retriever, inner, recall_share, recall_k, name="hybrid")


def _cache_options(options: dict[str, Any]) -> dict[str, float]:
    return {key: float(options[key]) for key in ("high", "low") if options.get(key) is not None}

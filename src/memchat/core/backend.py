"""The backend seam: one method that streams chunks, usage on the last one."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Protocol, runtime_checkable

from .messages import Message
from .tokens import TokenCounter

__all__ = ["ChatBackend", "Chunk", "GenerationParams", "Usage"]


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Sampling settings; ``cache_key`` names the conversation so a backend can keep its cache."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    cache_key: str | None = None

    def merge(self, overrides: GenerationParams | None) -> GenerationParams:
        """These params with every field that ``overrides`` sets (not None, a non-empty
        ``stop``) taken from it: a request's own settings over a session's."""
        if overrides is None:
            return self
        changes = {
            f.name: getattr(overrides, f.name)
            for f in fields(overrides)
            if getattr(overrides, f.name) not in (None, ())
        }
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one call; ``cached_tokens`` is the prompt share served from a cache."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of the reply. The last chunk carries ``finish_reason`` and ``usage``.

    ``status`` is a note on progress before the text, for the user to read while they wait
    ("rate limited (429) — retrying in 3 s"); such a chunk has no text.
    """

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    status: str | None = None


@runtime_checkable
class ChatBackend(Protocol):
    """A model. ``stream`` must raise only memchat errors and release resources when closed."""

    @property
    def model(self) -> str: ...

    @property
    def context_window(self) -> int | None: ...

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Chunk]: ...

    def token_counter(self) -> TokenCounter: ...


@runtime_checkable
class ReadsAhead(Protocol):
    """A backend that can read text in idle time so that a later prompt holding it costs less.

    The embedded model keeps each text's KV cells and splices them in when a prompt holds the
    exact text (``LlamaCppBackend.precompute``); a session hands it the recall-block lines of
    every new round after the turn, and the context it just sent plus the reply (``prefill``),
    so the next prompt starts from the cache. Both return the tokens read.
    """

    def precompute(self, texts: Sequence[str], *, after: str = "") -> int: ...

    def prefill(
        self, messages: Sequence[Message], params: GenerationParams | None = None
    ) -> int: ...

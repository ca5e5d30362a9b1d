"""Token counting seam: a counter counts text; per-message counts are cached on the message."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .messages import Message

__all__ = ["ApproxCounter", "TokenCounter", "message_tokens", "prompt_tokens"]


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens for one model.

    ``per_message`` is the fixed cost of wrapping one message in the chat format (role markers),
    ``per_reply`` the cost of priming the reply; ``exact`` is False for estimates.
    """

    @property
    def name(self) -> str: ...

    @property
    def exact(self) -> bool: ...

    @property
    def per_message(self) -> int: ...

    @property
    def per_reply(self) -> int: ...

    def count(self, text: str) -> int: ...


@dataclass(frozen=True, slots=True)
class ApproxCounter:
    """An estimate of about four characters per token; flagged as not exact."""

    name: str = "approx"
    exact: bool = False
    per_message: int = 4
    per_reply: int = 3
    chars_per_token: float = 4.0

    def count(self, text: str) -> int:
        return math.ceil(len(text) / self.chars_per_token)


def message_tokens(message: Message, counter: TokenCounter) -> int:
    """The message's tokens including overhead; counted once, then read from the cache."""
    if message.tokens is None:
        message.tokens = counter.count(message.content) + counter.per_message
    return message.tokens


def prompt_tokens(messages: Iterable[Message], counter: TokenCounter) -> int:
    """Tokens of a whole prompt: each message plus the reply priming."""
    return sum(message_tokens(m, counter) for m in messages) + counter.per_reply

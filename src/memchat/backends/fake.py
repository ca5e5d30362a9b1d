"""Public fakes for tests, docs and demos: deterministic, offline, recording what they got."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from ..core.backend import Chunk, GenerationParams, Usage
from ..core.errors import MemchatError
from ..core.messages import Message
from ..core.tokens import ApproxCounter, TokenCounter, prompt_tokens

__all__ = ["EchoBackend", "ReadAheadBackend", "ScriptedBackend"]

Reply = str | MemchatError | Callable[[Sequence[Message]], str]


@dataclass
class ScriptedBackend:
    """Replies from a script, in order; an exception in the script is raised instead.

    ``calls`` records the messages of every call. ``chunk_size`` splits replies into chunks of
    that many characters; ``fail_after`` raises an exception after that many chunks (a stream cut
    mid-way). ``delay`` sleeps between chunks (for stop-button and speed tests).
    """

    replies: list[Reply] = field(default_factory=list)
    model: str = "scripted"
    context_window: int | None = 4096
    chunk_size: int = 4
    delay: float = 0.0
    default: str = "ok"
    counter: TokenCounter = field(default_factory=ApproxCounter)
    calls: list[list[Message]] = field(default_factory=list)
    params: list[GenerationParams] = field(default_factory=list)
    fail_after: tuple[int, MemchatError] | None = None

    def enqueue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def token_counter(self) -> TokenCounter:
        return self.counter

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Chunk]:
        self.calls.append(list(messages))
        self.params.append(params)
        reply = self.replies.pop(0) if self.replies else self.default
        if isinstance(reply, MemchatError):
            raise reply
        text = reply(messages) if callable(reply) else reply
        yield from self._chunks(text)
        usage = Usage(prompt_tokens(messages, self.counter), self.counter.count(text))
        yield Chunk("", "stop", usage)

    def _chunks(self, text: str) -> Iterable[Chunk]:
        step = max(1, self.chunk_size)
        for n, i in enumerate(range(0, len(text), step)):
            if self.fail_after is not None and n == self.fail_after[0]:
                raise self.fail_after[1]
            if self.delay:
                time.sleep(self.delay)
            yield Chunk(text[i : i + step])


@dataclass
class ReadAheadBackend(ScriptedBackend):
    """A ScriptedBackend that also reads ahead (``ReadsAhead``), recording each call's texts."""

    read_ahead: list[tuple[list[str], str]] = field(default_factory=list)
    prefilled: list[list[Message]] = field(default_factory=list)

    def precompute(self, texts: Sequence[str], *, after: str = "") -> int:
        self.read_ahead.append((list(texts), after))
        return sum(self.counter.count(t) for t in texts)

    def prefill(self, messages: Sequence[Message], params: GenerationParams | None = None) -> int:
        self.prefilled.append(list(messages))
        return prompt_tokens(messages, self.counter)


def EchoBackend(**kw: object) -> ScriptedBackend:  # noqa: N802 - a factory named like a class
    """A backend that answers every message with 'echo: <the user's last message>'."""

    def echo(messages: Sequence[Message]) -> str:
        last = next((m.content for m in reversed(messages) if m.role == "user"), "")
        return f"echo: {last}"

    backend = ScriptedBackend(model="echo", **kw)  # type: ignore[arg-type]
    backend.default = ""
    backend.replies = _Forever(echo)
    return backend


class _Forever(list):  # type: ignore[type-arg]
    """A reply list that never runs out."""

    def __init__(self, reply: Reply) -> None:
        super().__init__([reply])
        self._reply = reply

    def pop(self, index: int = -1) -> Reply:  # type: ignore[override]
        return self._reply

"""Reply: the streaming answer to one ``ChatSession.send``; the turn commits when it ends."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager

from .backend import GenerationParams, Usage
from .memory import Context
from .messages import Message

__all__ = ["Reply", "closing_stream"]


@contextmanager
def closing_stream(stream: Iterator[object]) -> Iterator[None]:
    """Close a backend stream (a generator) however the turn ends, so its resources go now."""
    try:
        yield
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


class Reply:
    """The streaming reply to one ``send``.

    Iterate it for text chunks. The user message and the reply are committed together when the
    stream ends; if the backend fails, or the caller stops early (``close()``, ``break``), the
    history is exactly as it was before.

    ``notices`` collects what happened on the way (input cut, trimmed and retried, rate limited
    and retrying, summary updated); set ``on_notice`` before iterating to hear each one as it
    happens, e.g. to show "retrying in 3 s" while the reply has no text yet.

    ``finish_reason`` is the backend's own once the stream has ended: ``"stop"`` (the model
    ended it, or a stop string did) or ``"length"`` (cut at ``max_tokens`` or the context).
    ``params`` are this turn's own generation settings, merged over the session's.

    The session drives the turn through three callables: ``run(reply)`` streams it and commits
    it at the end, ``upkeep()`` finishes the turn's memory work and returns its notices,
    ``notice(reply, text)`` tells a notice to the reply and to whoever listens.
    """

    def __init__(
        self,
        message: Message,
        notices: list[str],
        params: GenerationParams | None = None,
        *,
        run: Callable[[Reply], Generator[str, None, None]],
        upkeep: Callable[[], list[str]],
        notice: Callable[[Reply, str], None],
    ) -> None:
        self.message = message
        self.notices = notices
        self.params = params
        self.on_notice: Callable[[str], None] | None = None
        self.text = ""
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.context: Context | None = None
        self.done = False
        self._upkeep, self._notice = upkeep, notice
        self._gen = run(self)

    def __iter__(self) -> Iterator[str]:
        return self._gen

    def __next__(self) -> str:
        return next(self._gen)

    def close(self) -> None:
        """Cancel: stop the backend and commit nothing."""
        self._gen.close()

    def consume(self) -> str:
        """Read the whole reply, then finish the turn's memory upkeep; return the text."""
        for _ in self._gen:
            pass
        for note in self._upkeep():
            self._notice(self, note)
        return self.text

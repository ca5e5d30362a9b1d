"""One reply, read on a worker thread so the page can stop it at once.

The page's event handler only waits on a queue. The stop button sets ``Turn.stop``: the handler
returns at once with the partial text, and the worker closes the ``Reply`` before it reads the
next chunk, so the backend stops and nothing is committed (``ChatSession`` guarantees that).
The worker holds the conversation's lock until the reply is closed, so a new turn on the same
conversation cannot start while the old one is still unwinding. After a committed reply it
tells the page the turn is done first, then runs ``upkeep`` (the session's memory upkeep, e.g.
a summary fold) still holding the lock: the visitor reads the reply meanwhile.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ...core.errors import (
    AuthError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    ConfigError,
    ContextTooLong,
    MemchatError,
    RateLimited,
    StorageError,
    UsageError,
)
from ...core.history import Round
from ...core.session import ChatSession, Reply

__all__ = ["Turn", "TurnEnd", "error_text", "restore_round"]

log = logging.getLogger("memchat.web")

_DONE = object()


class _Note(str):
    """A notice from the session, queued between text chunks."""


@dataclass(frozen=True, slots=True)
class TurnEnd:
    """How a turn ended: ``"done"``, ``"stopped"`` or ``"error"`` (with the error)."""

    status: str
    text: str
    error: BaseException | None = None


class Turn:
    """Streams ``reply`` on a worker thread; iterate ``chunks()`` for the text so far."""

    def __init__(
        self,
        reply: Reply,
        lock: threading.Lock,
        stop: threading.Event,
        *,
        after: Callable[[], None] | None = None,
        upkeep: Callable[[], None] | None = None,
    ) -> None:
        self.reply = reply
        self.stop = stop
        self._lock = lock
        self._after = after
        self._upkeep = upkeep
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.end: TurnEnd | None = None
        self.status = ""  # the latest notice, e.g. "rate limited (429) — retrying in 3 s"
        reply.on_notice = lambda text: self._queue.put(_Note(text))
        self._thread = threading.Thread(target=self._work, name="memchat-web-turn", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        outcome: object = _DONE
        try:
            for text in self.reply:
                if self.stop.is_set():
                    break
                self._queue.put(text)
            if not self.reply.done:
                self.reply.close()
        except Exception as exc:  # handed to the page, which shows it
            outcome = exc
        finally:
            try:
                if not self.reply.done and self._after is not None:
                    self._after()
            except Exception as exc:
                log.error("could not undo an uncommitted web turn", exc_info=exc)
            finally:
                self._queue.put(outcome)
                self._finish_memory()

    def _finish_memory(self) -> None:
        """After the page has the outcome: the memory upkeep of a committed turn, then unlock."""
        try:
            if self.reply.done and self._upkeep is not None:
                self._upkeep()
        except Exception as exc:  # upkeep reports memory failures as notices; this is a bug
            log.error("memory upkeep after a web turn failed", exc_info=exc)
        finally:
            self._lock.release()

    def chunks(
        self, poll: float = 0.05, interval: float = 0.08, first_wait: float = 0.0
    ) -> Iterator[str]:
        """The reply text so far: the first text at once, then at most every ``interval``
        seconds (each page update costs the server and the browser CPU the model also needs).
        A new ``status`` is yielded like new text (with the text so far).

        With ``first_wait``, if no text came within that many seconds, ``""`` is yielded once
        (so the page can show the user's message while the model reads the prompt); if text
        came sooner, the first thing yielded is that text. Sets ``end`` when it returns.
        """
        text = ""
        shown = ("", "")  # the (text, status) last yielded
        due = 0.0
        if first_wait > 0:
            deadline = time.monotonic() + first_wait
            while not text and self.end is None and (left := deadline - time.monotonic()) > 0:
                text = self._read(text, left)
            if not text and self.end is None:
                shown = (text, self.status)
                yield ""
        while True:
            now = (text, self.status)
            if now != shown and (self.end is not None or time.monotonic() >= due):
                shown, due = now, time.monotonic() + interval
                yield text
            if self.end is not None:
                break
            if self.stop.is_set():
                self.end = self._stopped(text)
                break
            wait = poll if now == shown else max(0.0, min(poll, due - time.monotonic()))
            text = self._read(text, wait)

    def _read(self, text: str, wait: float) -> str:
        """``text`` plus whatever arrived within ``wait`` seconds; sets ``end`` at the end."""
        try:
            item = self._queue.get(timeout=wait)
        except queue.Empty:
            return text
        while True:
            if item is _DONE or isinstance(item, BaseException):
                self.end = self._finish(item, text)
                return text
            if isinstance(item, _Note):
                self.status = str(item)
            else:
                text += str(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return text

    def _finish(self, item: object, text: str) -> TurnEnd:
        if isinstance(item, BaseException):
            return TurnEnd("error", text, item)
        return TurnEnd("done", self.reply.text) if self.reply.done else TurnEnd("stopped", text)

    def _stopped(self, text: str, grace: float = 0.5) -> TurnEnd:
        """Give the worker a moment to close the reply, so the page reports what happened."""
        self._thread.join(grace)
        return TurnEnd("done", self.reply.text) if self.reply.done else TurnEnd("stopped", text)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the worker to finish (tests and shutdown)."""
        self._thread.join(timeout)


def restore_round(session: ChatSession, old: Round) -> None:
    """Put back a round taken off by ``undo_last`` when its replacement failed or was stopped."""
    if session.store is not None and session.conversation_id is not None:
        session.store.append(session.conversation_id, list(old))
    for message in old:
        session.history.append(message)


def error_text(exc: BaseException) -> str:
    """A clear sentence for the chat; the user's message goes back into the box for resend."""
    if isinstance(exc, RateLimited):
        wait = f" — try again in {exc.retry_after:.0f} s" if exc.retry_after else ""
        return f"The provider is rate limiting requests{wait}. ({exc})"
    if isinstance(exc, ContextTooLong):
        return (
            "The conversation is too long for the model's context, even after trimming and "
            f"retrying. Lower the budget in Settings or forget messages in the inspector. ({exc})"
        )
    if isinstance(exc, AuthError):
        return f"The provider rejected the API key. Check it in Settings. ({exc})"
    if isinstance(exc, BackendTimeout):
        return f"The model did not answer in time. ({exc})"
    if isinstance(exc, BackendUnavailable):
        return f"The model backend is unavailable. ({exc})"
    if isinstance(exc, BadRequest):
        return f"The provider refused the request. ({exc})"
    if isinstance(exc, BackendError):
        return f"The model failed. ({exc})"
    if isinstance(exc, ConfigError):
        return f"The settings cannot be used: {exc}"
    if isinstance(exc, StorageError):
        return f"The conversation could not be saved: {exc}"
    if isinstance(exc, UsageError | MemchatError):
        return str(exc)
    log.error("unexpected error in a web turn", exc_info=exc)
    return f"Something went wrong ({type(exc).__name__}). The error is in the server log."

"""Stateful sessions by conversation: one turn at a time each, idle ones kept in a bounded LRU.

A conversation is *held* from the start of a request until its turn has ended and its memory
upkeep has run; a second request for it meanwhile gets 409 ``conversation_busy`` at once (never
two interleaved rounds, never a lost turn). Turns of different conversations run concurrently.
Idle sessions stay in memory, least recently used first out, at most ``max_idle``; an evicted one
is rebuilt from the store on its next turn (the factory resumes a stored conversation).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from ..core.session import ChatSession
from ._server_errors import ApiError

__all__ = ["Sessions", "busy"]


def busy(conversation_id: str) -> ApiError:
    message = (
        f"conversation {conversation_id!r} is answering another request; "
        "send again when that one has finished"
    )
    return ApiError(409, message, "conversation_busy", "conversation")


class Sessions:
    """``hold(id)`` → the session, for this caller alone until ``release(id)``."""

    def __init__(self, make: Callable[[str], ChatSession], max_idle: int) -> None:
        self._make = make
        self._max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: OrderedDict[str, ChatSession] = OrderedDict()
        self._held: dict[str, ChatSession | None] = {}  # None while it is being built

    def hold(self, conversation_id: str) -> ChatSession:
        """The conversation's session, held; ApiError 409 if another request holds it."""
        with self._lock:
            if conversation_id in self._held:
                raise busy(conversation_id)
            session = self._idle.pop(conversation_id, None)
            self._held[conversation_id] = session
        if session is None:  # built outside the lock: it reads the store
            try:
                session = self._make(conversation_id)
            except BaseException:
                self.release(conversation_id)
                raise
            with self._lock:
                self._held[conversation_id] = session
        return session

    def release(self, conversation_id: str) -> None:
        """Let the next request in; the session goes back to the idle LRU."""
        with self._lock:
            session = self._held.pop(conversation_id, None)
            if session is None:
                return
            self._idle[conversation_id] = session
            while len(self._idle) > self._max_idle:
                self._idle.popitem(last=False)

    def forget(self, conversation_id: str) -> None:
        """Drop a deleted conversation's session; 409 if a turn is running on it."""
        with self._lock:
            if conversation_id in self._held:
                raise busy(conversation_id)
            self._idle.pop(conversation_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._idle) + len(self._held)

"""Stateful sessions by conversation: one turn at a time each, idle ones kept in a bounded LRU.

A conversation is *held* by one request from its start until its turn has ended and that
turn's memory upkeep (indexing, a summary fold) has run. A second request while the turn runs
gets 409 ``conversation_busy`` at once: never two interleaved rounds, never a lost turn. A
request that arrives while only the upkeep runs waits for it (up to ``UPKEEP_WAIT``), because
a client that sends its next message as soon as it has read the reply did nothing wrong.
Turns of different conversations run concurrently.

Idle sessions stay in memory, least recently used first out, at most ``max_idle``; an evicted
one is rebuilt from the store on its next turn (the factory resumes a stored conversation).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from ..core.session import ChatSession
from ._server_errors import ApiError

__all__ = ["UPKEEP_WAIT", "Hold", "Sessions", "busy"]

UPKEEP_WAIT = 300.0  # seconds a request waits for the last turn's upkeep (a slow summary)


def busy(conversation_id: str) -> ApiError:
    message = (
        f"conversation {conversation_id!r} is answering another request; "
        "send again when that one has finished"
    )
    return ApiError(409, message, "conversation_busy", "conversation")


class Hold:
    """One request's hold on a conversation: ``upkeep()`` once its turn has ended (the next
    request may then wait instead of getting 409), ``release()`` when all is done."""

    def __init__(self, sessions: Sessions | None = None, conversation_id: str = "") -> None:
        self._sessions = sessions
        self._id = conversation_id

    def upkeep(self) -> None:
        if self._sessions is not None:
            self._sessions._to_upkeep(self._id)

    def release(self) -> None:
        if self._sessions is not None:
            self._sessions._release(self._id)
            self._sessions = None


class Sessions:
    """``hold(id)`` → the session and a ``Hold``: the session is this request's alone."""

    def __init__(
        self,
        make: Callable[[str], ChatSession],
        max_idle: int,
        *,
        upkeep_wait: float = UPKEEP_WAIT,
    ) -> None:
        self._make = make
        self._max_idle = max_idle
        self._upkeep_wait = upkeep_wait
        self._changed = threading.Condition()
        self._idle: OrderedDict[str, ChatSession] = OrderedDict()
        self._held: dict[str, ChatSession | None] = {}  # None while it is being built
        self._upkeep: set[str] = set()  # held, turn ended, upkeep running

    def hold(self, conversation_id: str) -> tuple[ChatSession, Hold]:
        """The conversation's session, held (blocking while the last turn's upkeep runs);
        ApiError 409 if another request's turn holds it."""
        with self._changed:
            self._wait_for_upkeep(conversation_id)
            if conversation_id in self._held:
                raise busy(conversation_id)
            session = self._idle.pop(conversation_id, None)
            self._held[conversation_id] = session
        hold = Hold(self, conversation_id)
        if session is None:  # built outside the lock: it reads the store
            try:
                session = self._make(conversation_id)
            except BaseException:
                hold.release()
                raise
            with self._changed:
                self._held[conversation_id] = session
        return session, hold

    def _wait_for_upkeep(self, conversation_id: str) -> None:
        deadline = time.monotonic() + self._upkeep_wait
        while conversation_id in self._upkeep:
            left = deadline - time.monotonic()
            if left <= 0:
                raise busy(conversation_id)
            self._changed.wait(left)

    def _to_upkeep(self, conversation_id: str) -> None:
        with self._changed:
            if conversation_id in self._held:
                self._upkeep.add(conversation_id)

    def _release(self, conversation_id: str) -> None:
        with self._changed:
            self._upkeep.discard(conversation_id)
            session = self._held.pop(conversation_id, None)
            if session is not None:
                self._idle[conversation_id] = session
                while len(self._idle) > self._max_idle:
                    self._idle.popitem(last=False)
            self._changed.notify_all()

    def forget(self, conversation_id: str) -> None:
        """Drop a deleted conversation's session; 409 if a request holds it."""
        with self._changed:
            if conversation_id in self._held:
                raise busy(conversation_id)
            self._idle.pop(conversation_id, None)

    def __len__(self) -> int:
        with self._changed:
            return len(self._idle) + len(self._held)

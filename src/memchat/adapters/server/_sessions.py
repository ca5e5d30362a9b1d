"""Stateful sessions by conversation: one turn at a time each, in this process and across
processes, idle ones kept in a bounded LRU and checked against the store before each use.

A conversation is *held* by one request from its start until its turn has ended and that
turn's memory upkeep (indexing, a summary fold) has run. A second request while the turn runs
gets 409 ``conversation_busy`` at once: never two interleaved rounds, never a lost turn. A
request that arrives while only the upkeep runs waits for it (up to ``UPKEEP_WAIT``), because
a client that sends its next message as soon as it has read the reply did nothing wrong.
Turns of different conversations run concurrently.

Across processes (several workers on one PostgreSQL) the same rules hold through the store's
``lock_conversation`` (``storage/_pg_locks``), taken after this process's own hold.

Idle sessions stay in memory, least recently used first out, at most ``max_idle``. Each keeps
the *stamp* of the stored conversation it matches, ``(created_at, version)``, read while the
conversation was still held after its last use. Before the next use, with the conversation held
again, the stamp is read anew: when another process (or the CLI) changed the conversation
meanwhile, the session reloads the stored history (``ChatSession.reload``), so every turn is
built from the conversation as it is stored now. An evicted session is rebuilt from the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ...core.errors import ConversationBusy, MemchatError
from ...core.session import ChatSession
from ...core.store import ConversationInfo, ConversationLocks, Lease, Store
from ._errors import ApiError

__all__ = ["UPKEEP_WAIT", "Hold", "Sessions", "busy"]

UPKEEP_WAIT = 300.0  # seconds a request waits for the last turn's upkeep (a slow summary)

log = logging.getLogger("memchat.server")
Stamp = tuple[float, int]


def busy(conversation_id: str) -> ApiError:
    message = (
        f"conversation {conversation_id!r} is answering another request; "
        "send again when that one has finished"
    )
    return ApiError(409, message, "conversation_busy", "conversation")


class Hold:
    """One request's hold on a conversation: ``upkeep()`` once its turn has ended (the next
    request may then wait instead of getting 409), ``release()`` when all is done (blocking:
    it reads the store and frees the cross-process lock)."""

    def __init__(self, sessions: Sessions | None = None, conversation_id: str = "") -> None:
        self._sessions = sessions
        self._id = conversation_id
        self.lease: Lease | None = None
        self.keep = True  # False: the session is not kept for the next request

    @property
    def active(self) -> bool:
        return self._sessions is not None

    def upkeep(self) -> None:
        if self._sessions is not None:
            self._sessions._to_upkeep(self._id)

    def reply_done(self) -> None:
        """Across processes: the reply has ended (blocking)."""
        if self.lease is not None:
            self.lease.reply_done()

    def release(self) -> None:
        sessions, self._sessions = self._sessions, None
        if sessions is not None:
            sessions._release(self._id, self)


class Sessions:
    """``hold(id)`` → the session and a ``Hold``: the session is this request's alone."""

    def __init__(
        self,
        make: Callable[[str], ChatSession],
        max_idle: int,
        *,
        store: Store | None = None,
        upkeep_wait: float = UPKEEP_WAIT,
    ) -> None:
        self._make = make
        self._max_idle = max_idle
        self._store = store
        self._locks = store if isinstance(store, ConversationLocks) else None
        self._upkeep_wait = upkeep_wait
        self._changed = threading.Condition()
        self._idle: OrderedDict[str, tuple[ChatSession, Stamp | None]] = OrderedDict()
        self._held: dict[str, ChatSession | None] = {}  # None while it is being prepared
        self._upkeep: set[str] = set()  # held, turn ended, upkeep running

    def hold(
        self, conversation_id: str, seen: ConversationInfo | None = None
    ) -> tuple[ChatSession, Hold]:
        """The conversation's session, held and matching the store (blocking: it may wait for
        the last turn's upkeep, here or in another process, and read the store); ApiError 409
        if another request's turn holds it.

        ``seen`` is the conversation as the caller just read it. Without cross-process locks
        it stands for the stored state (one read less per turn): a change made in this process
        after that read was made under a hold, whose release recorded a newer stamp, so the
        comparison errs only towards an unneeded reload. With locks the store is read again
        once the lock is held.
        """
        hold, idle = self._claim(conversation_id)
        try:
            self._lock(conversation_id, hold)
            if seen is not None and self._locks is None:
                stamp: Stamp | None = (seen.created_at, seen.version)
            else:
                stamp = self._stamp(conversation_id)
            if idle is None:
                session = self._make(conversation_id)
            else:
                session, cached = idle
                if self._store is not None and (cached is None or cached != stamp):
                    session.reload(self._store.load(conversation_id))
        except BaseException:
            hold.keep = False
            hold.release()
            raise
        with self._changed:
            self._held[conversation_id] = session
        return session, hold

    @contextmanager
    def exclusive(self, conversation_id: str) -> Iterator[None]:
        """Hold the conversation without its session (to delete it); its session is dropped."""
        hold, _ = self._claim(conversation_id)
        hold.keep = False
        try:
            self._lock(conversation_id, hold)
            yield
        finally:
            hold.release()

    def _claim(self, conversation_id: str) -> tuple[Hold, tuple[ChatSession, Stamp | None] | None]:
        with self._changed:
            self._wait_for_upkeep(conversation_id)
            if conversation_id in self._held:
                raise busy(conversation_id)
            idle = self._idle.pop(conversation_id, None)
            self._held[conversation_id] = None
        return Hold(self, conversation_id), idle

    def _lock(self, conversation_id: str, hold: Hold) -> None:
        if self._locks is None:
            return
        try:
            hold.lease = self._locks.lock_conversation(conversation_id, wait=self._upkeep_wait)
        except ConversationBusy:
            raise busy(conversation_id) from None

    def _stamp(self, conversation_id: str) -> Stamp | None:
        if self._store is None:
            return None
        info = self._store.get_conversation(conversation_id)
        return info.created_at, info.version

    def _stamp_after(self, conversation_id: str) -> Stamp | None:
        """The stamp the session matches after its use, or None (reload it next time) if the
        store holds other messages than it has: a writer that takes no hold (the CLI) may have
        appended or forgotten between this session's last write and this read."""
        with self._changed:
            session = self._held.get(conversation_id)
        if self._store is None or session is None:
            return None
        info = self._store.get_conversation(conversation_id)
        known = sum(len(r) for r in session.history.rounds)
        return (info.created_at, info.version) if info.message_count == known else None

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

    def _release(self, conversation_id: str, hold: Hold) -> None:
        stamp: Stamp | None = None
        try:
            if hold.keep:  # read while still held: no server has changed it since
                stamp = self._stamp_after(conversation_id)
        except MemchatError as exc:  # deleted meanwhile, or the store failed: not kept
            log.info("conversation %s not kept in memory: %s", conversation_id, exc)
            hold.keep = False
        finally:
            try:
                if hold.lease is not None:
                    hold.lease.release()
            finally:
                self._free(conversation_id, stamp if hold.keep else None, hold.keep)

    def _free(self, conversation_id: str, stamp: Stamp | None, keep: bool) -> None:
        with self._changed:
            self._upkeep.discard(conversation_id)
            session = self._held.pop(conversation_id, None)
            if session is not None and keep:
                self._idle[conversation_id] = (session, stamp)
                while len(self._idle) > self._max_idle:
                    self._idle.popitem(last=False)
            self._changed.notify_all()

    def __len__(self) -> int:
        with self._changed:
            return len(self._idle) + len(self._held)

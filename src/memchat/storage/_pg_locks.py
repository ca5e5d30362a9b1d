"""Turn locks across processes: two PostgreSQL advisory locks per conversation.

A turn holds two session-level advisory locks on one dedicated connection per process:

- ``reply`` while its reply runs: another process asking for the conversation meanwhile is
  refused at once (ConversationBusy → 409), as a second request in the same process is;
- ``held`` until its memory upkeep (indexing, a summary fold) has run too: a request that
  arrives while only the upkeep runs takes ``reply`` and then waits for ``held`` (polling
  ``pg_try_advisory_lock`` every ``POLL`` s, up to its ``wait``), because a client that sends
  its next message as soon as it has read the reply did nothing wrong.

Locks are always taken ``reply`` then ``held`` and the waiter holds ``reply`` while the holder it
waits for holds only ``held``, so no two holders wait for each other. Only non-blocking calls
run on the shared connection, so one connection serves every thread of the process. A killed
process's connection closes and PostgreSQL drops its locks with it: nothing stays locked.
Session locks are re-entrant within a connection; the server's in-process hold makes sure one
process asks for a conversation once at a time.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

from ..core.errors import ConversationBusy, StorageError

__all__ = ["POLL", "AdvisoryLocks"]

POLL = 0.02  # seconds between two tries while waiting for another process's upkeep


def _key(namespace: str, phase: str, conversation_id: str) -> int:
    """A signed 64-bit lock key for (schema, phase, conversation)."""
    digest = hashlib.sha256(f"memchat:{namespace}:{phase}:{conversation_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def busy(conversation_id: str, why: str) -> ConversationBusy:
    return ConversationBusy(f"conversation {conversation_id!r} is {why}; send again later")


class _Lease:
    def __init__(self, locks: AdvisoryLocks, reply: int, held: int) -> None:
        self._locks = locks
        self._reply: int | None = reply
        self._held: int | None = held

    def reply_done(self) -> None:
        key, self._reply = self._reply, None
        if key is not None:
            self._locks.unlock(key)

    def release(self) -> None:
        self.reply_done()
        key, self._held = self._held, None
        if key is not None:
            self._locks.unlock(key)


class AdvisoryLocks:
    """``lock_conversation`` for PostgresStore; ``connect()`` opens an autocommit connection."""

    def __init__(self, connect: Callable[[], Any], namespace: str, errors: Callable[[], Any]):
        self._connect = connect
        self._namespace = namespace
        self._errors = errors  # maps psycopg's exceptions to StorageError
        self._lock = threading.Lock()
        self._conn: Any = None
        self._closed = False

    def lock_conversation(self, conversation_id: str, *, wait: float) -> _Lease:
        reply = _key(self._namespace, "reply", conversation_id)
        held = _key(self._namespace, "held", conversation_id)
        if not self._try(reply):
            raise busy(conversation_id, "answering another request")
        try:
            deadline = time.monotonic() + wait
            while not self._try(held):
                if time.monotonic() >= deadline:
                    raise busy(conversation_id, "still updating its memory after a turn")
                time.sleep(POLL)
        except BaseException:
            self.unlock(reply)
            raise
        return _Lease(self, reply, held)

    def _try(self, key: int) -> bool:
        row = self._run("SELECT pg_try_advisory_lock(%s)", key)
        return bool(row[0])

    def unlock(self, key: int) -> None:
        """Release one lock; a broken connection has released it already."""
        try:
            self._run("SELECT pg_advisory_unlock(%s)", key)
        except StorageError:
            pass

    def _run(self, sql: str, key: int) -> Any:
        """One statement; a connection found broken is replaced once (it held nothing more:
        its locks died with it)."""
        with self._lock, self._errors():
            if self._closed:
                raise StorageError("the store is closed")
            for attempt in (1, 2):
                fresh = self._conn is None or self._conn.closed
                if fresh:
                    self._conn = self._connect()
                try:
                    return self._conn.execute(sql, (key,)).fetchone()
                except Exception:
                    self._drop()  # its locks went with it (or will, when it closes)
                    if fresh or attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - it is already broken
                pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()

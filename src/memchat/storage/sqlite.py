"""SQLiteStore: the default store, on the standard library's ``sqlite3``.

Durability: WAL journal with ``synchronous=FULL``, so a committed turn survives a killed
process (and a power cut; only the server's last-turn context record is written without an
fsync); each call is one transaction (``BEGIN IMMEDIATE`` for writes), so an ``append`` stores
all of its messages or none. Foreign keys are on: deleting a conversation or a
message removes what hangs off it.

Threads: one connection guarded by a lock. Every call is short (well under a millisecond for a
turn), so serialising them costs less than a connection per thread would, and it keeps ``close()``
simple. Several processes may open the same file; SQLite's own locking (with a busy timeout)
serialises their writes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..core.errors import StorageError
from ._common import IntegrityConflict
from ._keys import SQLKeys
from ._sql import Rows, SQLStore
from .migrations import MIGRATIONS, SQLITE, Migration, Schema, apply_migrations

__all__ = ["SQLiteStore"]


class _SQLiteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        return self._conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)


class SQLiteStore(SQLStore, SQLKeys):
    """Conversations in one SQLite file (or ``":memory:"``); migrated on open."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 10.0,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.path = os.path.expanduser(os.fspath(path))
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        with self._errors():
            self._conn = self._connect(timeout)
        try:
            with self._tx() as tx:
                apply_migrations(Schema(SQLITE, tx.execute), migrations)
        except BaseException:
            self.close()
            raise

    def _connect(self, timeout: float) -> sqlite3.Connection:
        if self.path != ":memory:" and not self.path.startswith("file:"):
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._wal(conn, timeout)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _wal(conn: sqlite3.Connection, timeout: float) -> None:
        """Switch to WAL. On a new file, openers racing to switch it get "database is locked"
        at once (SQLite's busy timeout does not cover it): try again until ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Map sqlite3's exceptions to memchat's (none may escape)."""
        try:
            yield
        except sqlite3.IntegrityError as e:
            raise IntegrityConflict(f"SQLite refused the write to {self.path}: {e}") from e
        except sqlite3.OperationalError as e:
            text = str(e)
            if "locked" in text or "busy" in text:
                raise StorageError(
                    f"the database {self.path} is busy: another process is writing ({text})"
                ) from e
            raise StorageError(f"SQLite error on {self.path}: {text}") from e
        except sqlite3.DatabaseError as e:
            raise StorageError(f"{self.path} is not a usable SQLite database: {e}") from e
        except sqlite3.Error as e:
            raise StorageError(f"SQLite error on {self.path}: {e}") from e

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[_SQLiteTx]:
        with self._lock, self._errors():
            conn = self._conn
            if conn is None:
                raise StorageError(f"the store {self.path} is closed")
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield _SQLiteTx(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def put_turn_context(self, conversation_id: str, record: str) -> None:
        """As the protocol says, without waiting for the disk: the last turn's context record is
        for the inspector, not worth an fsync per turn (the turn itself was synced). A power
        cut may lose the newest record; the database stays consistent (WAL)."""
        with self._lock:
            self._pragma("synchronous=NORMAL")
            try:
                super().put_turn_context(conversation_id, record)
            finally:
                self._pragma("synchronous=FULL")

    def _pragma(self, setting: str) -> None:
        if self._conn is not None:
            with self._errors():
                self._conn.execute(f"PRAGMA {setting}")

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

"""PostgresStore: conversations in PostgreSQL through psycopg 3 and a connection pool.

Several processes (web workers, server workers, the CLI) can share one database: each call is
one transaction on a pooled connection, appends lock their conversation row (``FOR UPDATE``),
and migrations run under a transaction-scoped advisory lock so concurrent openers apply each one
exactly once. Threads are safe: each call borrows its own connection from the pool. A server's
turns hold their conversation across processes with ``lock_conversation`` (``_pg_locks``: two
session-level advisory locks on one more connection, opened on first use).

psycopg is imported only here, inside functions (extra ``postgres``); without it,
opening a store raises ConfigError with the install command.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..core.errors import ConfigError, StorageError
from ._common import IntegrityConflict
from ._keys import SQLKeys
from ._pg_locks import AdvisoryLocks
from ._sql import Rows, SQLStore
from .migrations import MIGRATIONS, POSTGRES, Migration, Schema, apply_migrations

__all__ = ["PostgresStore", "split_schema"]

_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _import() -> tuple[Any, Any]:
    try:
        import psycopg
        import psycopg_pool
    except ImportError as e:
        raise ConfigError(
            'PostgreSQL storage needs psycopg: pip install "memchat[postgres]"'
        ) from e
    return psycopg, psycopg_pool


@lru_cache(maxsize=256)
def _pg(sql: str) -> str:
    """Our ``?`` placeholders in psycopg's ``%s`` style."""
    return sql.replace("%", "%%").replace("?", "%s")


def split_schema(url: str) -> tuple[str, str | None]:
    """Take memchat's own ``?schema=NAME`` out of a postgresql:// URL (libpq does not know it)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


class _PgTx:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        cur: Rows = self._conn.execute(_pg(sql), params)
        return cur

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(_pg(sql), rows)


class PostgresStore(SQLStore, SQLKeys):
    """The Store protocol on PostgreSQL; ``schema`` keeps memchat's tables in their own schema."""

    _for_update = " FOR UPDATE"
    _like = "ILIKE"

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 8,
        timeout: float = 10.0,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self._psycopg, pool_module = _import()
        if schema is not None and not _SCHEMA.fullmatch(schema):
            raise ConfigError(f"bad PostgreSQL schema name {schema!r}: use a-z, 0-9 and _")
        self.dsn, self.schema, self._timeout = dsn, schema, timeout
        self.where = self._describe(dsn)
        self._pool: Any = None
        self._kwargs: dict[str, Any] = {"connect_timeout": max(1, round(timeout))}
        if schema:
            self._kwargs["options"] = f"-c search_path={schema}"
        self._migrate(migrations)
        self._pool = self._open_pool(pool_module, min_size, max_size)
        self._locks = AdvisoryLocks(self._lock_connection, schema or "", self._errors)

    def _lock_connection(self) -> Any:
        return self._psycopg.connect(self.dsn, autocommit=True, **self._kwargs)

    def lock_conversation(self, conversation_id: str, *, wait: float) -> Any:
        """Hold a conversation for one turn, across processes (see ``_pg_locks``)."""
        return self._locks.lock_conversation(conversation_id, wait=wait)

    def _open_pool(self, pool_module: Any, min_size: int, max_size: int) -> Any:
        """A pool that checks each connection before lending it (the server may restart)."""
        pool = pool_module.ConnectionPool(
            self.dsn,
            kwargs=self._kwargs,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=self._timeout,
            name="memchat",
            num_workers=2,
            check=pool_module.ConnectionPool.check_connection,
        )
        try:
            with self._errors():
                pool.open(wait=True, timeout=self._timeout)
        except BaseException:
            pool.close()
            raise
        return pool

    def _describe(self, dsn: str) -> str:
        """Where the server is, without the password (for error messages)."""
        try:
            info = self._psycopg.conninfo.conninfo_to_dict(dsn)
        except self._psycopg.Error as e:
            raise ConfigError(f"bad PostgreSQL address: {e}") from e
        host, port = info.get("host", "localhost"), info.get("port", "5432")
        return f"{host}:{port}/{info.get('dbname', '')}"

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        """Create the schema and apply migrations on one connection, under an advisory lock."""
        sql = self._psycopg.sql
        key = zlib.crc32(f"memchat-migrations:{self.schema or ''}".encode())
        with self._errors(), self._psycopg.connect(self.dsn, **self._kwargs) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            if self.schema:
                name = sql.Identifier(self.schema)
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(name))
                conn.execute(sql.SQL("SET search_path TO {}").format(name))
            apply_migrations(Schema(POSTGRES, _PgTx(conn).execute), migrations)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Map psycopg's exceptions to memchat's (none may escape)."""
        pg = self._psycopg
        try:
            yield
        except pg.IntegrityError as e:
            raise IntegrityConflict(f"PostgreSQL refused the write: {e}") from e
        except pg.OperationalError as e:
            text = str(e).strip() or type(e).__name__
            raise StorageError(f"PostgreSQL at {self.where} failed: {text}") from e
        except pg.Error as e:
            raise StorageError(f"PostgreSQL error at {self.where}: {e}") from e

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[_PgTx]:
        with self._errors():
            if self._pool is None:
                raise StorageError(f"the store at {self.where} is closed")
            with self._pool.connection() as conn:  # commits on success, rolls back on error
                yield _PgTx(conn)

    def close(self) -> None:
        if hasattr(self, "_locks"):
            self._locks.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        schema = f", schema={self.schema!r}" if self.schema else ""
        return f"PostgresStore({self.where!r}{schema})"

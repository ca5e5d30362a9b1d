"""Fixtures for the store contract: the same tests run on memory, SQLite and PostgreSQL.

PostgreSQL tests use a real server (``MEMCHAT_TEST_PG_DSN``, default the role and database that
``scripts/pg_setup.sh`` creates). When it cannot be reached the tests FAIL with the reason: a
skipped Postgres suite would hide a broken store. The contract tests share one schema per
session and empty its tables after each test; tests that need a fresh database (migrations,
crashes) get their own schema (``pg_schema``), dropped after.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from memchat.backends.llama_cpp import LlamaCppBackend
from memchat.core.store import Store
from memchat.storage import InMemoryStore, PostgresStore, SQLiteStore

DEFAULT_PG_DSN = "postgresql://memchat:memchat@127.0.0.1:5432/memchat_test"
STORE_KINDS = [
    pytest.param("memory"),
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres),
]
SQL_KINDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]


def with_schema(dsn: str, schema: str) -> str:
    """A postgresql:// URL for ``open_store`` that keeps the tables in ``schema``."""
    return f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"


def pg_execute(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on its own autocommit connection (test setup and checks)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    dsn = os.environ.get("MEMCHAT_TEST_PG_DSN", DEFAULT_PG_DSN)
    shown = re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", dsn)
    problem = None
    try:
        pg_execute(dsn, "SELECT 1")
    except ImportError:
        problem = 'psycopg is not installed: pip install "memchat[postgres]"'
    except Exception as e:  # any reason the server cannot be used
        problem = (
            f"PostgreSQL is not reachable at MEMCHAT_TEST_PG_DSN={shown!r}: {e}\n"
            "Start it with `bash scripts/pg_setup.sh` (or point MEMCHAT_TEST_PG_DSN at a server)."
        )
    if problem:
        pytest.fail(problem, pytrace=False)
    return dsn


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """A fresh schema name, dropped (with everything in it) after the test."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield schema
    pg_execute(pg_dsn, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(scope="session")
def pg_contract_schema(pg_dsn: str) -> Iterator[str]:
    """One schema for the contract tests, emptied after each test (faster than one per test)."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield schema
    pg_execute(pg_dsn, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def pg_url(pg_dsn: str, pg_schema: str) -> str:
    """An ``open_store`` URL for this test's own schema."""
    return with_schema(pg_dsn, pg_schema)


@pytest.fixture
def pg_exec(pg_dsn: str) -> Callable[..., list[tuple[Any, ...]]]:
    """Run SQL on the test server (for setup and checks the store API cannot do)."""
    return lambda sql, params=(): pg_execute(pg_dsn, sql, params)


@dataclass
class StoreKit:
    """How to (re)open one test's store, so tests can check what survives a reopen."""

    kind: str
    opener: Callable[[], Store]
    leftovers: Callable[[], int]
    opened: list[Store] = field(default_factory=list)

    def open(self) -> Store:
        store = self.opener()
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


def _sql_leftovers(count: Callable[[str], int]) -> Callable[[], int]:
    return lambda: sum(count(t) for t in ("messages", "summaries", "vectors"))


def _memory_kit() -> StoreKit:
    mem = InMemoryStore()

    def leftovers() -> int:
        convs = mem._convs.values()
        return sum(len(c.messages) + len(c.summaries) + len(c.vectors) for c in convs)

    return StoreKit("memory", lambda: mem, leftovers)


def _sqlite_kit(path: Path) -> StoreKit:
    import sqlite3

    def count(table: str) -> int:
        with closing(sqlite3.connect(path)) as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    return StoreKit("sqlite", lambda: SQLiteStore(path), _sql_leftovers(count))


def _postgres_kit(dsn: str, schema: str) -> StoreKit:
    def count(table: str) -> int:
        return int(pg_execute(dsn, f"SELECT COUNT(*) FROM {schema}.{table}")[0][0])

    opener = lambda: PostgresStore(dsn, schema=schema, max_size=4)  # noqa: E731
    return StoreKit("postgres", opener, _sql_leftovers(count))


def _empty_schema(dsn: str, schema: str) -> None:
    tables = ", ".join(
        f"{schema}.{t}"
        for t in (
            "responses",
            "vectors",
            "summaries",
            "turn_contexts",
            "messages",
            "conversations",
            "api_keys",
        )
    )
    pg_execute(dsn, f"TRUNCATE {tables}")


def make_kit(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreKit]:
    """The kit for one test; PostgreSQL tables are emptied afterwards."""
    if kind == "memory":
        kit = _memory_kit()
    elif kind == "sqlite":
        kit = _sqlite_kit(tmp_path / "memchat.db")
    else:
        dsn = request.getfixturevalue("pg_dsn")
        schema = request.getfixturevalue("pg_contract_schema")
        kit = _postgres_kit(dsn, schema)
    yield kit
    kit.close_all()
    if kind == "postgres" and kit.opened:
        _empty_schema(dsn, schema)


@pytest.fixture(params=STORE_KINDS)
def store_kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreKit]:
    yield from make_kit(request.param, request, tmp_path)


@pytest.fixture(params=SQL_KINDS)
def sql_kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreKit]:
    yield from make_kit(request.param, request, tmp_path)


@pytest.fixture
def store(store_kit: StoreKit) -> Store:
    return store_kit.open()


# -- the embedded model (tests marked ``model``) -----------------------------------------------


@pytest.fixture(scope="module")
def backend() -> LlamaCppBackend:
    """The default embedded backend; every instance shares the process's one loaded model."""
    return LlamaCppBackend()


@pytest.fixture
def fresh(backend: LlamaCppBackend) -> LlamaCppBackend:
    """``backend`` with every KV cache, saved state and spliced piece dropped."""
    backend.clear_cache()
    return backend

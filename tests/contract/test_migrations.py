"""Schema migrations on real SQLite files and a real PostgreSQL server.

A blank database migrates, an old one upgrades keeping its data, a newer one refuses to open,
a failing migration changes nothing, and concurrent openers apply each migration once.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from memchat.core.errors import MigrationError, StorageError
from memchat.core.messages import user
from memchat.core.store import Store
from memchat.storage import PostgresStore, SQLiteStore
from memchat.storage.migrations import MIGRATIONS, Migration, Schema, migration_names

TABLES = {"conversations", "messages", "summaries", "vectors", "_memchat_migrations"}
NEWER = (
    "this database was written by a newer memchat (unknown migration 'm999_from_the_future'); "
    "upgrade memchat"
)


@dataclass
class Target:
    """One empty database and raw SQL access to it."""

    url: str
    opener: Callable[[Sequence[Migration]], Store]
    query: Callable[[str], list[tuple[Any, ...]]]
    list_tables: str
    opened: list[Store]

    def open(self, migrations: Sequence[Migration] = MIGRATIONS) -> Store:
        store = self.opener(migrations)
        self.opened.append(store)
        return store

    def tables(self) -> set[str]:
        return {row[0] for row in self.query(self.list_tables)}

    def applied(self) -> list[str]:
        return [
            r[0] for r in self.query("SELECT name FROM _memchat_migrations ORDER BY applied_at")
        ]


def _sqlite_target(path: Path) -> Target:
    def query(sql: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    return Target(
        str(path),
        lambda m: SQLiteStore(path, migrations=m),
        query,
        "SELECT name FROM sqlite_master WHERE type = 'table'",
        [],
    )


def _postgres_target(dsn: str, schema: str) -> Target:
    import psycopg

    def query(sql: str) -> list[tuple[Any, ...]]:
        options = f"-c search_path={schema}"
        with psycopg.connect(dsn, autocommit=True, options=options) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []

    return Target(
        f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}",
        lambda m: PostgresStore(dsn, schema=schema, migrations=m, max_size=2),
        query,
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}'",
        [],
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "sqlite":
        made = _sqlite_target(tmp_path / "memchat.db")
    else:
        made = _postgres_target(
            request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_schema")
        )
    yield made
    for store in made.opened:
        store.close()


def test_names_are_unique_and_ordered() -> None:
    names = migration_names()
    assert len(set(names)) == len(names)
    assert names == sorted(names)  # m001_, m002_, …: the order is the name order


def test_blank_database_gets_every_migration(target: Target) -> None:
    target.open().close()
    assert TABLES <= target.tables()
    assert target.applied() == migration_names()


def test_reopening_applies_nothing_twice(target: Target) -> None:
    target.open().close()
    target.open().close()
    assert target.applied() == migration_names()


def test_old_database_upgrades_and_keeps_its_data(target: Target) -> None:
    target.open(MIGRATIONS[:1]).close()  # the schema as the first release left it
    target.query(
        "INSERT INTO conversations (id, title, owner, created_at, updated_at)"
        " VALUES ('c1', 'from the old days', '', 100, 200)"
    )
    target.query(
        "INSERT INTO messages (conversation_id, id, role, content, created_at, tokens)"
        " VALUES ('c1', 'u1', 'user', 'remember me', 150, 4),"
        " ('c1', 'a1', 'assistant', 'I will', 160, 3), ('c1', 'a2', 'assistant', 'ok', 170, NULL)"
    )
    assert "summaries" not in target.tables()
    assert target.applied() == ["m001_initial"]

    store = target.open()
    assert target.applied() == migration_names()
    got = store.find_conversation("from the old days")
    assert (got.id, got.message_count, got.total_tokens, got.updated_at) == ("c1", 3, 7, 200)
    assert [(m.id, m.content, m.tokens) for m in store.load("c1")] == [
        ("u1", "remember me", 4),
        ("a1", "I will", 3),
        ("a2", "ok", None),
    ]
    assert store.save_summary("c1", "they asked to be remembered", "u1").version == 1
    store.put_vectors("c1", "m", {"u1": b"\x00" * 8})
    assert list(store.get_vectors("c1", "m")) == ["u1"]
    store.append("c1", [user("more", tokens=5)])
    assert store.get_conversation("c1").total_tokens == 12


def test_newer_database_refuses_to_open(target: Target) -> None:
    store = target.open()
    store.create_conversation("precious")
    store.close()
    target.query(
        "INSERT INTO _memchat_migrations (name, applied_at) VALUES ('m999_from_the_future', 0)"
    )
    with pytest.raises(MigrationError) as caught:
        target.open()
    assert str(caught.value) == NEWER
    assert target.query("SELECT title FROM conversations") == [("precious",)]
    assert sorted(target.applied()) == [*migration_names(), "m999_from_the_future"]


def m004_half_done(db: Schema) -> None:
    db.execute("CREATE TABLE half_done (x INTEGER)")
    db.execute("THIS IS NOT SQL")


def test_failing_migration_changes_nothing(target: Target) -> None:
    target.open(MIGRATIONS[:1]).close()
    with pytest.raises(StorageError):
        target.open([*MIGRATIONS, m004_half_done])
    assert "half_done" not in target.tables()
    assert "summaries" not in target.tables()  # m002 ran in the same transaction: rolled back
    assert target.applied() == ["m001_initial"]
    target.open().close()
    assert target.applied() == migration_names()


def test_concurrent_openers_migrate_once(target: Target) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def opener() -> None:
        try:
            start.wait()
            target.open().close()
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.applied() == migration_names()


WORKER = """
import sys
from memchat.core.messages import assistant, user
from memchat.storage import open_store

store = open_store(sys.argv[1])
cid = store.create_conversation(sys.argv[2]).id
for n in range(10):
    store.append(cid, [user(f"q {n}"), assistant(f"a {n}")])
store.close()
"""


def test_processes_share_a_fresh_database(target: Target) -> None:
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, target.url, f"worker {i}"],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert target.applied() == migration_names()
    store = target.open()
    listed = sorted((c.title, c.message_count) for c in store.list_conversations())
    assert listed == [(f"worker {i}", 20) for i in range(3)]

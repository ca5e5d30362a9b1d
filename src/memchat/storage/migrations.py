"""Ordered, named schema migrations, shared by SQLite and PostgreSQL (after simonw/llm).

Each migration is a function registered with ``@migration``; its name is recorded in the
``_memchat_migrations`` table when applied. Both dialects run the same list under the same names;
the few type differences come from ``Dialect``. Rules:

- never edit or rename a released migration: add a new one at the end;
- a database that records a name this code does not know was written by a newer memchat, and
  opening it raises ``MigrationError`` instead of guessing.

The caller runs ``apply_migrations`` inside one write transaction (SQLite ``BEGIN IMMEDIATE``,
PostgreSQL with an advisory lock), so concurrent openers apply each migration exactly once and a
crash mid-migration leaves the schema as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.errors import MigrationError

__all__ = [
    "MIGRATIONS",
    "POSTGRES",
    "SQLITE",
    "Dialect",
    "Migration",
    "Schema",
    "apply_migrations",
    "migration_names",
]


@dataclass(frozen=True, slots=True)
class Dialect:
    """The column types that differ between SQLite and PostgreSQL."""

    name: str
    real: str
    blob: str
    boolean: str
    serial_key: str


SQLITE = Dialect("sqlite", "REAL", "BLOB", "INTEGER", "INTEGER PRIMARY KEY")
POSTGRES = Dialect(
    "postgres",
    "DOUBLE PRECISION",
    "BYTEA",
    "BOOLEAN",
    "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
)


@dataclass(frozen=True, slots=True)
class Schema:
    """What a migration gets: the dialect and a way to run one statement (``?`` placeholders)."""

    dialect: Dialect
    run: Callable[[str, Sequence[Any]], Any]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.run(sql, params)


Migration = Callable[[Schema], None]
MIGRATIONS: list[Migration] = []
migration = MIGRATIONS.append


@migration
def m001_initial(db: Schema) -> None:
    """Conversations and their messages, in insertion order (``seq``)."""
    d = db.dialect
    db.execute(
        f"""CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL DEFAULT '',
            owner TEXT NOT NULL DEFAULT '',
            created_at {d.real} NOT NULL,
            updated_at {d.real} NOT NULL)"""
    )
    db.execute(
        f"""CREATE TABLE messages (
            seq {d.serial_key},
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            id TEXT NOT NULL,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            created_at {d.real} NOT NULL,
            tokens INTEGER,
            pinned {d.boolean} NOT NULL DEFAULT {"FALSE" if d.name == "postgres" else "0"},
            UNIQUE (conversation_id, id))"""
    )
    db.execute("CREATE INDEX messages_by_conversation ON messages (conversation_id, seq)")
    db.execute("CREATE INDEX conversations_by_owner ON conversations (owner, updated_at)")


@migration
def m002_summaries(db: Schema) -> None:
    """Versioned running summaries; the counter lives on the conversation so it survives a clear."""
    d = db.dialect
    db.execute("ALTER TABLE conversations ADD COLUMN summary_version INTEGER NOT NULL DEFAULT 0")
    db.execute(
        f"""CREATE TABLE summaries (
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            text TEXT NOT NULL,
            covers_until TEXT NOT NULL,
            created_at {d.real} NOT NULL,
            PRIMARY KEY (conversation_id, version))"""
    )


@migration
def m003_vectors(db: Schema) -> None:
    """Embeddings by (conversation, model, message); removed with their message."""
    db.execute(
        f"""CREATE TABLE vectors (
            conversation_id TEXT NOT NULL,
            model TEXT NOT NULL,
            message_id TEXT NOT NULL,
            vector {db.dialect.blob} NOT NULL,
            PRIMARY KEY (conversation_id, model, message_id),
            FOREIGN KEY (conversation_id, message_id)
                REFERENCES messages (conversation_id, id) ON DELETE CASCADE)"""
    )
    # Deleting a message looks its vectors up by (conversation, message): index that path.
    db.execute("CREATE INDEX vectors_by_message ON vectors (conversation_id, message_id)")


@migration
def m004_conversation_totals(db: Schema) -> None:
    """Keep message and token totals on the conversation: listing stays O(conversations)."""
    for column in ("message_count", "total_tokens"):
        db.execute(f"ALTER TABLE conversations ADD COLUMN {column} BIGINT NOT NULL DEFAULT 0")
    db.execute(
        """UPDATE conversations SET
            message_count = (SELECT COUNT(*) FROM messages m
                             WHERE m.conversation_id = conversations.id),
            total_tokens = (SELECT COALESCE(SUM(m.tokens), 0) FROM messages m
                            WHERE m.conversation_id = conversations.id)"""
    )


@migration
def m005_conversation_versions(db: Schema) -> None:
    """A version that grows with each change to a conversation's messages or summary (caches in
    several processes check it), and client metadata (a JSON object of strings)."""
    db.execute("ALTER TABLE conversations ADD COLUMN version BIGINT NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE conversations ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}'")


@migration
def m006_api_keys(db: Schema) -> None:
    """The server's API keys: a hash and a display prefix, never the key; names never reused."""
    real = db.dialect.real
    db.execute(
        f"""CREATE TABLE api_keys (
            name TEXT PRIMARY KEY,
            key_hash TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            created_at {real} NOT NULL,
            last_used_at {real},
            revoked_at {real})"""
    )


@migration
def m007_turn_contexts(db: Schema) -> None:
    """What the last turn of a conversation sent (the server's context inspector)."""
    db.execute(
        f"""CREATE TABLE turn_contexts (
            conversation_id TEXT PRIMARY KEY REFERENCES conversations(id) ON DELETE CASCADE,
            record TEXT NOT NULL,
            created_at {db.dialect.real} NOT NULL)"""
    )


@migration
def m008_responses(db: Schema) -> None:
    """The server's Responses API: a response id, its owner, its conversation and its JSON."""
    db.execute(
        f"""CREATE TABLE responses (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            record TEXT NOT NULL,
            created_at {db.dialect.real} NOT NULL)"""
    )


def migration_names(migrations: Sequence[Migration] = MIGRATIONS) -> list[str]:
    return [m.__name__ for m in migrations]


def apply_migrations(db: Schema, migrations: Sequence[Migration] = MIGRATIONS) -> list[str]:
    """Apply the pending migrations in order; returns the names applied now.

    Raises MigrationError when the database records a migration this code does not know.
    """
    db.execute(
        f"CREATE TABLE IF NOT EXISTS _memchat_migrations "
        f"(name TEXT PRIMARY KEY, applied_at {db.dialect.real} NOT NULL)"
    )
    rows = db.execute("SELECT name FROM _memchat_migrations").fetchall()
    applied = {row[0] for row in rows}
    known = migration_names(migrations)
    unknown = sorted(applied - set(known))
    if unknown:
        raise MigrationError(
            f"this database was written by a newer memchat (unknown migration {unknown[0]!r}); "
            "upgrade memchat"
        )
    done = []
    for fn in migrations:
        if fn.__name__ not in applied:
            fn(db)
            db.execute(
                "INSERT INTO _memchat_migrations (name, applied_at) VALUES (?, ?)",
                (fn.__name__, time.time()),
            )
            done.append(fn.__name__)
    return done

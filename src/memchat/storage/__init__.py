"""Stores behind the ``memchat.core.store.Store`` protocol, and ``open_store(url)`` to pick one.

==============================  ==========================================
``memory:``                     InMemoryStore (gone when the process ends)
``sqlite:///abs/path.db``       SQLiteStore at an absolute path
``sqlite:rel/path.db``          SQLiteStore at a path relative to the cwd
``path/to/file.db``             SQLiteStore (a plain path, ``~`` expanded)
``sqlite::memory:``             SQLiteStore in memory (tests)
``postgresql://u:p@h/db``       PostgresStore (also ``postgres://``); add
                                ``?schema=NAME`` to keep the tables in a schema
==============================  ==========================================

Nothing is opened or imported at import time; psycopg loads only for a PostgreSQL URL.
"""

from __future__ import annotations

import re

from ..core.errors import ConfigError
from ..core.store import Store
from ._keys import InMemoryKeyStore
from .memory import InMemoryStore
from .postgres import PostgresStore, split_schema
from .sqlite import SQLiteStore

__all__ = ["InMemoryKeyStore", "InMemoryStore", "PostgresStore", "SQLiteStore", "open_store"]

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]+):")
_KNOWN = "memory:, sqlite:///path, a file path, postgresql://…"


def open_store(url: str) -> Store:
    """Open (and migrate) the store a URL names. Raises ConfigError for an unknown scheme."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"no store given; use one of: {_KNOWN}")
    url = url.strip()
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    if scheme == "memory":
        if url.lower() not in ("memory:", "memory://"):
            raise ConfigError(f"the memory store takes no path: use 'memory:', not {url!r}")
        return InMemoryStore()
    if scheme in ("postgresql", "postgres"):
        dsn, schema = split_schema(url)
        return PostgresStore(dsn, schema=schema)
    if scheme == "sqlite":
        return SQLiteStore(_sqlite_path(url[len("sqlite:") :]))
    if scheme:
        raise ConfigError(f"unknown store {scheme!r} in {url!r}; use one of: {_KNOWN}")
    return SQLiteStore(url)


def _sqlite_path(rest: str) -> str:
    """``sqlite:///abs`` → ``/abs``; ``sqlite://rel`` and ``sqlite:rel`` → ``rel``."""
    if rest.startswith("//"):
        rest = rest[2:]
    if not rest:
        raise ConfigError("sqlite: needs a file path, e.g. sqlite:///home/me/memchat.db")
    return rest

"""The ``KeyStore`` half of every store: the server's API keys, hashed, revoked by name.

``SQLKeys`` is mixed into the SQL stores (it needs their ``_tx``); ``InMemoryKeyStore`` is the
public fake, and the in-memory store's own key table. Both pass one contract suite.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from ..core.errors import AlreadyExists, InputError, NotFound
from ..core.keys import ApiKey
from ._common import IntegrityConflict, check_key_name, check_text
from ._sql import Tx

__all__ = ["InMemoryKeyStore", "SQLKeys"]

_HASH = re.compile(r"[0-9a-f]{64}")
_COLUMNS = "name, prefix, key_hash, created_at, last_used_at, revoked_at"


def _check_hash(value: object) -> str:
    text = check_text(value, "a key hash")
    if not _HASH.fullmatch(text):
        raise InputError("a key hash must be 64 lower-case hex digits (SHA-256)")
    return text


def _taken(name: str) -> AlreadyExists:
    return AlreadyExists(f"a key named {name!r} exists (names are never reused); pick another")


def _unknown(name: str) -> NotFound:
    return NotFound(f"no key named {name!r}; see `memchat keys list`")


def _key(row: Sequence[Any]) -> ApiKey:
    def stamp(value: Any) -> float | None:
        return None if value is None else float(value)

    return ApiKey(row[0], row[1], row[2], float(row[3]), stamp(row[4]), stamp(row[5]))


class SQLKeys:
    """``KeyStore`` on the ``api_keys`` table."""

    def _tx(self, write: bool = True) -> AbstractContextManager[Tx]:
        raise NotImplementedError

    def add_key(self, name: str, key_hash: str, prefix: str) -> ApiKey:
        key = ApiKey(check_key_name(name), check_text(prefix, "a key prefix"),
                     _check_hash(key_hash), time.time())  # fmt: skip
        try:
            with self._tx() as tx:
                tx.execute(
                    "INSERT INTO api_keys (name, prefix, key_hash, created_at) VALUES (?, ?, ?, ?)",
                    (key.name, key.prefix, key.hash, key.created_at),
                )
        except IntegrityConflict as e:
            raise _taken(key.name) from e
        return key

    def list_keys(self) -> list[ApiKey]:
        with self._tx(write=False) as tx:
            rows = tx.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, name")
            return [_key(r) for r in rows.fetchall()]

    def find_key(self, key_hash: str) -> ApiKey | None:
        with self._tx(write=False) as tx:
            sql = f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = ?"
            row = tx.execute(sql, (check_text(key_hash, "a key hash"),)).fetchone()
        return None if row is None else _key(row)

    def revoke_key(self, name: str) -> ApiKey:
        name = check_key_name(name)
        with self._tx() as tx:
            tx.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (time.time(), name),
            )
            row = tx.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE name = ?", (name,))
            found = row.fetchone()
        if found is None:
            raise _unknown(name)
        return _key(found)

    def touch_key(self, key_hash: str, when: float) -> None:
        with self._tx() as tx:
            tx.execute(
                "UPDATE api_keys SET last_used_at = ? WHERE key_hash = ?"
                " AND (last_used_at IS NULL OR last_used_at < ?)",
                (float(when), check_text(key_hash, "a key hash"), float(when)),
            )

    def has_keys(self) -> bool:
        with self._tx(write=False) as tx:
            return tx.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None


class InMemoryKeyStore:
    """``KeyStore`` in a dict (a fake for tests; gone with the object)."""

    def __init__(self) -> None:
        self._keys_lock = threading.Lock()
        self._keys: dict[str, ApiKey] = {}  # by name, in creation order

    def add_key(self, name: str, key_hash: str, prefix: str) -> ApiKey:
        key = ApiKey(check_key_name(name), check_text(prefix, "a key prefix"),
                     _check_hash(key_hash), time.time())  # fmt: skip
        with self._keys_lock:
            if key.name in self._keys:
                raise _taken(key.name)
            if any(k.hash == key.hash for k in self._keys.values()):
                raise AlreadyExists("that key is already stored")
            self._keys[key.name] = key
        return key

    def list_keys(self) -> list[ApiKey]:
        with self._keys_lock:
            return sorted(self._keys.values(), key=lambda k: (k.created_at, k.name))

    def find_key(self, key_hash: str) -> ApiKey | None:
        key_hash = check_text(key_hash, "a key hash")
        with self._keys_lock:
            return next((k for k in self._keys.values() if k.hash == key_hash), None)

    def revoke_key(self, name: str) -> ApiKey:
        name = check_key_name(name)
        with self._keys_lock:
            key = self._keys.get(name)
            if key is None:
                raise _unknown(name)
            if key.revoked_at is None:
                key = self._keys[name] = replace(key, revoked_at=time.time())
            return key

    def touch_key(self, key_hash: str, when: float) -> None:
        with self._keys_lock:
            for name, key in self._keys.items():
                if key.hash == key_hash and (key.last_used_at or 0.0) < when:
                    self._keys[name] = replace(key, last_used_at=float(when))

    def has_keys(self) -> bool:
        with self._keys_lock:
            return bool(self._keys)

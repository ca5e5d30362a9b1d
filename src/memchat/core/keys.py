"""API keys of ``memchat serve``: made once, stored only as a hash, revoked by name.

A key is ``mc-`` and 32 random bytes (URL-safe base64): too much entropy to guess, so a plain
SHA-256 of it is a safe thing to store (a slow password hash protects low-entropy secrets;
this one has none to protect). The store keeps the hash, the first characters for display
(``mc-abcd…``) and the key's dates; the key itself is printed once and never kept.

A key's *owner* (the ``owner`` of its conversations) is the first 16 hex digits of its hash:
the same formula the ``--keys`` flag has always used, so a key owns the same conversations
however the server learns of it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "KEY_PREFIX",
    "ApiKey",
    "KeyStore",
    "key_hash",
    "key_owner",
    "key_prefix",
    "new_key",
    "same_hash",
]

KEY_PREFIX = "mc-"
SHOWN = len(KEY_PREFIX) + 4  # characters of a key kept for display


def new_key() -> str:
    """A new random key (the only time it exists in clear)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    """The SHA-256 of a key, hex: what the store keeps."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_owner(key: str) -> str:
    """The owner of a key's conversations."""
    return key_hash(key)[:16]


def key_prefix(key: str) -> str:
    """The start of a key, enough to tell keys apart in a list: ``mc-abcd``."""
    return key[:SHOWN]


def same_hash(a: str, b: str) -> bool:
    """Compare two hashes in constant time."""
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key: its name, display prefix, hash and dates (Unix seconds)."""

    name: str
    prefix: str
    hash: str
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None

    @property
    def owner(self) -> str:
        return self.hash[:16]

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@runtime_checkable
class KeyStore(Protocol):
    """Where the server's keys live (every store implements it; names are unique forever)."""

    def add_key(self, name: str, key_hash: str, prefix: str) -> ApiKey:
        """Store a new key; AlreadyExists if the name was ever used (revoked keys included)."""
        ...

    def list_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        ...

    def find_key(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, revoked or not; None if there is none."""
        ...

    def revoke_key(self, name: str) -> ApiKey:
        """Revoke a key by name (again: no change); NotFound for an unknown name."""
        ...

    def touch_key(self, key_hash: str, when: float) -> None:
        """Record that the key was used at ``when``."""
        ...

    def has_keys(self) -> bool:
        """Whether any key was ever made (a revoked one counts: auth stays on)."""
        ...

"""Who is asking: bearer keys from the store (``memchat keys``) and from ``--keys``.

    no keys anywhere        an open server: every caller is the owner "" (loopback only,
                            unless ``--no-auth``; ``memchat serve`` checks that at start)
    any key in the store    a valid key is required; a revoked one (even the only one) keeps
    (or --keys given)       the server closed. Each key is its own owner.
    --no-auth               no key is ever asked for, even when the store has some

A stored key is looked up by its SHA-256 on every request, so a revoked key is refused on its
next request and a new one works at once, in every worker. While the store has no keys, that
is re-checked at most every ``RECHECK`` seconds (a key created meanwhile closes the server
within that time). ``last_used_at`` is written at most every ``TOUCH_EVERY`` seconds per key
and process. Hashes are compared with ``hmac.compare_digest``. No error names a key.

Keys never leave the server: not in an error body, not in a log line.

memchat's own messages never name a key, but an upstream's error text is passed on in ours
(``upstream answered 401: …``), and a misconfigured upstream may echo the key it was sent.
``Scrubber`` replaces every known secret (the provider's key, the ``--keys``) in the text of
each error the server answers with, and ``scrub_logs`` does the same to every log record of
the process (``memchat serve`` installs it; nothing is changed at import).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from ...core.errors import StorageError
from ...core.keys import KeyStore, key_hash, key_owner, same_hash
from ._errors import ApiError

__all__ = ["Auth", "RECHECK", "REDACTED", "Scrubber", "TOUCH_EVERY", "scrub_logs", "unauthorized"]


RECHECK = 1.0
TOUCH_EVERY = 60.0

log = logging.getLogger("memchat.server")


def unauthorized() -> ApiError:
    message = "missing, invalid or revoked API key: send Authorization: Bearer <key>"
    return ApiError(401, message, "invalid_api_key")


def bearer(header: str) -> str:
    scheme, _, key = header.strip().partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


class Auth:
    """``quick(header)``: the owner when the store need not be asked, else None; then
    ``lookup(header)`` (blocking: it reads the store). Both raise ApiError 401."""

    def __init__(
        self,
        *,
        static: Iterable[str] = (),
        keys: KeyStore | None = None,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._static = {key_hash(k): key_owner(k) for k in static}
        self._keys = keys if enabled else None
        self.enabled = enabled
        self._clock = clock
        self._lock = threading.Lock()
        self._stored_any = False  # once true, stays true: keys are revoked, never deleted
        self._checked_at = -RECHECK
        self._touched: dict[str, float] = {}

    def quick(self, header: str) -> str | None:
        if not self.enabled:
            return ""
        digest = key_hash(bearer(header))
        owner = ""
        for known, who in self._static.items():  # every one, so the time says nothing
            if same_hash(known, digest):
                owner = who
        if owner:
            return owner
        if self._keys is None or (not self._stored_any and self._fresh()):
            if self._static:
                raise unauthorized()
            return ""
        return None

    def _fresh(self) -> bool:
        return self._clock() - self._checked_at < RECHECK

    def lookup(self, header: str) -> str:
        keys = self._keys
        if keys is None:
            raise unauthorized()
        if not self._stored_any:
            self._stored_any = keys.has_keys()
            self._checked_at = self._clock()
            if not self._stored_any and not self._static:
                return ""
        key = bearer(header)
        digest = key_hash(key)
        found = keys.find_key(digest) if key else None
        if found is None or found.revoked or not same_hash(found.hash, digest):
            raise unauthorized()
        self._touch(keys, digest)
        return found.owner

    def _touch(self, keys: KeyStore, digest: str) -> None:
        now = self._clock()
        with self._lock:
            if now - self._touched.get(digest, -TOUCH_EVERY) < TOUCH_EVERY:
                return
            self._touched[digest] = now
        try:
            keys.touch_key(digest, time.time())
        except StorageError as exc:  # a busy SQLite file must not fail the request
            log.warning("could not record a key's last use: %s", exc)


REDACTED = "[redacted]"
SHORTEST = 8  # shorter "secrets" (a test's "k", "none") would redact ordinary words


class Scrubber:
    """``scrub(text)``: ``text`` with every secret replaced by ``[redacted]``."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        found = {s for s in secrets if s and len(s) >= SHORTEST}
        self._secrets = sorted(found, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def scrub_logs(scrub: Scrubber) -> None:
    """Scrub every log record made from now on in this process (message, args, traceback)."""
    if not scrub:
        return
    make = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logging's to report
            return record
        if scrub(text) != text:
            _scrub_record(record, text, scrub)
        if record.exc_info:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return record

    logging.setLogRecordFactory(factory)


def _scrub_record(record: logging.LogRecord, text: str, scrub: Scrubber) -> None:
    """Scrub the record's format and arguments, keeping them apart where that is enough:
    formatters that read ``args`` themselves (uvicorn's access log) fail on ``None``."""
    if isinstance(record.args, tuple) and isinstance(record.msg, str):
        args = record.args
        record.msg = scrub(record.msg)
        record.args = tuple(scrub(a) if isinstance(a, str) else a for a in args)
        try:
            kept = record.getMessage()
            if scrub(kept) == kept:
                return
        except Exception:  # noqa: BLE001 - then the whole text, formatted once, below
            pass
    record.msg, record.args = scrub(text), None

"""Keys never leave the server: not in an error body, not in a log line.

memchat's own messages never name a key, but an upstream's error text is passed on in ours
(``upstream answered 401: …``), and a misconfigured upstream may echo the key it was sent.
``Scrubber`` replaces every known secret (the provider's key, the ``--keys``) in the text of
each error the server answers with, and ``scrub_logs`` does the same to every log record of
the process (``memchat serve`` installs it; nothing is changed at import).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

__all__ = ["REDACTED", "Scrubber", "scrub_logs"]

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
        record.msg, record.args = scrub(text), None
        if record.exc_info:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return record

    logging.setLogRecordFactory(factory)

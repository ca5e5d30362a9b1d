"""The retry policy for OpenAI-compatible providers: the openai SDK's own, run where it shows.

The SDK would retry inside ``create()``, where nobody can see it: a user waiting out a rate limit
would stare at an empty reply for up to a minute. memchat turns the SDK's retries off for the
chat stream and runs this policy itself, so the stream can say "rate limited (429) — retrying
in 3 s" while it waits. The policy is the SDK's (``openai/_base_client.py``):

- retry 408, 409, 429, 5xx and connection errors (timeouts included); obey ``x-should-retry``;
- wait what ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date) say when that is
  more than 0 and at most ``MAX_RETRY_AFTER``; never retry when they ask for longer;
- otherwise back off exponentially from ``INITIAL_DELAY``, capped at ``MAX_DELAY``, minus up to
  25 % jitter;
- never retry once a token has streamed (the caller only retries opening the stream).
"""

from __future__ import annotations

import contextlib
import email.utils
import math
import random
import time
from collections.abc import Callable, Mapping

__all__ = [
    "INITIAL_DELAY",
    "MAX_DELAY",
    "MAX_RETRY_AFTER",
    "delay",
    "describe",
    "retry_after",
    "should_retry",
]

INITIAL_DELAY = 0.5
MAX_DELAY = 8.0
MAX_RETRY_AFTER = 120.0

_REASONS = {408: "request timeout", 409: "conflict", 429: "rate limited"}


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks to wait (``retry-after-ms``, then ``retry-after`` as a number
    or an HTTP date); None when it says nothing readable."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            with contextlib.suppress(ValueError):
                seconds = float(value) / scale
                return max(0.0, seconds) if math.isfinite(seconds) else MAX_RETRY_AFTER + 1
    return _http_date(headers.get("retry-after"))


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else float(email.utils.mktime_tz(parsed) - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def should_retry(status: int | None, headers: Mapping[str, str]) -> bool:
    """Whether a failed attempt may be retried; ``status`` None is a connection error."""
    if status is None:
        return True
    wait = retry_after(headers)
    if wait is not None and wait > MAX_RETRY_AFTER:
        return False
    verdict = headers.get("x-should-retry")
    if verdict in ("true", "false"):
        return verdict == "true"
    return status in (408, 409, 429) or status >= 500


def delay(
    retries_taken: int, headers: Mapping[str, str], rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry number ``retries_taken + 1``."""
    wait = retry_after(headers)
    if wait is not None and 0 < wait <= MAX_RETRY_AFTER:
        return wait
    backoff = min(INITIAL_DELAY * 2.0 ** min(retries_taken, 100), MAX_DELAY)
    return backoff * (1 - 0.25 * rand())


def describe(status: int | None, wait: float, retry: int, retries: int) -> str:
    """What the user reads while the retry waits: 'rate limited (429) — retrying in 3 s …'."""
    if status is None:
        what = "the provider could not be reached"
    elif status >= 500:
        what = f"the provider is failing ({status})"
    else:
        what = f"{_REASONS.get(status, 'refused')} ({status})"
    return f"{what} — retrying in {_duration(wait)} (retry {retry} of {retries})"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds >= 10 or seconds.is_integer():
        return f"{seconds:.0f} s"
    return f"{seconds:.1f} s"

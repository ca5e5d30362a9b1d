"""The retry policy for providers, as a table (the openai SDK's policy, run by memchat)."""

from __future__ import annotations

import email.utils
import time

import pytest

from memchat.backends import _retry


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (None, {}, True),  # connection error or timeout
        (408, {}, True),
        (409, {}, True),
        (429, {}, True),
        (500, {}, True),
        (503, {}, True),
        (400, {}, False),
        (401, {}, False),
        (404, {}, False),
        (422, {}, False),
        (400, {"x-should-retry": "true"}, True),
        (503, {"x-should-retry": "false"}, False),
        (429, {"retry-after": "121"}, False),  # longer than MAX_RETRY_AFTER: give up now
        (429, {"retry-after": "120"}, True),
        (429, {"retry-after-ms": "500"}, True),
        (429, {"retry-after": "soon"}, True),  # unreadable: back off as usual
    ],
)
def test_should_retry(status: int | None, headers: dict[str, str], expected: bool) -> None:
    assert _retry.should_retry(status, headers) is expected


@pytest.mark.parametrize(
    ("retries_taken", "headers", "rand", "expected"),
    [
        (0, {}, 0.0, 0.5),
        (0, {}, 1.0, 0.375),  # at most 25 % jitter
        (1, {}, 0.0, 1.0),
        (3, {}, 0.0, 4.0),
        (4, {}, 0.0, 8.0),
        (10, {}, 0.0, 8.0),  # capped at MAX_DELAY
        (0, {"retry-after": "3"}, 0.5, 3.0),  # the server's delay wins, without jitter
        (0, {"retry-after-ms": "250", "retry-after": "9"}, 0.5, 0.25),  # ms first
        (2, {"retry-after": "0"}, 0.0, 2.0),  # zero: back off instead
        (0, {"retry-after": "-4"}, 0.0, 0.5),
    ],
)
def test_delay(retries_taken: int, headers: dict[str, str], rand: float, expected: float) -> None:
    assert _retry.delay(retries_taken, headers, rand=lambda: rand) == pytest.approx(expected)


def test_retry_after_reads_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert _retry.retry_after({"retry-after": when}) == pytest.approx(30, abs=2)
    assert _retry.retry_after({"retry-after": "not a date"}) is None
    assert _retry.retry_after({}) is None


@pytest.mark.parametrize(
    ("status", "wait", "expected"),
    [
        (429, 3.0, "rate limited (429) — retrying in 3 s (retry 1 of 2)"),
        (503, 0.42, "the provider is failing (503) — retrying in 420 ms (retry 1 of 2)"),
        (None, 1.9, "the provider could not be reached — retrying in 1.9 s (retry 1 of 2)"),
        (408, 8.0, "request timeout (408) — retrying in 8 s (retry 1 of 2)"),
        (409, 12.6, "conflict (409) — retrying in 13 s (retry 1 of 2)"),
    ],
)
def test_describe(status: int | None, wait: float, expected: str) -> None:
    assert _retry.describe(status, wait, 1, 2) == expected

"""The fault-injecting upstream: ``tests/stubs/openai_stub.py`` with real resets and timestamps.

``FaultyUpstream`` is the stub (a real OpenAI-compatible HTTP server on 127.0.0.1) with two
additions: a hang-up is a TCP reset (RST, ``SO_LINGER`` 0) instead of an orderly close, and each
request is answered from the script of the ``[case NAME]`` tag in its last user message, with
its arrival time noted per case. So many cases run at once against one upstream (one
``memchat serve`` in front of it), and each case's attempts and the backoff between them are
measured apart. ``FAULTS`` is the fault table every face is tried against.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.stubs import openai_stub
from tests.stubs.openai_stub import (
    OpenAIStub,
    Scripted,
    context_length_exceeded,
    cut_mid_stream,
    drop,
    events,
    ok,
    status,
    unauthorized,
)

__all__ = ["FAULTS", "REPLY", "TIMEOUT", "Fault", "FaultyUpstream", "case_of"]

TIMEOUT = 0.6  # the request timeout every face is given (--timeout): a hang is past it
REPLY = "the whole reply, streamed in pieces"


CASE = re.compile(r"\[case ([\w.:-]+)\]")


def case_of(body: Any) -> str:
    """The ``[case NAME]`` tag of the request's last user message ("" when none)."""
    users = [m for m in (body or {}).get("messages") or () if m.get("role") == "user"]
    content = users[-1].get("content") if users else ""
    found = CASE.search(content if isinstance(content, str) else json.dumps(content))
    return found.group(1) if found else ""


class _Handler(openai_stub._Handler):
    """The stub's handler, answering each ``[case NAME]`` from that case's own script."""

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.loads(raw or b"null")
        rec = self._record(body)
        stub: FaultyUpstream = self.server.stub  # type: ignore[assignment]
        if not self.path.endswith("/chat/completions"):
            return self._json(404, status(404).body)
        case = case_of(body)
        with stub.lock:
            stub.arrivals.setdefault(case, []).append(time.monotonic())
            script = stub.scripts.get(case)
            if script:
                scripted = script.popleft()
            else:
                scripted = stub.reply_for(case) if stub.reply_for and case else stub.default
        try:
            time.sleep(scripted.latency)
            self._answer(scripted, body or {})
        except (BrokenPipeError, ConnectionResetError):
            rec.aborted = True
            self.close_connection = True

    def _hang_up(self) -> None:
        self.close_connection = True
        self.wfile.flush()
        time.sleep(0.05)  # let the client read what was sent: a reset may destroy unread data
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()  # RST: "connection reset by peer" on the client


class FaultyUpstream(OpenAIStub):
    """The stub; ``script(case, *answers)`` makes requests tagged ``[case NAME]`` get
    ``answers`` in turn (then ``reply_for(NAME)`` if set, else ``default``); ``arrivals[case]``
    are their arrival times."""

    def __init__(self) -> None:
        super().__init__()
        self._server.RequestHandlerClass = _Handler
        self.scripts: dict[str, deque[Scripted]] = {}
        self.arrivals: dict[str, list[float]] = {}
        self.reply_for: Callable[[str], Scripted] | None = None

    def script(self, case: str, *answers: Scripted) -> None:
        with self.lock:
            self.scripts[case] = deque(answers)
            self.arrivals[case] = []

    def attempts(self, case: str) -> int:
        return len(self.arrivals.get(case, []))

    def gaps(self, case: str) -> list[float]:
        """Seconds between one attempt's arrival and the next's."""
        times = self.arrivals.get(case, [])
        return [b - a for a, b in zip(times, times[1:], strict=False)]


@dataclass(frozen=True)
class Fault:
    """One upstream fault and what memchat's documented policy does with it.

    ``retries``: "backend" (the provider retry policy: 408/409/429/5xx, connection errors and
    timeouts, backoff, Retry-After), "session" (a context overflow: the session trims harder and
    tries once more), or "" (never retried). ``error``: the memchat error when the fault persists
    (None: the turn completes). ``status``/``code``: the server's answer then. ``min_gap``: the
    least wait before the retry. ``midstream``: the fault comes after the first token.
    """

    name: str
    scripted: Any  # () -> Scripted
    retries: str
    error: str | None
    status: int = 200
    code: str = ""
    min_gap: float = 0.0
    midstream: bool = False

    def __str__(self) -> str:
        return self.name


def _slow() -> Scripted:
    return ok(REPLY, chunk_size=6, delay=TIMEOUT / 3)  # 6 pieces over ~1.2 s, each gap < timeout


FAULTS = [
    Fault(
        "429-retry-after",
        lambda: status(429, headers={"retry-after": "1"}),
        "backend",
        "RateLimited",
        429,
        "rate_limit_exceeded",
        min_gap=0.95,
    ),
    Fault(
        "429",
        lambda: status(429),
        "backend",
        "RateLimited",
        429,
        "rate_limit_exceeded",
        min_gap=0.37,
    ),
    Fault(
        "500",
        lambda: status(500),
        "backend",
        "BackendUnavailable",
        502,
        "upstream_unavailable",
        min_gap=0.37,
    ),
    Fault(
        "502",
        lambda: status(502),
        "backend",
        "BackendUnavailable",
        502,
        "upstream_unavailable",
        min_gap=0.37,
    ),
    Fault(
        "503",
        lambda: status(503),
        "backend",
        "BackendUnavailable",
        502,
        "upstream_unavailable",
        min_gap=0.37,
    ),
    Fault(
        "400",
        lambda: status(400, message="unsupported value: 'bogus'"),
        "",
        "BadRequest",
        502,
        "backend_error",
    ),
    Fault("401", unauthorized, "", "AuthError", 502, "upstream_auth_error"),
    Fault(
        "context-length-exceeded",
        context_length_exceeded,
        "session",
        "ContextTooLong",
        400,
        "context_length_exceeded",
    ),
    Fault(
        "hang-past-timeout",
        lambda: drop(after=TIMEOUT * 4),
        "backend",
        "BackendTimeout",
        504,
        "timeout",
        min_gap=0.37,  # the backoff floor: the client's timeout may start before the arrival
    ),
    Fault(
        "reset-before-any-byte",
        lambda: drop(0),
        "backend",
        "BackendUnavailable",
        502,
        "upstream_unavailable",
        min_gap=0.37,
    ),
    Fault(
        "reset-mid-stream",
        lambda: cut_mid_stream(2, REPLY),
        "",
        "BackendUnavailable",
        502,
        "upstream_unavailable",
        midstream=True,
    ),
    Fault(
        "invalid-json",
        lambda: events("{not json"),
        "",
        "BackendUnavailable",
        502,
        "upstream_unavailable",
    ),
    Fault("very-slow-stream", _slow, "", None),
]

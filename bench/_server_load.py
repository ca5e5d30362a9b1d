"""The load client of bench_server: C concurrent streaming clients (httpx, async) on one path.

One cell = one path at one concurrency: a fresh ``httpx.AsyncClient`` with at most C
connections (kept alive), a warm-up of 2 requests per client (connections opened, first-use
costs paid; not recorded), then C workers take requests from a shared count until N are done.
Per request: TTFB = request sent to the first SSE chunk with non-empty ``delta.content``;
total = request sent to the end of the response body. A request is an error unless it is a
200 whose content chunks join to exactly the upstream's reply and end with ``[DONE]``.
Stateful paths give each worker its own conversation (``X-Memchat-Conversation: new``, then
the id that header brings back; a new one every ``Conversations.TURNS`` turns, so histories
are equally long at every C) and send only the new user message; stateless paths send the
same two-message history every time (or ``history_rounds`` earlier rounds too). A 409
``conversation_busy`` is sent again after 2 ms, as docs/server.md tells clients to do: the
request's times run from its first try, and the 409s are counted.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench._common import percentile
from bench._server_upstream import CHUNKS, REPLY

HEADER = "X-Memchat-Conversation"
STATELESS_MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Say one short sentence about proxies."},
]


@dataclass(frozen=True)
class Target:
    name: str
    url: str  # ends in /v1
    model: str
    pid: int  # the process answering (its CPU time is read from /proc)
    stateful: bool = False
    history_rounds: int = 0  # stateless: send this many earlier rounds (0: just system + user)


class Busy(Exception):
    """A 409 conversation_busy: the client sends again (as docs/server.md says to)."""


BUSY_RETRIES = 200
BUSY_PAUSE = 0.002


@dataclass
class Cell:
    ttfb: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    busy: int = 0  # 409s answered and sent again (the request's times include the wait)
    wall: float = 0.0
    cpu: float = 0.0  # CPU seconds of the answering process during the measured phase
    client_cpu: float = 0.0  # CPU seconds of this (the client's) process, same phase

    def add(self, other: Cell) -> None:
        self.ttfb += other.ttfb
        self.total += other.total
        self.errors += other.errors
        self.busy += other.busy
        self.wall += other.wall
        self.cpu += other.cpu
        self.client_cpu += other.client_cpu

    def summary(self) -> dict[str, Any]:
        n = len(self.total)
        ms = 1e3
        return {
            "requests": n + len(self.errors),
            "ok": n,
            "errors": len(self.errors),
            "busy_409_retried": self.busy,
            "error_examples": sorted(set(self.errors))[:3],
            "ttfb_p50_ms": percentile(self.ttfb, 0.5) * ms,
            "ttfb_p99_ms": percentile(self.ttfb, 0.99) * ms,
            "total_p50_ms": percentile(self.total, 0.5) * ms,
            "total_p99_ms": percentile(self.total, 0.99) * ms,
            "throughput_rps": n / self.wall if self.wall else float("nan"),
            "server_cpu_ms_per_request": self.cpu / max(1, n) * ms,
            "client_cpu_ms_per_request": self.client_cpu / max(1, n) * ms,
        }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc; 0 if unreadable."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _request(client: httpx.AsyncClient, path: Target, messages: list[dict[str, str]],
                   conversation: str | None) -> tuple[float, float, str | None]:  # fmt: skip
    """(ttfb, total, conversation id from the reply); raises ValueError on a bad reply."""
    body = {"model": path.model, "messages": messages, "stream": True}
    headers = {HEADER: conversation} if conversation else {}
    texts: list[str] = []
    ttfb = None
    done = False
    start = time.perf_counter()
    async with client.stream("POST", path.url + "/chat/completions", json=body,
                             headers=headers) as response:  # fmt: skip
        if response.status_code == 409:
            await response.aread()
            raise Busy(response.text[:120])
        if response.status_code != 200:
            await response.aread()
            raise ValueError(f"HTTP {response.status_code}: {response.text[:120]}")
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                continue
            event = json.loads(data)
            if "error" in event:
                raise ValueError(f"stream error: {event['error'].get('code')}")
            for choice in event.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    if ttfb is None:
                        ttfb = time.perf_counter() - start
                    texts.append(text)
        total = time.perf_counter() - start
        cid = response.headers.get(HEADER)
    if not done or ttfb is None or "".join(texts) != REPLY:
        raise ValueError(f"bad reply: {len(texts)}/{CHUNKS} chunks, done={done}")
    return ttfb, total, cid


async def _send(
    client: httpx.AsyncClient,
    path: Target,
    messages: list[dict[str, str]],
    conversation: str | None,
    cell: Cell,
) -> tuple[float, float, str | None]:
    """``_request``, sent again after each 409 (up to BUSY_RETRIES); times from the first try."""
    start = time.perf_counter()
    for _ in range(BUSY_RETRIES):
        try:
            ttfb, total, cid = await _request(client, path, messages, conversation)
        except Busy:
            cell.busy += 1
            await asyncio.sleep(BUSY_PAUSE)
            continue
        waited = time.perf_counter() - start - total
        return ttfb + waited, total + waited, cid
    raise ValueError(f"409 conversation_busy {BUSY_RETRIES} times")


class Conversations:
    """Each client slot's conversation; a slot starts a new one after ``TURNS`` turns, so
    conversations (and the history memchat sends upstream) are as long at every C."""

    TURNS = 10

    def __init__(self) -> None:
        self._slots: dict[int, tuple[str, int]] = {}

    def name(self, slot: int) -> str:
        cid, turns = self._slots.get(slot, ("new", 0))
        return "new" if turns >= self.TURNS else cid

    def record(self, slot: int, cid: str | None) -> None:
        old, turns = self._slots.get(slot, ("", 0))
        if cid:
            self._slots[slot] = (cid, turns + 1 if cid == old else 1)


def _messages(path: Target, k: int) -> list[dict[str, str]]:
    if path.stateful:
        return [{"role": "user", "content": f"Question {k}: say one short sentence."}]
    if path.history_rounds:
        return long_history(path.history_rounds)
    return STATELESS_MESSAGES


def long_history(rounds: int) -> list[dict[str, str]]:
    """A system message, ``rounds`` user/assistant rounds, and the new question."""
    out = [STATELESS_MESSAGES[0]]
    for i in range(rounds):
        out.append({"role": "user", "content": f"Question {i}: say one short sentence."})
        out.append({"role": "assistant", "content": REPLY})
    return [*out, STATELESS_MESSAGES[1]]


async def _run(path: Target, c: int, n: int, conversations: Conversations) -> Cell:
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    timeout = httpx.Timeout(120.0, connect=30.0)
    cell = Cell()
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:

        async def one(slot: int, k: int, into: Cell) -> tuple[float, float]:
            conv = conversations.name(slot) if path.stateful else None
            ttfb, total, cid = await _send(client, path, _messages(path, k), conv, into)
            if path.stateful:
                conversations.record(slot, cid)
            return ttfb, total

        async def warm(slot: int) -> None:
            for k in range(2):
                await one(slot, k, Cell())

        await asyncio.gather(*(warm(slot) for slot in range(c)))
        left = [n]

        async def work(slot: int) -> None:
            while left[0] > 0:
                left[0] -= 1
                try:
                    ttfb, total = await one(slot, left[0], cell)
                except (httpx.HTTPError, ValueError) as exc:
                    cell.errors.append(f"{type(exc).__name__}: {exc}"[:160])
                else:
                    cell.ttfb.append(ttfb)
                    cell.total.append(total)

        cpu, mine, start = cpu_seconds(path.pid), time.process_time(), time.perf_counter()
        await asyncio.gather(*(work(slot) for slot in range(c)))
        cell.wall = time.perf_counter() - start
        cell.cpu = cpu_seconds(path.pid) - cpu
        cell.client_cpu = time.process_time() - mine
    return cell


def run_cell(path: Target, c: int, n: int, conversations: Conversations) -> Cell:
    """N streamed requests on ``path`` by C concurrent clients (after the warm-up)."""
    return asyncio.run(_run(path, c, n, conversations))

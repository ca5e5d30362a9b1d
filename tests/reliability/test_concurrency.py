"""Concurrency: 50 API keys on a real ``memchat serve`` and 50 web visitors, chatting at once.

Every request carries its sender's tag (``[case key-7:3]``) and the upstream answers each with
a reply naming that tag, so a reply, an upstream prompt or a stored message that reached the
wrong sender shows. Zero errors, zero cross-talk, no deadlock (every turn ends within the
timeout); the p50/p99 turn latency goes to the run's report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from tests.stubs.openai_stub import Scripted, ok
from tests.stubs.serve_process import Served

import memchat
from memchat.core.keys import key_hash, key_prefix, new_key
from memchat.storage import open_store

from .conftest import (
    WebProcess,
    hermetic_env,
    percentile,
    provider_flags,
    report,
    scale,
)
from .gradio_http import App, Visitor
from .upstream import CASE, FaultyUpstream

CLIENTS = 50
TURNS = scale(3, 20)


def tagged_reply(case: str) -> Scripted:
    return ok(f"reply to {case}", chunk_size=3, latency=0.05, delay=0.005)


def run_clients(clients: int, run: Callable[[int], list[float]]) -> list[float]:
    """``run(i)`` for every client at once; every turn's latency."""
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(run, i) for i in range(clients)]
        return [t for f in futures for t in f.result(timeout=300)]


def upstream_saw_only_its_own(up: FaultyUpstream, prefix: str) -> None:
    for req in up.chat_requests:
        tags = {
            CASE.search(m["content"]).group(1).split(":")[0]  # type: ignore[union-attr]
            for m in req.body["messages"]
            if CASE.search(m.get("content", ""))
        }
        assert len(tags) == 1 and next(iter(tags)).startswith(prefix), tags  # one sender a prompt


def test_50_api_keys_at_once_on_memchat_serve(upstream: FaultyUpstream, home: Path) -> None:
    db = home / "keys.db"
    store = open_store(f"sqlite:///{db}")
    keys = [new_key() for _ in range(CLIENTS)]
    for n, key in enumerate(keys[: CLIENTS // 2]):  # half stored (memchat keys), half --keys
        store.add_key(f"client-{n}", key_hash(key), key_prefix(key))
    store.close()
    upstream.reply_for, upstream.requests[:] = tagged_reply, []
    env = hermetic_env(home, MEMCHAT_SERVER_KEYS=",".join(keys[CLIENTS // 2 :]))
    args = [*provider_flags(upstream.url), "--store", f"sqlite:///{db}", "--strategy", "budget"]
    with Served(args, env) as served:

        def client(i: int) -> list[float]:
            http = httpx.Client(
                base_url=served.url,
                timeout=60,
                headers={
                    "authorization": f"Bearer {keys[i]}",
                    "X-Memchat-Conversation": "same-name",
                },
            )
            times = []
            for t in range(TURNS):
                tag, stream = f"key-{i}:{t}", t % 2 == 1
                body = {
                    "model": "m",
                    "stream": stream,
                    "messages": [{"role": "user", "content": f"[case {tag}] from {i}"}],
                }
                start = time.monotonic()
                got = http.post("/chat/completions", json=body)
                times.append(time.monotonic() - start)
                assert got.status_code == 200, got.text
                if stream:
                    assert f"reply to {tag}".replace(" ", "") in _sse_text(got.text).replace(
                        " ", ""
                    )
                else:
                    assert got.json()["choices"][0]["message"]["content"] == f"reply to {tag}"
            listed = http.get("/conversations/same-name/messages", params={"limit": 100}).json()
            contents = [m["content"] for m in listed["data"]]
            expected = [
                x
                for t in range(TURNS)
                for x in (f"[case key-{i}:{t}] from {i}", f"reply to key-{i}:{t}")
            ]
            assert contents == expected  # its own turns, whole, in order, nothing of others'
            http.close()
            return times

        started = time.monotonic()
        times = run_clients(CLIENTS, client)
        wall = time.monotonic() - started
        log = served.log()
    upstream.reply_for = None
    upstream_saw_only_its_own(upstream, "key-")
    assert len(times) == CLIENTS * TURNS and "Traceback" not in log
    report(
        f"server, {CLIENTS} keys x {TURNS} turns at once: {len(times)} turns in {wall:.1f} s, "
        f"0 errors, 0 cross-talk; turn latency p50 {percentile(times, 50) * 1000:.0f} ms, "
        f"p99 {percentile(times, 99) * 1000:.0f} ms (upstream 50 ms + stream)"
    )


def _sse_text(body: str) -> str:
    import json

    out = []
    for line in body.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in json.loads(line[6:]).get("choices", []):
                out.append(choice["delta"].get("content") or "")
    return "".join(out)


def test_50_web_visitors_at_once(upstream: FaultyUpstream, home: Path) -> None:
    db = home / "visitors.db"
    upstream.reply_for, upstream.requests[:] = tagged_reply, []
    flags = [*provider_flags(upstream.url), "--strategy", "budget"]
    with WebProcess(flags, hermetic_env(home), db) as web:
        app = App.read(web.url)
        owners: dict[int, str] = {}

        def visitor(i: int) -> list[float]:
            v = Visitor(app)
            v.open()
            times = []
            for t in range(TURNS):
                tag = f"web-{i}:{t}"
                start = time.monotonic()
                chat = v.send(f"[case {tag}] from visitor {i}")
                times.append(time.monotonic() - start)
                assert chat[-1] == {"role": "assistant", "content": f"reply to {tag}"}, chat[-2:]
                assert len(chat) == 2 * (t + 1)  # its own conversation only
            owners[i] = v.owner
            v.close()
            return times

        started = time.monotonic()
        times = run_clients(CLIENTS, visitor)
        wall = time.monotonic() - started
        log = web.log()
    upstream.reply_for = None
    upstream_saw_only_its_own(upstream, "web-")
    assert "Traceback" not in log
    store = open_store(f"sqlite:///{db}")
    try:
        for i, owner in owners.items():
            [conv] = store.list_conversations(owner=owner)
            got = [m.content for m in store.load(conv.id)]
            assert got == [
                x
                for t in range(TURNS)
                for x in (f"[case web-{i}:{t}] from visitor {i}", f"reply to web-{i}:{t}")
            ]
    finally:
        store.close()
    assert len(set(owners.values())) == CLIENTS
    report(
        f"web, {CLIENTS} visitors x {TURNS} turns at once (Gradio queue over HTTP): "
        f"{len(times)} turns in {wall:.1f} s, 0 errors, 0 cross-talk; turn latency p50 "
        f"{percentile(times, 50) * 1000:.0f} ms, p99 {percentile(times, 99) * 1000:.0f} ms"
    )


_ = memchat  # the public package is what the keys above are made for

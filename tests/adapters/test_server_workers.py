"""One history across worker processes: real `memchat serve` processes sharing the real
PostgreSQL, in front of the OpenAI stub (which records every request it gets).

Two processes on two ports stand for two workers (any load balancer in front would do the
same); ``--workers 2`` is checked too. Each test has its own PostgreSQL schema.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.stubs.openai_stub import OpenAIStub, ok, status
from tests.stubs.serve_process import Served

from memchat.adapters.server import HEADER
from memchat.core.keys import key_hash, key_prefix, new_key
from memchat.storage import PostgresStore

DEFAULT_PG_DSN = "postgresql://memchat:memchat@127.0.0.1:5432/memchat_test"
PROVIDER_KEY = "sk-provider-" + uuid.uuid4().hex


@pytest.fixture
def pg(tmp_path: Any) -> Iterator[tuple[str, str]]:
    """(dsn, store url) of a fresh schema, dropped after the test; fails if unreachable."""
    import psycopg

    dsn = os.environ.get("MEMCHAT_TEST_PG_DSN", DEFAULT_PG_DSN)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.Error as e:
        pytest.fail(f"PostgreSQL is not reachable (bash scripts/pg_setup.sh): {e}", False)
    yield dsn, f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub() as s:
        yield s


def serve(stub: OpenAIStub, store: str, home: Any, *extra: str) -> Served:
    args = ["--backend", "openai", "--base-url", stub.url, "--model", "gpt-4o-mini",
            "--strategy", "cache", "--store", store, *extra]  # fmt: skip
    env = {"MEMCHAT_HOME": str(home), "OPENAI_API_KEY": PROVIDER_KEY}
    return Served(args, env)


def make_key(dsn: str, url: str, name: str) -> str:
    schema = url.rsplit("schema=", 1)[1]
    secret = new_key()
    with PostgresStore(dsn, schema=schema) as store:
        store.add_key(name, key_hash(secret), key_prefix(secret))
    return secret


def send(served: Served, key: str, cid: str, text: str, *, stream: bool = False,
         timeout: float = 30) -> httpx.Response:  # fmt: skip
    body = {"model": "m", "stream": stream, "messages": [{"role": "user", "content": text}]}
    headers = {HEADER: cid, "authorization": f"Bearer {key}"}
    return httpx.post(served.url + "/chat/completions", json=body, headers=headers,
                      timeout=timeout)  # fmt: skip


def upstream_turns(stub: OpenAIStub, n: int = -1) -> list[tuple[str, str]]:
    body = stub.chat_requests[n].body
    return [(m["role"], m["content"]) for m in body["messages"] if m["role"] != "system"]


def stored(served: Served, key: str, cid: str) -> list[dict[str, Any]]:
    got = httpx.get(f"{served.url}/conversations/{cid}/messages", params={"limit": 100},
                    headers={"authorization": f"Bearer {key}"})  # fmt: skip
    assert got.status_code == 200, got.text
    data: list[dict[str, Any]] = got.json()["data"]
    return data


@pytest.mark.postgres
def test_alternating_turns_on_two_workers_send_every_earlier_turn(
    pg: tuple[str, str], stub: OpenAIStub, tmp_path: Any
) -> None:
    dsn, url = pg
    key = make_key(dsn, url, "app")
    replies = [f"reply number {n}" for n in range(1, 7)]
    stub.enqueue(*(ok(text) for text in replies))
    bodies: list[str] = []
    with serve(stub, url, tmp_path / "a") as a, serve(stub, url, tmp_path / "b") as b:
        expected: list[tuple[str, str]] = []
        for n in range(1, 7):
            worker = (a, b)[n % 2]
            got = send(worker, key, "shared", f"turn {n}", stream=n % 3 == 0)
            assert got.status_code == 200, got.text
            bodies.append(got.text)
            expected.append(("user", f"turn {n}"))
            assert upstream_turns(stub) == expected, f"turn {n} on worker {'ab'[n % 2]}"
            expected.append(("assistant", replies[n - 1]))
        assert [(m["role"], m["content"]) for m in stored(a, key, "shared")] == expected
        context = httpx.get(f"{a.url}/conversations/shared/context",
                            headers={"authorization": f"Bearer {key}"}).json()  # fmt: skip
        assert [m["content"] for m in context["messages"]][-1] == "turn 6"  # made on b
        logs = a.log() + b.log()
    for text in [*bodies, logs]:
        assert PROVIDER_KEY not in text and key not in text
    assert stub.chat_requests[0].headers["authorization"] == f"Bearer {PROVIDER_KEY}"


@pytest.mark.postgres
def test_two_keys_and_a_revocation_across_workers(
    pg: tuple[str, str], stub: OpenAIStub, tmp_path: Any
) -> None:
    dsn, url = pg
    alice, bob = make_key(dsn, url, "alice"), make_key(dsn, url, "bob")
    with serve(stub, url, tmp_path / "a") as a, serve(stub, url, tmp_path / "b") as b:
        assert send(a, alice, "diary", "alice writes").status_code == 200
        for worker in (a, b):
            peek = httpx.get(f"{worker.url}/conversations/diary",
                             headers={"authorization": f"Bearer {bob}"})  # fmt: skip
            assert peek.status_code == 404
            assert httpx.get(f"{worker.url}/models").status_code == 401  # no key at all
        listed = httpx.get(f"{b.url}/conversations", headers={"authorization": f"Bearer {bob}"})
        assert listed.json()["data"] == []
        schema = url.rsplit("schema=", 1)[1]
        with PostgresStore(dsn, schema=schema) as store:
            store.revoke_key("alice")
        for worker in (a, b):  # both workers, at once, no restart
            assert send(worker, alice, "diary", "again").status_code == 401
        assert send(b, bob, "notes", "bob writes").status_code == 200
        logs = a.log() + b.log()
    assert alice not in logs and bob not in logs and PROVIDER_KEY not in logs


@pytest.mark.postgres
def test_simultaneous_sends_from_both_workers_run_one_turn_at_a_time(
    pg: tuple[str, str], stub: OpenAIStub, tmp_path: Any
) -> None:
    dsn, url = pg
    key = make_key(dsn, url, "app")
    stub.default = ok("slow reply", latency=0.4)
    with serve(stub, url, tmp_path / "a") as a, serve(stub, url, tmp_path / "b") as b:
        assert send(a, key, "race", "first").status_code == 200
        stub.max_in_flight = 0
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(send, (a, b)[n % 2], key, "race", f"racer {n}")
                       for n in range(6)]  # fmt: skip
            results = [f.result() for f in futures]
        codes = sorted(r.status_code for r in results)
        assert set(codes) <= {200, 409} and 200 in codes, [r.text for r in results]
        for r in results:
            if r.status_code == 409:
                assert r.json()["error"]["code"] == "conversation_busy"
        assert stub.max_in_flight == 1  # never two turns of one conversation upstream at once
        messages = stored(b, key, "race")
        roles = [m["role"] for m in messages]
        assert roles == ["user", "assistant"] * (1 + codes.count(200))  # nothing interleaved
        won = [r.request.content for r in results if r.status_code == 200]
        users = [m["content"] for m in messages if m["role"] == "user"]
        assert len(users) == 1 + len(won) and users[0] == "first"
        # each turn that ran sent every turn committed before it
        for request in stub.chat_requests[-len(won) :]:
            sent = [m["content"] for m in request.body["messages"] if m["role"] == "user"]
            assert sent == users[: len(sent)]


@pytest.mark.postgres
def test_a_worker_killed_mid_stream_loses_no_committed_turn_and_leaves_nothing_locked(
    pg: tuple[str, str], stub: OpenAIStub, tmp_path: Any
) -> None:
    dsn, url = pg
    key = make_key(dsn, url, "app")
    with serve(stub, url, tmp_path / "a") as a, serve(stub, url, tmp_path / "b") as b:
        for n in (1, 2):
            stub.enqueue(ok(f"committed {n}"))
            assert send((a, b)[n % 2], key, "c", f"turn {n}").status_code == 200
        stub.enqueue(ok("a long reply that never ends " * 20, chunk_size=3, delay=0.05))
        body = {"model": "m", "stream": True, "messages": [{"role": "user",
                                                            "content": "doomed turn"}]}  # fmt: skip
        headers = {HEADER: "c", "authorization": f"Bearer {key}"}
        with httpx.stream("POST", a.url + "/chat/completions", json=body, headers=headers,
                          timeout=30) as streaming:  # fmt: skip
            assert streaming.status_code == 200
            events = [line for line, _ in zip(streaming.iter_lines(), range(12), strict=False)]
            assert sum('"content"' in e for e in events) >= 5  # the reply is under way on a
            a.kill()
        stub.enqueue(ok("after the crash"))
        deadline = time.monotonic() + 10
        while True:  # PostgreSQL drops the dead worker's locks with its connection
            got = send(b, key, "c", "turn 3")
            if got.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert got.status_code == 200, got.text
        assert [(m["role"], m["content"]) for m in stored(b, key, "c")] == [
            ("user", "turn 1"), ("assistant", "committed 1"),
            ("user", "turn 2"), ("assistant", "committed 2"),
            ("user", "turn 3"), ("assistant", "after the crash"),
        ]  # fmt: skip
        assert upstream_turns(stub)[-1] == ("user", "turn 3")
        assert ("user", "doomed turn") not in upstream_turns(stub)


@pytest.mark.postgres
def test_the_workers_flag_runs_processes_that_share_one_history(
    pg: tuple[str, str], stub: OpenAIStub, tmp_path: Any
) -> None:
    dsn, url = pg
    key = make_key(dsn, url, "app")
    with serve(stub, url, tmp_path, "--workers", "2") as s:
        assert len(s.children()) >= 2, s.log()
        for n in range(1, 7):  # new connections: the kernel spreads them over the workers
            stub.enqueue(ok(f"r{n}"))
            assert send(s, key, "w", f"turn {n}").status_code == 200
            assert [c for r, c in upstream_turns(stub) if r == "user"] == [
                f"turn {i}" for i in range(1, n + 1)
            ]


def test_sqlite_with_several_workers_says_it_runs_one_process(
    stub: OpenAIStub, tmp_path: Any
) -> None:
    store = f"sqlite:///{tmp_path}/one.db"
    with serve(stub, store, tmp_path, "--workers", "3") as s:
        assert "runs ONE process" in " ".join(s.log().split())
        assert s.children() == []
        assert send(s, "none", "c", "hello").status_code == 200


@pytest.mark.postgres
def test_an_upstream_echoing_the_key_is_scrubbed(
    pg: tuple[str, str], stub: OpenAIStub, tmp_path: Any
) -> None:
    _, url = pg
    stub.enqueue(status(401, message=f"Incorrect API key provided: {PROVIDER_KEY}"))
    with serve(stub, url, tmp_path) as s:
        got = send(s, "none", "c", "hello")
        assert got.status_code == 502 and "[redacted]" in got.text
        logs = s.log()
    assert PROVIDER_KEY not in got.text + logs
